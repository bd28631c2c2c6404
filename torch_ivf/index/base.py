"""The index contract shared by every index: metric names, input coercion, output formatting."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from .. import snapshot
from ..arrays import float_rows, label_tensor, non_negative_int, positive_int, whole
from ..devices import resolve_device
from ..locking import RWLock, guard_methods
from ..search import cost
from ..selectors import IDSelector, members

METRIC_INNER_PRODUCT = 0  # Faiss's numbering, so faiss.METRIC_* constants can be passed through
METRIC_L2 = 1
_METRICS = {"l2": "l2", "ip": "ip", "inner_product": "ip", "cosine": "cosine",
            METRIC_L2: "l2", METRIC_INNER_PRODUCT: "ip"}
_DTYPES = {torch.float32, torch.float16, torch.bfloat16}
_RANGE_BUDGET = 1 << 24  # (query, candidate) entries per range_search chunk
_PAD_LIMIT = 1 << 27  # (query, k) result entries (1.5 GiB of D and I) beyond which padding is refused


def normalize_metric(metric) -> str:
    key = metric.lower() if isinstance(metric, str) else metric
    if isinstance(key, bool) or key not in _METRICS:
        raise ValueError(f"metric must be 'l2', 'ip', 'cosine', METRIC_L2 or METRIC_INNER_PRODUCT, got {metric!r}")
    return _METRICS[key]


def normalize_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16, got {dtype!r}")
    return dtype


@dataclass
class SearchParams:
    """Per-call search options. ``allowed``: bool mask over labels, or a collection of labels; or
    ``sel``: a Faiss-style IDSelector (torch_ivf.IDSelectorRange, ...). Faiss's name,
    SearchParametersIVF, is the same class."""
    nprobe: int | None = None
    max_codes: int | None = None
    allowed: object = None  # not Any: a subclass's generated __init__ resolves it in its own module
    sel: object = None

    def check(self) -> None:
        """Checks of fields that subclasses add (before any search runs)."""


SearchParametersIVF = SearchParams


def _params(params) -> SearchParams:
    """Checked params with ``sel`` folded into ``allowed``."""
    if params is None:
        return SearchParams()
    if not isinstance(params, SearchParams):
        raise TypeError(f"params must be a SearchParams, got {type(params).__name__}")
    if params.nprobe is not None:
        positive_int(params.nprobe, "params.nprobe")
    if params.max_codes is not None:
        non_negative_int(params.max_codes, "params.max_codes")
    params.check()
    if params.sel is None:
        return params
    if not isinstance(params.sel, IDSelector):
        raise TypeError(f"params.sel must be an IDSelector, got {type(params.sel).__name__}")
    if params.allowed is not None:
        raise ValueError("give params.allowed or params.sel, not both")
    return replace(params, allowed=params.sel, sel=None)


def pad_results(D: torch.Tensor, I: torch.Tensor, k: int, missing: float):
    """(D, I) widened to k columns with Faiss's "no result": label -1, the float32 extreme."""
    pad = k - D.shape[1]
    return (torch.nn.functional.pad(D, (0, pad), value=missing),
            torch.nn.functional.pad(I, (0, pad), value=-1))


def _check_range(radius, order) -> None:
    """range_search's radius and order arguments."""
    if isinstance(radius, (bool, np.bool_)) or not isinstance(radius, (int, float, np.integer, np.floating)):
        raise TypeError(f"radius must be a number, got {type(radius).__name__} {radius!r}")
    if not math.isfinite(radius):
        raise ValueError(f"radius must be finite, got {radius!r}")
    if order not in ("distance", "storage"):
        raise ValueError(f"order must be 'distance' or 'storage', got {order!r}")


_READS = ("search", "range_search", "assign", "reconstruct", "reconstruct_n", "reconstruct_batch",
          "search_and_reconstruct", "search_preassigned", "range_search_preassigned", "sa_encode", "sa_decode",
          "labels", "get_list_size", "get_xb", "state_tensors")
_WRITES = ("add", "add_with_ids", "remove_ids", "train", "reset", "merge_from", "to", "load_state_tensors")
_UNDONE = ("train",)  # a failed train leaves the index as it was (no half-set centroids reused later)


class Index:
    """Base of every index: metric, input coercion, search / range_search and output formatting.
    Subclasses implement train, add, add_with_ids, remove_ids, reconstruct_batch and ``_search``.

    Thread safety (Faiss leaves this to the caller; here it is guaranteed): any number of threads may
    search and read one index while another adds, removes, trains, resets or merges. Each public
    method runs under the index's readers-writer lock (torch_ivf.locking): reads share it, a change
    has it alone, so every search sees the index wholly before or wholly after each change, never a
    removed id once remove_ids has returned. Waiting changes go before new searches. A failed train
    leaves the index exactly as it was."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        guard_methods(cls, _READS, _WRITES, _UNDONE, snapshot)

    # per-process search caches: captured CUDA graphs (and their lock) cannot be copied, and a copy
    # captures its own on its first small search
    _UNCOPIED = ("_graphs", "_graph_lock", "_graph_stat_scales")

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in self._UNCOPIED}

    ops_parallel = True  # CPU search in few large ops: threads inside them (IVF: many small ops, cost.py)

    def __init__(self, d: int, metric="l2", *, device=None, dtype=torch.float32):
        self._rw = RWLock()
        positive_int(d, "d")
        self.d = int(d)
        self.metric = normalize_metric(metric)
        self.device = resolve_device(device, "cpu")
        self.dtype = normalize_dtype(dtype)
        self.next_label = 0  # labels handed out by add(); never reused

    # ---- Faiss-style attributes ------------------------------------------------------------------
    @property
    def metric_type(self) -> int:
        """Faiss's metric number: METRIC_L2 (1) for "l2", METRIC_INNER_PRODUCT (0) for "ip" and "cosine"."""
        return METRIC_L2 if self.metric == "l2" else METRIC_INNER_PRODUCT

    @property
    def largest(self) -> bool:
        """True when larger scores are better (ip, cosine)."""
        return self.metric != "l2"

    @property
    def missing_distance(self) -> float:
        """D where fewer than k results exist (label -1): the float32 extreme, as Faiss returns."""
        big = float(torch.finfo(torch.float32).max)
        return -big if self.largest else big

    # ---- input coercion ----------------------------------------------------------------------
    def _vectors(self, x, name: str = "x", *, defer: bool = False):
        """(float32 (n, d) tensor on the index device, whether the caller passed numpy); refusals as
        arrays.float_rows (gradients dropped; complex, NaN, overflowing magnitudes refused). ``defer``:
        a third item, the magnitude check still to call (GPU queries; arrays.check_magnitude)."""
        x, was_numpy, *pending = float_rows(x, self.d, self.device, name, one_row=True, defer=defer)
        if self.metric == "cosine":
            x = torch.nn.functional.normalize(x, dim=1)
        return (x, was_numpy, *pending)

    def _ids(self, ids, n: int) -> torch.Tensor:
        if not isinstance(ids, (np.ndarray, torch.Tensor, Sequence)):
            raise TypeError(f"ids must be an int64 array or tensor, got {type(ids).__name__}")
        ids = label_tensor(ids, "cpu")
        if ids.shape[0] != n:
            raise ValueError(f"ids must have length {n} (one per vector), got {ids.shape[0]}")
        if n and int(ids.min()) < 0:
            raise ValueError("ids must be non-negative (-1 marks a missing result)")
        if len(torch.unique(ids)) != n:
            raise ValueError("ids must be unique")
        return ids.to(self.device)

    @staticmethod
    def _check_k(k) -> int:
        return positive_int(k, "k")

    def _work_k(self, k: int, nq: int) -> int:
        """The k a search computes: at most what is stored (the rest is padding, as in Faiss). A k
        far beyond ntotal whose padded (nq, k) results alone would take GBs is refused instead."""
        stored = max(self.ntotal, 1)
        if k > stored and nq * k > _PAD_LIMIT:
            raise ValueError(f"k={k} exceeds the {self.ntotal} vectors stored, and the padded ({nq}, {k}) "
                             f"results would take {nq * k * 12 / 2**30:.1f} GiB; ask for k <= ntotal")
        return min(k, stored)

    def _up_to_stored(self, q, k: int, run):
        """run(k') -> (D, I) for k' = _work_k(k), padded back to k columns."""
        work = self._work_k(k, q.shape[0])
        D, I = run(work)
        return pad_results(D, I, k, self.missing_distance) if work < k else (D, I)

    def _out(self, was_numpy: bool, *tensors):
        if was_numpy:
            return tuple(t.cpu().numpy() for t in tensors)
        return tuple(tensors)

    def _selected(self, allowed, labels: torch.Tensor) -> torch.Tensor:
        """Bool like ``labels``: which of these stored labels SearchParams.allowed (a bool mask over
        labels, a collection of labels or an IDSelector) lets through. Memory by len(labels) and the
        selection's size, never by label values (hashed 64-bit ids); stored labels lie below
        next_label, so small label spaces take one dense table."""
        bound = self.next_label
        if isinstance(allowed, IDSelector):
            return allowed.select(labels, bound)
        if isinstance(allowed, np.ndarray) and allowed.dtype == np.bool_:
            allowed = torch.from_numpy(allowed)
        if isinstance(allowed, torch.Tensor) and allowed.dtype == torch.bool:
            mask = allowed.reshape(-1).to(labels.device)
            if mask.numel() == 0:
                return torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
            inside = (labels >= 0) & (labels < mask.numel())
            return inside & mask[labels.clamp(0, mask.numel() - 1)]
        if isinstance(allowed, (np.ndarray, torch.Tensor)):
            chosen = label_tensor(allowed, labels.device, "params.allowed")
        elif isinstance(allowed, (str, bytes)) or not hasattr(allowed, "__iter__"):
            raise TypeError("params.allowed must be a bool mask over labels, a collection of labels or an "
                            f"IDSelector, got {type(allowed).__name__}")
        else:
            chosen = torch.tensor([whole(i, "params.allowed label") for i in allowed], dtype=torch.int64)
        return members(labels, chosen, bound)

    # ---- public API ------------------------------------------------------------------------
    def search(self, x, k, *, params: SearchParams | None = None, D=None, I=None):
        """k nearest stored vectors of each query: (D, I), each (nq, k).

        Args:
            x: queries (nq, d) or (d,), numpy or tensor, any real dtype and device.
            k: results per query (a positive int).
            params: SearchParams / SearchParametersIVF (nprobe, max_codes, allowed mask or labels, sel:
                an IDSelector) or IndexRefineSearchParameters, for this call only.
            D, I: optional float32 / int64 arrays or tensors of shape (nq, k) to fill in and return.

        Returns:
            (D, I): D float32 (nq, k), squared L2 ascending or inner product / cosine descending; I
            int64 (nq, k) labels, -1 (with D the float32 extreme) where fewer than k results exist.
            numpy for numpy input, else tensors on the index device.

        Raises:
            ValueError: untrained index, a bad k, x of the wrong shape or with NaN / Inf, bad params,
                or D / I buffers of the wrong shape or dtype.
            TypeError: x not a numeric array or tensor, or params not a SearchParams.
        """
        k = self._check_k(k)
        params = _params(params)
        if not self.is_trained:
            raise ValueError("the index must be trained before search")
        q, was_numpy, pending = self._vectors(x, defer=True)
        for name, buf, dtypes in (("D", D, (np.float32, torch.float32)), ("I", I, (np.int64, torch.int64))):
            if buf is not None and (tuple(buf.shape) != (q.shape[0], k) or buf.dtype not in dtypes):
                raise ValueError(f"{name} must be a {dtypes[0].__name__} array of shape ({q.shape[0]}, {k}), "
                                 f"got {getattr(buf, 'dtype', type(buf).__name__)} {tuple(getattr(buf, 'shape', ()))}")
        with cost.cpu_threads_for(self.device, q.shape[0], self.ops_parallel):  # the library's count, restored after
            try:
                found = self._up_to_stored(q, k, lambda kk: self._search(q, kk, params))
            except Exception:
                if pending is not None:  # bad queries are reported as such, whatever they broke
                    pending()
                raise
        if pending is not None:
            # GPU queries: their check waited until the search was queued. A search changes no index
            # state, so refusing here still refuses before anything changed (D / I are not written yet)
            pending()
        out = self._out(was_numpy, *found)
        for buf, res in ((D, out[0]), (I, out[1])):
            if isinstance(buf, torch.Tensor):
                buf.copy_(torch.as_tensor(res))
            elif buf is not None:
                buf[...] = res.cpu().numpy() if isinstance(res, torch.Tensor) else res
        return (D if D is not None else out[0]), (I if I is not None else out[1])

    def range_search(self, x, radius: float, *, params: SearchParams | None = None, order: str = "distance"):
        """Every stored vector within ``radius`` of each query (l2: D < radius; ip/cosine: D > radius).

        Args:
            x: queries (nq, d), numpy or tensor.
            radius: the distance (l2) or similarity (ip, cosine) threshold.
            params: as for search.
            order: each query's results "distance" (best first) or "storage" (Faiss's order: as
                stored; for IVF indexes, the probed lists nearest first, each as stored).

        Returns:
            (lims, D, I): lims int64 (nq + 1,); the results of query i are D[lims[i]:lims[i + 1]]
            (float32) and I[lims[i]:lims[i + 1]] (int64 labels), as in Faiss. numpy for numpy input.

        Raises:
            ValueError / TypeError: as for search, or an order other than "distance" / "storage".
        """
        _check_range(radius, order)
        params = _params(params)
        q, was_numpy = self._vectors(x)
        return self._out(was_numpy, *self._range(q, radius, params, order))

    def _range(self, q: torch.Tensor, radius: float, params: SearchParams, order: str, probe=None):
        """(lims, D, I) tensors of range_search; ``probe`` (nq, nprobe): IVF lists given by the caller."""
        nq = q.shape[0]
        if self.ntotal == 0 or nq == 0:
            lims = torch.zeros(nq + 1, dtype=torch.int64, device=self.device)
            return lims, torch.empty(0, device=self.device), torch.empty(0, dtype=torch.int64, device=self.device)
        # a k-NN search whose k covers every candidate a query can meet, in query chunks so that its
        # (queries x k) buffers stay bounded
        k, rows = self._range_plan(params)
        counts, Ds, Is = [], [], []
        for a in range(0, nq, rows):
            qc, pc = q[a:a + rows], None if probe is None else probe[a:a + rows]
            D, I = self._search(qc, k, params) if pc is None else self._search_assigned(qc, k, params, pc)
            hit = ((D < radius) if not self.largest else (D > radius)) & (I >= 0)
            qi = torch.nonzero(hit)[:, 0]
            D, I = D[hit], I[hit]
            key = self._range_key(qc, qi, I, params, pc) if order == "storage" else None
            if key is not None:  # hits are grouped by query already: a stable sort by key keeps that
                perm = torch.sort(key, stable=True).indices
                perm = perm[torch.sort(qi[perm], stable=True).indices]
                D, I = D[perm], I[perm]
            counts.append(hit.sum(1))
            Ds.append(D)
            Is.append(I)
        lims = torch.zeros(nq + 1, dtype=torch.int64, device=self.device)
        lims[1:] = torch.cumsum(torch.cat(counts), 0)
        return lims, torch.cat(Ds), torch.cat(Is)

    def _range_key(self, q: torch.Tensor, qi: torch.Tensor, labels: torch.Tensor, params,
                   probe=None) -> torch.Tensor | None:
        """Sort key of range_search hits (query qi[j] found labels[j]) within each query for
        order="storage" (probe: the lists the caller gave, IVF); None keeps the best-first order."""
        return None

    def _range_plan(self, params: SearchParams) -> tuple[int, int]:
        """(k that returns every candidate of a query, queries per chunk) for range_search."""
        return self.ntotal, max(1, _RANGE_BUDGET // self.ntotal)

    def assign(self, x, k: int = 1):
        """Labels of the k nearest stored vectors (Faiss's Index.assign)."""
        return self.search(x, k)[1]

    def to(self, device) -> "Index":
        """Move the index to ``device`` in place and return it."""
        raise NotImplementedError

    def save(self, path) -> None:
        """Write the index to ``path`` (write_index: safetensors + JSON manifest, atomic, no pickle)."""
        from ..io import write_index
        write_index(self, path)

    @classmethod
    def load(cls, path, device=None) -> "Index":
        """Read an index written by save / write_index onto ``device`` (default: the device it was saved from).

        Raises:
            ValueError: the file holds another index type, or is damaged (CorruptFileError).
        """
        from ..io import read_index
        index = read_index(path, device=device)
        if not isinstance(index, cls):
            raise ValueError(f"{path} holds a {type(index).__name__}, not a {cls.__name__}")
        return index

    def __repr__(self) -> str:
        return f"{type(self).__name__}(d={self.d}, metric={self.metric!r}, ntotal={self.ntotal}, device={self.device})"


guard_methods(Index, _READS, _WRITES, _UNDONE, snapshot)
