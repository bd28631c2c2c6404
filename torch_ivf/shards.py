"""Several indexes answering as one (Faiss's IndexShards / IndexReplicas), e.g. one per GPU of a process.

IndexShards splits the vectors: every shard searches every query and the per-shard top-k lists are
merged. IndexReplicas copies them: every replica holds all vectors and answers a slice of the batch.
Both train the first sub-index and hand its trained state (coarse centroids, codebooks) to the others,
so that every shard assigns vectors to the same lists as one index would.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import torch

from .arrays import float_rows, label_tensor, positive_int, whole
from .index.base import Index, SearchParams, _params
from .locking import RWLock, guard_methods
from .selectors import IDSelector


def copy_training(src, dst) -> None:
    """Give the empty ``dst`` the trained state of the empty ``src`` (same class and settings)."""
    dst.load_state_tensors({k: v.to(dst.device) for k, v in src.state_tensors().items()})


def same_kind(a, b) -> bool:
    """True when a and b are the same index class with the same configuration."""
    return type(a) is type(b) and a.config() == b.config()


def merge_topk(D: torch.Tensor, I: torch.Tensor, k: int, largest: bool):
    """Top-k of (nq, parts * k) results laid out part after part (part i: shard i, holding rows added
    before shard i + 1's). Equal distances are ordered by (part, label): with successive labels that
    is the order of storage, which one index keeps at its k-th cut (it lists equal scores above the
    cut in torch.topk's order, which is why the merge does not keep each part's own order). Three
    stable sorts, least significant key first; missing results (label -1) go last."""
    part = torch.arange(D.shape[1], device=D.device).div(k, rounding_mode="floor").expand_as(I)
    order = I.sort(dim=1, stable=True).indices
    order = order.gather(1, part.gather(1, order).sort(dim=1, stable=True).indices)
    key = (-D if largest else D).gather(1, order)
    key = torch.where(I.gather(1, order) < 0, torch.full_like(key, float("inf")), key)
    order = order.gather(1, key.sort(dim=1, stable=True).indices[:, :k])
    D, I = D.gather(1, order), I.gather(1, order)
    missing = -torch.finfo(torch.float32).max if largest else torch.finfo(torch.float32).max
    return torch.where(I < 0, torch.full_like(D, missing), D), I


def _rows(x, d: int, name: str = "x") -> tuple[torch.Tensor, bool]:
    """Float32 (n, d) tensor left on the caller's device (numpy: the CPU), and whether x was numpy."""
    if isinstance(x, torch.Tensor) and x.ndim == 1 and x.shape[0] == d:
        x = x[None, :]
    device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
    return float_rows(x, d, device, name)  # its refusals come before any sub-index changes


def _out(was_numpy: bool, *tensors):
    return tuple(t.cpu().numpy() for t in tensors) if was_numpy else tuple(tensors)


def _shifted(sel, offset: int, size: int, device):
    """A label selection (labels, bool mask over labels or IDSelector) in global labels, as a
    selection of the same labels minus ``offset`` below ``size``."""
    if offset == 0:
        return sel
    if isinstance(sel, IDSelector):
        return _ShiftedSelector(sel, offset)
    if isinstance(sel, np.ndarray):
        sel = torch.from_numpy(sel)
    if isinstance(sel, torch.Tensor) and sel.dtype == torch.bool:
        mask = torch.zeros(size, dtype=torch.bool, device=device)
        part = sel.reshape(-1)[offset:offset + size].to(device)
        mask[: part.shape[0]] = part
        return mask
    labels = label_tensor(sel if isinstance(sel, (np.ndarray, torch.Tensor)) else list(sel), "cpu") - offset
    return labels[(labels >= 0) & (labels < size)]


_GROUP_WRITES = ("add", "add_with_ids", "remove_ids", "train", "reset", "add_shard", "add_replica")


class _ShiftedSelector(IDSelector):
    """The labels ``sel`` selects, minus ``offset`` (a shard's local labels)."""

    def __init__(self, sel: IDSelector, offset: int):
        self.sel, self.offset = sel, offset

    def select(self, labels, bound=None):
        return self.sel.select(labels + self.offset, None if bound is None else bound + self.offset)

    def is_member(self, label):
        return self.sel.is_member(int(label) + self.offset)

    def mask(self, size, device):
        return self.sel.mask(size + self.offset, device)[self.offset:]


class _Group:
    """Sub-index bookkeeping shared by IndexShards and IndexReplicas. Locked as an Index is (searches
    share, changes are exclusive), so a search never sees a change that reached only some shards."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        guard_methods(cls, ("search", "reconstruct"), _GROUP_WRITES)

    def __init__(self, d, threaded: bool):
        self._rw = RWLock()
        positive_int(d, "d")
        self.d = int(d)
        self.threaded = bool(threaded)
        self.indexes: list = []

    def _add_index(self, index) -> None:
        if not isinstance(index, Index):
            raise TypeError(f"expected a torch_ivf index, got {type(index).__name__}")
        if index.d != self.d:
            raise ValueError(f"the index must have d={self.d}, got d={index.d}")
        if self.indexes and index.metric != self.metric:
            raise ValueError(f"every sub-index must have metric {self.metric!r}, got {index.metric!r}")
        self.indexes.append(index)

    def count(self) -> int:
        """Number of sub-indexes."""
        return len(self.indexes)

    def at(self, i: int):
        """Sub-index ``i``."""
        return self.indexes[i]

    @property
    def metric(self) -> str:
        """The sub-indexes' metric ("l2" while there are none)."""
        return self.indexes[0].metric if self.indexes else "l2"

    @property
    def largest(self) -> bool:
        """True when larger scores are better (ip, cosine)."""
        return self.metric != "l2"

    @property
    def is_trained(self) -> bool:
        """True when there is a sub-index and every one is trained."""
        return bool(self.indexes) and all(ix.is_trained for ix in self.indexes)

    def _require(self, trained: bool = False) -> None:
        if not self.indexes:
            raise ValueError(f"{type(self).__name__} has no sub-index yet")
        if trained and not self.is_trained:
            raise ValueError(f"{type(self).__name__} must be trained first")

    def _map(self, fn, items):
        """[fn(i, item)] over the sub-indexes, one thread each when threaded (GPUs run concurrently)."""
        if self.threaded and len(items) > 1:
            with ThreadPoolExecutor(len(items)) as pool:
                return list(pool.map(fn, range(len(items)), items))
        return [fn(i, item) for i, item in enumerate(items)]

    def train(self, x) -> None:
        """Train the first sub-index on x; the others, where they are empty and of the same kind, take
        its trained state (identical centroids), else train on x themselves."""
        self._require()
        _rows(x, self.d)
        first = self.indexes[0]
        first.train(x)
        for ix in self.indexes[1:]:
            if same_kind(ix, first) and ix.ntotal == 0 and first.ntotal == 0:
                copy_training(first, ix)
            else:
                ix.train(x)

    def _checked(self, k, params):
        k = Index._check_k(k)
        params = _params(params)
        self._require(trained=True)
        return k, params


class IndexShards(_Group):
    """``IndexShards(d, *, threaded=False, successive_ids=True)``: vectors split across shards (add_shard),
    results merged exactly (Faiss's IndexShards). With successive_ids, add() hands rows out contiguously
    (shard 0 the first slice, ...) under successive labels, and a shard that already holds vectors when
    added has its labels shifted past those already here, as Faiss does; labels never shift later, even
    after remove_ids. Without it, shards keep the labels they store (add_with_ids)."""

    def __init__(self, d, *, threaded: bool = False, successive_ids: bool = True):
        super().__init__(d, threaded)
        self.successive_ids = bool(successive_ids)
        self.offsets: list[int] = []  # global label = shard label + offset

    @property
    def shards(self) -> list:
        """The shards, in the order they were added."""
        return self.indexes

    def add_shard(self, index) -> None:
        """Append a shard (same d and metric); one that already holds vectors gets its labels shifted
        past those here when successive_ids is on.

        Raises:
            ValueError / TypeError: not a torch_ivf index, or another d or metric.
        """
        offset = self.next_label if self.successive_ids else 0
        self._add_index(index)
        self.offsets.append(offset)

    @property
    def ntotal(self) -> int:
        """Vectors stored over all shards."""
        return sum(ix.ntotal for ix in self.indexes)

    @property
    def next_label(self) -> int:
        """One more than the largest label handed out so far (labels are never reused)."""
        return max((off + ix.next_label for off, ix in zip(self.offsets, self.indexes)), default=0)

    def _slices(self, n: int) -> list[slice]:
        s = len(self.indexes)
        return [slice(i * n // s, (i + 1) * n // s) for i in range(s)]

    def add(self, x) -> None:
        """Rows split contiguously across the shards, labels next_label, next_label + 1, ..."""
        self._require(trained=True)
        xv, _ = _rows(x, self.d)
        labels = torch.arange(self.next_label, self.next_label + xv.shape[0], dtype=torch.int64)
        self._add(xv, labels)

    def add_with_ids(self, x, ids) -> None:
        """Rows (and their ids) split contiguously across the shards; needs successive_ids=False, as in
        Faiss (successive labels would shift the ids given)."""
        if self.successive_ids:
            raise ValueError("add_with_ids needs IndexShards(..., successive_ids=False): with successive ids "
                             "the shards' labels are shifted, so given ids would not be kept")
        self._require(trained=True)
        xv, _ = _rows(x, self.d)
        ids = Index._ids(self.indexes[0], ids, xv.shape[0]).cpu()
        for ix in self.indexes:
            if ix.ntotal and hasattr(ix, "labels") and bool(torch.isin(ids, ix.labels().cpu()).any()):
                raise ValueError("ids already present in a shard; remove_ids first (labels are unique)")
        self._add(xv, ids)

    def _add(self, xv: torch.Tensor, labels: torch.Tensor) -> None:
        if xv.shape[0] == 0:
            return
        for ix, off, sl in zip(self.indexes, self.offsets, self._slices(xv.shape[0])):
            if sl.stop > sl.start:
                ix.add_with_ids(xv[sl], labels[sl] - off)

    def search(self, x, k, *, params: SearchParams | None = None):
        """(D, I) on the queries' device (numpy in, numpy out): every shard's top-k merged as one index
        over all rows would return them."""
        k, params = self._checked(k, params)
        q, was_numpy = _rows(x, self.d)

        def one(i, ix):
            p = params
            if params.allowed is not None and self.offsets[i]:
                p = replace(params, allowed=_shifted(params.allowed, self.offsets[i], ix.next_label, ix.device))
            D, I = ix.search(q, k, params=p)
            D, I = torch.as_tensor(D).to(q.device), torch.as_tensor(I).to(q.device)
            return D, torch.where(I >= 0, I + self.offsets[i], I)

        parts = self._map(one, self.indexes)
        D, I = merge_topk(torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1), k, self.largest)
        return _out(was_numpy, D, I)

    def remove_ids(self, ids) -> int:
        """Remove by labels, a bool mask over labels or an IDSelector; returns how many were removed."""
        self._require()
        return sum(ix.remove_ids(_shifted(ids, off, ix.next_label, ix.device))
                   for ix, off in zip(self.indexes, self.offsets))

    def reconstruct(self, key) -> torch.Tensor:
        """(d,) vector of label ``key`` from the shard that holds it (ValueError when none does)."""
        self._require()
        key = whole(key, "key")
        for ix, off in zip(self.indexes, self.offsets):
            if 0 <= key - off < ix.next_label:
                try:
                    return ix.reconstruct(key - off)
                except ValueError:
                    continue
        raise ValueError(f"label {key} is not in the index")

    def reset(self) -> None:
        """Empty every shard; labels restart at 0 (as a single index's do)."""
        for ix in self.indexes:
            ix.reset()
        self.offsets = [0] * len(self.indexes)

    def __repr__(self) -> str:
        return f"IndexShards(d={self.d}, shards={self.count()}, ntotal={self.ntotal})"


class IndexReplicas(_Group):
    """``IndexReplicas(d, *, threaded=True)``: every replica (add_replica) holds all vectors; a query
    batch is split into contiguous slices, one per replica (Faiss's IndexReplicas)."""

    def __init__(self, d, *, threaded: bool = True):
        super().__init__(d, threaded)

    def add_replica(self, index) -> None:
        """Append a replica: it must hold the same vectors as the others (ValueError otherwise)."""
        if self.indexes and index.ntotal != self.ntotal:
            raise ValueError(f"a replica must hold the same vectors: ntotal {self.ntotal}, got {index.ntotal}")
        self._add_index(index)

    @property
    def replicas(self) -> list:
        """The replicas, in the order they were added."""
        return self.indexes

    @property
    def ntotal(self) -> int:
        """Vectors stored (each replica holds them all)."""
        return self.indexes[0].ntotal if self.indexes else 0

    def add(self, x) -> None:
        """Add x (n, d) to every replica."""
        self._require(trained=True)
        xv, _ = _rows(x, self.d)
        for ix in self.indexes:
            ix.add(xv)

    def add_with_ids(self, x, ids) -> None:
        """Add x (n, d) under ids (n,) to every replica (the ids are checked before any replica changes)."""
        self._require(trained=True)
        xv, _ = _rows(x, self.d)
        ids = Index._ids(self.indexes[0], ids, xv.shape[0]).cpu()
        self.indexes[0].add_with_ids(xv, ids)  # checks the ids before any replica changes
        for ix in self.indexes[1:]:
            ix.add_with_ids(xv, ids)

    def search(self, x, k, *, params: SearchParams | None = None):
        """(D, I), each (nq, k): the query batch split into contiguous slices, one per replica."""
        k, params = self._checked(k, params)
        q, was_numpy = _rows(x, self.d)
        n, r = q.shape[0], len(self.indexes)
        bounds = [(i * n // r, (i + 1) * n // r) for i in range(r)]

        def one(i, ix):
            a, b = bounds[i]
            D, I = ix.search(q[a:b], k, params=params)
            return torch.as_tensor(D).to(q.device), torch.as_tensor(I).to(q.device)

        parts = self._map(one, self.indexes)
        return _out(was_numpy, torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))

    def remove_ids(self, ids) -> int:
        """Remove the labels (array, mask or IDSelector) from every replica; returns how many were removed."""
        self._require()
        counts = [ix.remove_ids(ids) for ix in self.indexes]
        return counts[0]

    def reconstruct(self, key) -> torch.Tensor:
        """(d,) vector of label ``key`` (from the first replica)."""
        self._require()
        return self.indexes[0].reconstruct(key)

    def reset(self) -> None:
        """Empty every replica."""
        for ix in self.indexes:
            ix.reset()

    def __repr__(self) -> str:
        return f"IndexReplicas(d={self.d}, replicas={self.count()}, ntotal={self.ntotal})"
