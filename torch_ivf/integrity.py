"""Integrity of what torch-ivf reads from disk: one refusal type, one checksum, bounded JSON.

Every file torch-ivf loads (index files, store directories) is refused with CorruptFileError, a
ValueError, whose message names the file and the problem: never KeyError / TypeError /
RecursionError from a malformed manifest.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

MAX_JSON_DEPTH = 64  # manifests are a few levels deep; deeper nesting is refused, not recursed into


class CorruptFileError(ValueError):
    """A file or store that torch-ivf wrote cannot be trusted (damaged, truncated, mixed or forged)."""

    def __init__(self, source, problem: str):
        self.source, self.problem = str(source), problem
        super().__init__(f"{self.source}: {problem}")


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def canonical(obj: Any) -> bytes:
    """The bytes a JSON object is checksummed over (sorted keys, no whitespace)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def json_depth_ok(obj: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when obj nests containers (mappings, lists, tuples, sets) at most ``limit`` deep (checked
    without recursion, so a hostile depth cannot raise RecursionError)."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (Mapping, list, tuple, set, frozenset)):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, Mapping) else value))
    return True


def parse_json(payload: bytes | str, source, what: str = "manifest") -> Any:
    """json.loads that refuses bad UTF-8, bad JSON, NaN/Infinity and deep nesting with CorruptFileError."""
    try:
        text = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload
        obj = json.loads(text, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CorruptFileError(source, f"{what} is not valid JSON ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not json_depth_ok(obj):
        raise CorruptFileError(source, f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    return obj


def _no_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def get(obj: Any, key: str, types, source, what: str = "manifest") -> Any:
    """obj[key] checked to be one of ``types`` (bool is not an int here)."""
    if not isinstance(obj, dict):
        raise CorruptFileError(source, f"{what} must be a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise CorruptFileError(source, f"{what} lacks {key!r}")
    value = obj[key]
    types = types if isinstance(types, tuple) else (types,)
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        names = "/".join("null" if t is type(None) else t.__name__ for t in types)
        raise CorruptFileError(source, f"{what}[{key!r}] must be {names}, got {type(value).__name__}")
    return value
