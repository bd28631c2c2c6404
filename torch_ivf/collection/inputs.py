"""What a store accepts at add: JSON-safe metadata and valid Unicode, checked before anything changes.

Everything a collection holds is saved as JSON, so anything JSON cannot hold, or would give back
as another type, is refused when it is added (naming the document and the key) rather than making
every later save fail or a load return something else:

* accepted as is: dict with str keys, list, str, int, float (finite), bool, None;
* converted losslessly: tuples -> lists (JSON has no tuples; a tuple would come back as a list
  anyway, so it is stored as one from the start), other Mappings -> dict, numpy scalars
  (np.int64, np.float32, np.bool_, ...) -> int / float / bool, subclasses of str/int/float
  (str enums, IntEnum) -> the plain type;
* refused with TypeError: keys that are not str (JSON keys are strings: 1 would come back as "1"),
  sets, bytes, datetimes, arrays, arbitrary objects, NaN and +-Inf (not JSON);
* refused with ValueError: nesting deeper than MAX_METADATA_DEPTH, strings with lone surrogates
  (not encodable as UTF-8).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

MAX_METADATA_DEPTH = 32  # dicts/lists inside one document's metadata, the metadata dict itself included

_HINTS = {"set": "use a sorted list", "frozenset": "use a sorted list", "bytes": "decode or base64 it",
          "bytearray": "decode or base64 it", "datetime": "store .isoformat()", "date": "store .isoformat()",
          "time": "store .isoformat()", "ndarray": "store .tolist()", "Tensor": "store .tolist()",
          "Decimal": "store str() or float()", "UUID": "store str()", "PosixPath": "store str()",
          "WindowsPath": "store str()"}


class _Refused(Exception):
    """Raised deep inside a value; each level adds its key on the way up, so the message names it."""

    def __init__(self, kind: type, problem: str):
        super().__init__(problem)
        self.kind, self.problem, self.path = kind, problem, []


def clean_metadata(metadata: Any, where: str) -> dict[str, Any]:
    """A JSON-safe copy of one document's metadata (None -> {}); ``where`` names the document."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"{where}: metadata must be a dict, got {type(metadata).__name__}")
    try:
        return _clean(metadata, 1)
    except _Refused as bad:
        key = "".join(f"[{k!r}]" for k in reversed(bad.path))
        raise bad.kind(f"{where}: metadata{key} {bad.problem}") from None


def _lone_surrogate(value: str) -> int | None:
    """Position of the first character UTF-8 cannot encode (a lone surrogate), or None."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def check_text(value: Any, what: str) -> None:
    """Strings are saved as UTF-8: one with a lone surrogate could be added but never saved."""
    if isinstance(value, str) and (at := _lone_surrogate(value)) is not None:
        raise ValueError(f"{what} is not valid Unicode: lone surrogate {value[at]!r} at position {at}")


def _str(value: str) -> str:
    if (at := _lone_surrogate(value)) is not None:
        raise _Refused(ValueError, f"is not valid Unicode: lone surrogate at position {at}")
    return value


def _clean(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind is str:
        return _str(value)
    if value is None or kind is bool or kind is int:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        raise _Refused(TypeError, f"is {value!r}, which JSON cannot hold (use None)")
    if isinstance(value, (Mapping, list, tuple)):
        if depth > MAX_METADATA_DEPTH:
            raise _Refused(ValueError, f"nests deeper than {MAX_METADATA_DEPTH} levels")
        if isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise _Refused(TypeError, f"has key {k!r} of type {type(k).__name__}: keys must be str "
                                              f"(JSON keys are strings, so it would come back as {str(k)!r})")
                try:
                    out[_str(str.__str__(k))] = _clean(v, depth + 1)
                except _Refused as bad:
                    bad.path.append(k)
                    raise
            return out
        out = []
        for i, v in enumerate(value):
            try:
                out.append(_clean(v, depth + 1))
            except _Refused as bad:
                bad.path.append(i)
                raise
        return out
    return _scalar(value)


def _scalar(value: Any) -> Any:
    """Lossless conversions of scalar types JSON would write as its own (or could not write)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        out = float(value)
        if not math.isfinite(out):
            raise _Refused(TypeError, f"is {out!r}, which JSON cannot hold (use None)")
        if out != value:  # np.longdouble beyond float64's precision
            raise _Refused(TypeError, f"is a {type(value).__name__} that float64 cannot hold exactly")
        return out
    if isinstance(value, str):
        return _str(str.__str__(value))
    name = type(value).__name__
    hint = _HINTS.get(name, "convert it to str, int, float, bool, None, a list or a dict")
    raise _Refused(TypeError, f"is a {name}, which is not JSON-safe: {hint}")
