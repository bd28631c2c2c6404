"""Faiss's IndexShards / IndexReplicas call forms over torch_ivf's: positional ``threaded`` and
``successive_ids``, remove_shard / remove_replica."""
from __future__ import annotations

from .. import shards as _core
from .errors import FaissValueError, wrap_methods
from .indexes import _Positional, adopt


def _take(group, index) -> int:
    """Position of ``index`` (the object itself) among the group's sub-indexes."""
    for i, ix in enumerate(group.indexes):
        if ix is index:
            return i
    raise FaissValueError(f"{type(index).__name__} is not a sub-index of this {type(group).__name__}")


def _sub_index(index):
    index = adopt(index)
    if isinstance(index, _Positional):
        index._positional = False  # the group hands out the labels
    return index


class IndexShards(_core.IndexShards):
    """Faiss's ``IndexShards(d, threaded=False, successive_ids=True)``."""

    def __init__(self, d, threaded=False, successive_ids=True):
        super().__init__(d, threaded=bool(threaded), successive_ids=bool(successive_ids))

    def add_shard(self, index) -> None:
        """Append a shard (same d and metric)."""
        super().add_shard(_sub_index(index))

    def remove_shard(self, index) -> None:
        """Drop ``index`` (the object given to add_shard) and the vectors it holds from the group."""
        i = _take(self, index)
        del self.indexes[i], self.offsets[i]


class IndexReplicas(_core.IndexReplicas):
    """Faiss's ``IndexReplicas(d, threaded=True)``."""

    def __init__(self, d, threaded=True):
        super().__init__(d, threaded=bool(threaded))

    def add_replica(self, index) -> None:
        """Append a replica holding the same vectors as the others."""
        super().add_replica(_sub_index(index))

    def remove_replica(self, index) -> None:
        """Drop ``index`` (the object given to add_replica) from the group."""
        del self.indexes[_take(self, index)]


for _cls in (IndexShards, IndexReplicas):
    wrap_methods(_cls, ("__init__", "train", "add", "add_with_ids", "search", "remove_ids", "reconstruct",
                        "add_shard", "remove_shard", "add_replica", "remove_replica"))
