"""LlamaIndex MetadataFilters -> the collection's Mongo-style filter dict (one filter engine)."""

from __future__ import annotations

from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from torch_ivf.collection.filters import MAX_FILTER_DEPTH

_OPS = {
    FilterOperator.EQ: "$eq", FilterOperator.NE: "$ne", FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte", FilterOperator.LT: "$lt", FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in", FilterOperator.NIN: "$nin", FilterOperator.ANY: "$any",
    FilterOperator.ALL: "$all", FilterOperator.TEXT_MATCH: "$text_match",
    FilterOperator.TEXT_MATCH_INSENSITIVE: "$itext_match", FilterOperator.CONTAINS: "$contains",
}
_LIST_OPS = {"$in", "$nin", "$any", "$all"}


def _one(f: MetadataFilter) -> dict[str, Any]:
    op = FilterOperator(f.operator)
    if op == FilterOperator.IS_EMPTY:
        return {f.key: {"$is_empty": True}}
    if op not in _OPS:
        raise ValueError(f"filters: unsupported operator {op!r}")
    name, value = _OPS[op], f.value
    if name in _LIST_OPS and not isinstance(value, (list, tuple)):
        value = [value]
    return {f.key: {name: value}}


def to_filter_dict(filters: MetadataFilters | None, _depth: int = 1) -> dict[str, Any] | None:
    """AND -> $and, OR -> $or, NOT -> $nor (LlamaIndex: "none of the filters match"); nests up to
    MAX_FILTER_DEPTH levels (ValueError beyond, as for the collection's own filters)."""
    if filters is None:
        return None
    if not isinstance(filters, MetadataFilters):
        raise TypeError(f"filters must be MetadataFilters, got {type(filters).__name__}")
    if _depth > MAX_FILTER_DEPTH // 2:  # each level becomes a dict and a list
        raise ValueError(f"filters nest deeper than {MAX_FILTER_DEPTH // 2} MetadataFilters levels")
    parts = [to_filter_dict(f, _depth + 1) if isinstance(f, MetadataFilters) else _one(f) for f in filters.filters]
    parts = [p for p in parts if p]
    if not parts:
        return None
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    if condition == FilterCondition.NOT:
        return {"$nor": parts}
    if len(parts) == 1:
        return parts[0]
    return {"$or" if condition == FilterCondition.OR else "$and": parts}
