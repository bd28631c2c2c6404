"""Faiss's IndexIDMap / IndexIDMap2: the caller's ids on an index. torch_ivf indexes store labels
themselves, so the wrapper hands the ids to the inner index and only keeps Faiss's view of them
(``id_map``: the ids in the order they were added)."""
from __future__ import annotations

import numpy as np
import torch

from .. import io as _io
from ..index import Index
from .errors import FaissValueError, wrap_methods
from .indexes import FaissIndex, _Positional, _numpy, _rows, _selection, adopt


class IndexIDMap(FaissIndex, Index):
    """Faiss's ``IndexIDMap(index)``: the caller's int64 ids on an empty index (add_with_ids only).

    Args:
        index: an empty torch_ivf (or torch_ivf.faiss) index; sub_class / sub_config / device rebuild
            it when read_index loads a saved IndexIDMap.

    Raises:
        TypeError: index is not a torch_ivf index.
        ValueError: index is not empty, or sub_class is unknown.
    """

    def __init__(self, index=None, *, sub_class=None, sub_config=None, device=None):
        if index is None:  # rebuilt by read_index from the manifest
            cls = _io._REGISTRY.get(sub_class)
            if cls is None:
                raise ValueError(f"sub_class {sub_class!r} is not a known index class")
            index = cls(**(sub_config or {}), device=device)
        if not isinstance(index, Index):
            raise TypeError(f"index must be a torch_ivf index, got {type(index).__name__}")
        if index.ntotal:
            raise ValueError("index must be empty: vectors are added through the IndexIDMap")
        super().__init__(index.d, index.metric, device=index.device)
        self.index = adopt(index)
        if isinstance(self.index, _Positional):
            self.index._positional = False
        self._order = np.zeros(0, dtype=np.int64)
        self.own_fields = False

    # ---- delegation ---------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Number of vectors stored."""
        return self.index.ntotal

    @property
    def is_trained(self) -> bool:
        """The inner index's is_trained."""
        return self.index.is_trained

    @property
    def id_map(self) -> np.ndarray:
        """The ids, in the order they were added (Faiss's id_map)."""
        return self._order.copy()

    def train(self, x) -> None:
        """Train the inner index on x (n, d)."""
        self.index.train(x)

    def add(self, x) -> None:
        """Refused (FaissValueError): an IndexIDMap takes add_with_ids only, as in Faiss."""
        raise FaissValueError("add is not supported by IndexIDMap: call add_with_ids")

    def add_with_ids(self, x, ids) -> None:
        """Add x (n, d) under the caller's ids (n,) int64 (unique, non-negative, not stored yet)."""
        ids = np.asarray(_numpy(ids) if isinstance(ids, torch.Tensor) else ids, dtype=np.int64).reshape(-1)
        self.index.add_with_ids(_rows(x), ids)
        self._order = np.concatenate([self._order, ids])
        self.next_label = self.index.next_label

    def remove_ids(self, sel) -> int:
        """Remove by ids or IDSelector; returns how many were removed."""
        sel = _selection(sel)
        before = _numpy(self.index.labels())
        n = self.index.remove_ids(sel)
        if n:
            self._order = self._order[np.isin(self._order, _numpy(self.index.labels()))]
        del before
        return n

    def reset(self) -> None:
        """Drop every stored vector (training is kept)."""
        self.index.reset()
        self._order = np.zeros(0, dtype=np.int64)
        self.next_label = 0

    @property
    def ops_parallel(self) -> bool:
        """Whether a CPU search runs threads inside its ops: as the wrapped index's."""
        return self.index.ops_parallel

    def _search(self, q, k, params):
        return self.index._search(q, k, params)

    def _range_plan(self, params):
        return self.index._range_plan(params)

    def _range_key(self, q, qi, labels, params, probe=None):
        return self.index._range_key(q, qi, labels, params, probe)

    def reconstruct_batch(self, key, x=None):
        """Refused (FaissValueError), as in Faiss: IndexIDMap2 reconstructs."""
        raise FaissValueError("reconstruct is not supported by IndexIDMap: use IndexIDMap2")

    def merge_from(self, other, add_id=0) -> None:
        """Move every vector of the IndexIDMap ``other`` here, ids shifted by add_id."""
        if not isinstance(other, IndexIDMap):
            raise FaissValueError("other must be an IndexIDMap")
        order = other._order + int(add_id)
        self.index.merge_from(other.index, add_id)
        self._order = np.concatenate([self._order, order])
        other._order = np.zeros(0, dtype=np.int64)

    def to(self, device) -> "IndexIDMap":
        """Move the inner index to ``device``; returns self."""
        self.index.to(device)
        self.device = self.index.device
        return self

    # ---- persistence --------------------------------------------------------------------
    def config(self) -> dict:
        """Constructor keyword arguments that rebuild this index (JSON-serialisable)."""
        return {"sub_class": _io_class_name(self.index), "sub_config": self.index.config()}

    def state_tensors(self) -> dict:
        """Tensors io.py saves: the inner index's and the id order."""
        out = {f"sub.{k}": v for k, v in self.index.state_tensors().items()}
        out["id_order"] = torch.from_numpy(self._order)
        out["sub_next_label"] = torch.tensor([self.index.next_label])
        return out

    def load_state_tensors(self, tensors) -> None:
        """Restore what state_tensors returned."""
        self.index.load_state_tensors({k[4:]: v for k, v in tensors.items() if k.startswith("sub.")})
        self._order = tensors["id_order"].cpu().numpy().astype(np.int64)
        self.index.next_label = int(tensors["sub_next_label"][0])


class IndexIDMap2(IndexIDMap):
    """IndexIDMap that can also reconstruct by id."""

    def check_consistency(self) -> None:
        """Raise if id_map and the ids the inner index stores disagree (Faiss's check of its reverse map)."""
        stored = np.sort(_numpy(self.index.labels()))
        if len(self._order) != self.ntotal or not np.array_equal(np.sort(self._order), stored):
            raise FaissValueError(f"id_map holds {len(self._order)} ids that differ from the {self.ntotal} "
                                  "the inner index stores")

    def reconstruct_batch(self, key, x=None):
        """(n, d) float32 numpy vectors of the ids ``key``, written into ``x`` when given."""
        from .. import index as core
        out = core.IndexIVF.reconstruct_batch(self.index, torch.as_tensor(np.asarray(key, dtype=np.int64)).reshape(-1)) \
            if isinstance(self.index, core.IndexIVF) else torch.as_tensor(self.index.reconstruct_batch(key))
        out = _numpy(out).astype(np.float32)
        if x is not None:
            x[...] = out
            return x
        return out

    def reconstruct_n(self, n0=0, ni=-1, x=None):
        """Vectors of the ids added n0-th .. (n0 + ni - 1)-th (ni = -1: up to ntotal), numpy."""
        ni = self.ntotal - n0 if ni == -1 else ni
        return self.reconstruct_batch(self._order[n0:n0 + ni], x)


def _io_class_name(index) -> str:
    """The torch_ivf class name read_index rebuilds index from (Faiss-shaped classes have core twins)."""
    for cls in type(index).__mro__:
        if _io._REGISTRY.get(cls.__name__) is cls:
            return cls.__name__
    raise ValueError(f"{type(index).__name__} cannot be written")


for _cls in (IndexIDMap, IndexIDMap2):
    _io.register(_cls)
    wrap_methods(_cls, ("__init__", "train", "add", "add_with_ids", "search", "range_search", "remove_ids",
                        "reconstruct", "reconstruct_n", "reconstruct_batch", "merge_from"))
