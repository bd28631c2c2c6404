"""Metadata filters: a Mongo-style dict (or a callable) compiled once into a predicate.

The collection evaluates the predicate over its stored metadata to build a boolean mask over labels;
the index applies that mask inside its scan, so a selective filter still yields k hits when k exist.

Grammar (``field`` may be a dotted path into nested dicts):
    {"field": scalar}                       -> $eq
    {"field": [a, b]}                       -> $in
    {"field": {"$op": value, ...}}           ops: $eq $ne $gt $gte $lt $lte $in $nin $exists
                                             $contains $any $all $text_match $itext_match
                                             $is_empty $not
    {"$and": [f, ...]}, {"$or": [f, ...]}, {"$nor": [f, ...]}, {"$not": f}
Several keys in one dict are ANDed.  A missing field only matches $ne, $nin, $exists: False,
$is_empty and negations -- the same rule LlamaIndex and MongoDB use. Nesting deeper than
MAX_FILTER_DEPTH levels is refused with ValueError.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Mapping
from typing import Any

from ..integrity import json_depth_ok

Predicate = Callable[[Mapping[str, Any]], bool]
MAX_FILTER_DEPTH = 64  # a real filter is a few levels deep; a metadata value (<= 32) may sit inside
_MISSING = object()

__all__ = ["compile_filter", "filter_cache_key", "Predicate"]


def _lookup(metadata: Mapping[str, Any], field: str) -> Any:
    if field in metadata:
        return metadata[field]
    value: Any = metadata
    for part in field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    # Comparing a str with a number is "no match", not a crash mid-search.
    def compare(value: Any, target: Any) -> bool:
        if value is _MISSING or value is None:
            return False
        try:
            return bool(op(value, target))
        except TypeError:
            return False

    return compare


def _as_list(value: Any) -> list:
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return [value]


def _in(value: Any, targets: Any) -> bool:
    if value is _MISSING:
        return False
    # A list-valued field matches $in when any element is in the targets (Mongo rule).
    return any(v in targets for v in _as_list(value))


def _contains(value: Any, target: Any) -> bool:
    if isinstance(value, str):
        return isinstance(target, str) and target in value
    if isinstance(value, (list, tuple, set, frozenset)):
        return target in value
    return False


def _text_match(value: Any, target: Any, fold: bool) -> bool:
    if not isinstance(value, str):
        return False
    return (target.lower() in value.lower()) if fold else (target in value)


def _is_empty(value: Any) -> bool:
    return value is _MISSING or value is None or value == "" or value == [] or value == {}


def _eq(value: Any, target: Any) -> bool:
    if value is _MISSING:
        return False
    if isinstance(value, list) and not isinstance(target, list):
        return target in value  # Mongo: {"tags": "x"} matches tags == ["x", "y"]
    return value == target


def _listish(name: str, target: Any) -> list:
    if not isinstance(target, (list, tuple, set, frozenset)):
        raise ValueError(f"filter: {name} needs a list, got {type(target).__name__}")
    return list(target)


def _field_op(name: str, target: Any) -> Callable[[Any], bool]:
    """One operator applied to one field's value (which may be _MISSING)."""
    if name == "$eq":
        return lambda v: _eq(v, target)
    if name == "$ne":
        return lambda v: not _eq(v, target)
    if name in ("$gt", "$gte", "$lt", "$lte"):
        fn = _ordered({"$gt": operator.gt, "$gte": operator.ge,
                       "$lt": operator.lt, "$lte": operator.le}[name])
        return lambda v: fn(v, target)
    if name == "$in":
        targets = _listish(name, target)
        return lambda v: _in(v, targets)
    if name == "$nin":
        targets = _listish(name, target)
        return lambda v: not _in(v, targets)
    if name == "$exists":
        want = bool(target)
        return lambda v: (v is not _MISSING) == want
    if name == "$contains":
        return lambda v: _contains(v, target)
    if name == "$any":
        targets = _listish(name, target)
        return lambda v: v is not _MISSING and any(_contains(v, t) for t in targets)
    if name == "$all":
        targets = _listish(name, target)
        return lambda v: v is not _MISSING and all(_contains(v, t) for t in targets)
    if name in ("$text_match", "$itext_match"):
        if not isinstance(target, str):
            raise ValueError(f"filter: {name} needs a string, got {type(target).__name__}")
        fold = name == "$itext_match"
        return lambda v: _text_match(v, target, fold)
    if name == "$is_empty":
        want = bool(target)
        return lambda v: _is_empty(v) == want
    if name == "$not":
        inner = _field_ops(target)
        return lambda v: not inner(v)
    raise ValueError(f"filter: unknown operator {name!r}")


def _field_ops(spec: Any) -> Callable[[Any], bool]:
    if isinstance(spec, Mapping) and spec and all(str(k).startswith("$") for k in spec):
        checks = [_field_op(name, target) for name, target in spec.items()]
        return lambda v: all(check(v) for check in checks)
    if isinstance(spec, Mapping):
        raise ValueError(f"filter: a field condition must use $-operators, got {dict(spec)!r}")
    if isinstance(spec, (list, tuple, set, frozenset)):
        return _field_op("$in", list(spec))
    return _field_op("$eq", spec)


def _compile_dict(spec: Mapping[str, Any]) -> Predicate:
    parts: list[Predicate] = []
    for key, value in spec.items():
        if not isinstance(key, str):
            raise TypeError(f"filter: keys must be strings, got {key!r}")
        if key in ("$and", "$or", "$nor"):
            if not isinstance(value, (list, tuple)) or not value:
                raise ValueError(f"filter: {key} needs a non-empty list of filters")
            subs = [_compile_dict(_need_dict(s)) for s in value]
            if key == "$and":
                parts.append(lambda m, subs=subs: all(s(m) for s in subs))
            elif key == "$or":
                parts.append(lambda m, subs=subs: any(s(m) for s in subs))
            else:
                parts.append(lambda m, subs=subs: not any(s(m) for s in subs))
        elif key == "$not":
            sub = _compile_dict(_need_dict(value))
            parts.append(lambda m, sub=sub: not sub(m))
        elif key.startswith("$"):
            raise ValueError(f"filter: unknown top-level operator {key!r}")
        else:
            check = _field_ops(value)
            parts.append(lambda m, key=key, check=check: check(_lookup(m, key)))
    if len(parts) == 1:
        return parts[0]
    return lambda m: all(p(m) for p in parts)


def _need_dict(spec: Any) -> Mapping[str, Any]:
    if not isinstance(spec, Mapping):
        raise TypeError(f"filter: expected a dict, got {type(spec).__name__}")
    return spec


def compile_filter(spec: Mapping[str, Any] | Callable[[Mapping[str, Any]], bool] | None) -> Predicate | None:
    """Compile ``spec`` once; raises ValueError/TypeError naming the bad part before any search."""
    if spec is None:
        return None
    if callable(spec) and not isinstance(spec, Mapping):
        return lambda m: bool(spec(m))
    if not isinstance(spec, Mapping):
        raise TypeError(f"filter must be a dict or a callable, got {type(spec).__name__}")
    if not spec:
        return None
    if not json_depth_ok(spec, MAX_FILTER_DEPTH):  # compiling and matching recurse once per level
        raise ValueError(f"filter nests deeper than {MAX_FILTER_DEPTH} levels (dicts and lists)")
    return _compile_dict(spec)


def filter_cache_key(spec: Any) -> str | None:
    """A stable key for dict filters (masks are cached per key); None for callables."""
    if spec is None or callable(spec):
        return None
    try:
        return json.dumps(spec, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return None
