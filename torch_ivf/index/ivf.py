"""Shared IVF machinery: coarse quantizer + packed inverted lists + a codec + a scanner.

Written once here and in stored.py / search/: training, probe selection, the search paths, id
filters, add/remove/reconstruct, merge_from and the state persisted by io.py. A concrete index type
supplies its codec (torch_ivf.codecs: what is stored per vector, how to encode / decode it) and its
scanner (search/scanner.py: how a group of queries scores rows of one list). Scores inside the scan
are always "larger is better"; ``distances`` turns them into what Faiss returns.
"""
from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import torch

from .. import progress
from ..arrays import non_negative_int, positive_int
from ..kmeans import ClusteringParameters, cp_field
from ..search.choose import SEARCH_MODES
from ..search.paths import IVFScan
from .base import _RANGE_BUDGET, SearchParams, _check_range, _params
from .flat import IndexFlat
from .quantizer import CoarseQuantizer
from .stored import StoredIndex


class IndexIVF(IVFScan, StoredIndex):
    """Shared IVF machinery: a coarse quantizer, inverted lists, a codec and a scanner.

    Not built directly: IndexIVFFlat, IndexIVFPQ, IndexIVFScalarQuantizer and the Panorama indexes
    are its concrete types, and their constructors take these arguments.

    Args:
        d: vector dimension.
        nlist: number of inverted lists (coarse centroids).
        metric: "l2", "ip", "cosine" or METRIC_L2 / METRIC_INNER_PRODUCT.
        nprobe: lists scanned per query (clamped to nlist at search time, as in Faiss).
        device: torch device of the index (default CPU).
        dtype: storage dtype of flat codes (float32, float16, bfloat16).
        search_mode: "auto" (choose by device and batch), "grouped" (alias "csr") or "matrix".
        max_codes: rows visited per query in coarse order (0: unlimited), as Faiss's max_codes.
        seed: k-means seed of the coarse quantizer.
        niter: k-means iterations of the coarse quantizer.
        quantizer: a flat index holding (or to be trained to hold) the centroids; shared, not copied.
        verbose: progress bars for training, encoding and adds (settable later): True always (Faiss's
            ``index.verbose``), False never, None (default) for long work on a terminal only.

    Raises:
        ValueError: a bad d, nlist, metric, nprobe, dtype, search_mode or max_codes.
    """

    def __init__(self, d: int, nlist: int, metric="l2", nprobe: int = 1, *, device=None,
                 dtype=torch.float32, search_mode: str = "auto", max_codes: int = 0, seed: int = 1234,
                 niter: int = 20, quantizer=None, verbose: bool | None = None):
        positive_int(nlist, "nlist")
        self.nlist = int(nlist)
        super().__init__(d, metric, device=device, dtype=dtype, nlist=self.nlist)
        self.nprobe = nprobe
        self.search_mode = search_mode
        self.max_codes = max_codes
        # the coarse k-means settings, Faiss's index.cp (inner-product lists get unit centroids)
        self.cp = ClusteringParameters(niter=niter, seed=seed, spherical=self.coarse_metric == "ip")
        self.coarse = CoarseQuantizer(self.d, self.nlist, self.coarse_metric, self.device, quantizer)
        self.verbose = verbose

    def search(self, x, k, nprobe=None, *, params: SearchParams | None = None, D=None, I=None):
        """As Index.search; ``nprobe`` (a positive int) overrides the index's and params' for this call:
        ``index.search(xq, 10, 32)``."""
        if nprobe is not None:
            positive_int(nprobe, "nprobe")
            params = replace(_params(params), nprobe=int(nprobe))
        return super().search(x, k, params=params, D=D, I=I)

    # ---- validated settings --------------------------------------------------------------
    @property
    def nprobe(self) -> int:
        """Lists scanned per query (a positive int; values above nlist scan every list)."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value) -> None:
        positive_int(value, "nprobe")
        self._nprobe = int(value)  # values above nlist are clamped at search time, as Faiss does

    @property
    def verbose(self) -> bool | None:
        """Progress bars: True always, False never, None for long work on a terminal (torch_ivf.progress)."""
        return self._verbose

    @verbose.setter
    def verbose(self, value) -> None:
        self._verbose = progress.check_verbose(value)

    @property
    def search_mode(self) -> str:
        """"auto", "grouped" (alias "csr") or "matrix" (see README: How it searches)."""
        return self._search_mode

    @search_mode.setter
    def search_mode(self, value) -> None:
        if value not in SEARCH_MODES:
            raise ValueError(f"search_mode must be one of {SEARCH_MODES}, got {value!r}")
        self._search_mode = "grouped" if value == "csr" else value

    @property
    def max_codes(self) -> int:
        """Rows visited per query in coarse order (0: unlimited), as Faiss's max_codes."""
        return self._max_codes

    @max_codes.setter
    def max_codes(self, value) -> None:
        self._max_codes = non_negative_int(0 if value is None else value, "max_codes")

    niter = cp_field("niter", "Coarse k-means iterations (``cp.niter``).")
    seed = cp_field("seed", "Coarse k-means seed (``cp.seed``).")

    @property
    def is_trained(self) -> bool:
        """True once the coarse centroids (and the codec, if any) are trained."""
        return self.coarse.is_trained

    @property
    def coarse_metric(self) -> str:
        """The metric lists are probed with: "l2", or "ip" (also for cosine)."""
        return "l2" if self.metric == "l2" else "ip"

    @property
    def quantizer(self) -> IndexFlat:
        """The flat index of the coarse centroids (Faiss's ``index.quantizer``): the one given to the
        constructor, if any, shared with every index built on it."""
        return self.coarse.index

    @property
    def centroids(self) -> torch.Tensor:
        """(nlist, d) float32 coarse centroids ((0, d) before training)."""
        return self.coarse.centroids

    @centroids.setter
    def centroids(self, value: torch.Tensor) -> None:
        self.coarse.set_centroids(value)

    # ---- training and adding ------------------------------------------------------------
    def _assign(self, x: torch.Tensor) -> torch.Tensor:
        return self.coarse.assign(x, verbose=self.verbose)

    def _coarse(self, q: torch.Tensor, nprobe: int):
        """(probed lists (nq, nprobe), probe scores of every list (nq, nlist)) of transformed queries."""
        return self.coarse.probe(q, nprobe)

    def train(self, x) -> None:
        """Train the coarse quantizer (unless it is trained already) and the codec.

        Vectors already stored are re-assigned to the new lists where the codec is lossless.

        Args:
            x: (n, d) training vectors, n >= nlist, numpy or tensor (a sample is enough:
                torch_ivf.bulk.train_on_sample draws one from a memmap).

        Raises:
            ValueError: fewer than nlist rows, a bad shape or NaN / Inf, or a lossy index (PQ, SQ)
                that still holds vectors (reset() first).
        """
        x, _ = self._vectors(x)
        if x.shape[0] < self.nlist:
            raise ValueError(f"x must have at least nlist={self.nlist} rows to train, got {x.shape[0]}")
        if self.ntotal and not self.lossless:
            raise ValueError(f"{type(self).__name__} holds {self.ntotal} encoded vectors that cannot be "
                             "re-assigned losslessly; call reset() before training again")
        keep = None
        if self.ntotal:  # re-training re-assigns what is stored instead of dropping it
            pos, lists = self.invlists.live_positions()
            keep = (self._untransform(self._decode(pos, lists)), self.invlists.labels_at(pos).clone())
        self._fit(x)
        if keep is not None:
            self.invlists.reset()
            self._append(self._transform(keep[0]), keep[1])

    def _fit(self, x: torch.Tensor) -> None:
        """Train the pre-transform (if any), the coarse centroids and the codec."""
        xt = self._transform(x)
        if not self.coarse.is_trained:  # a quantizer given trained keeps its centroids, as in Faiss
            self.coarse.train(xt, self.cp, verbose=self.verbose)
        self._train_codec(xt, self._assign(xt))

    def coarse_code_size(self) -> int:
        """Bytes of the list number at the head of a standalone code (little-endian), as in Faiss."""
        return self._head_bytes()

    def get_list_size(self, list_no: int) -> int:
        """Faiss's IndexIVF.get_list_size: vectors stored in inverted list ``list_no``."""
        if isinstance(list_no, bool) or not isinstance(list_no, (int, np.integer)) or not 0 <= list_no < self.nlist:
            raise ValueError(f"list_no must be an int in [0, {self.nlist}), got {list_no!r}")
        return self.invlists.list_size(int(list_no))

    def make_direct_map(self, new_maintain: bool = True) -> None:
        """Kept so Faiss code runs: labels are always mapped here, reconstruct needs no direct map."""

    def _check_mergeable(self, other) -> None:
        if type(other) is not type(self) or other.d != self.d or other.nlist != self.nlist or other.metric != self.metric:
            raise ValueError("other must be the same index type with the same d, nlist and metric")
        if not torch.equal(other.centroids.cpu(), self.centroids.cpu()) or not self._same_codec(other):
            raise ValueError("other must share this index's trained centroids and codec")

    def to(self, device) -> "IndexIVF":
        super().to(device)
        self.coarse.to(self.device)
        return self

    def _range_plan(self, params) -> tuple[int, int]:
        # a query meets at most the nprobe largest lists (and max_codes rows); the grouped scan keeps
        # k candidates per (query, probed list)
        nprobe = min(params.nprobe or self.nprobe, self.nlist)
        k = int(self.invlists.sizes.topk(nprobe).values.sum())
        max_codes = self.max_codes if params.max_codes is None else int(params.max_codes)
        k = max(1, min(k, max_codes) if max_codes else k)
        return k, max(1, _RANGE_BUDGET // (k * nprobe))

    def _range_key(self, q, qi, labels, params, probe=None) -> torch.Tensor:
        # Faiss scans a query's probed lists in the order probed (nearest first), each in storage order
        lists, offset = self._list_offsets(labels)
        if probe is None:
            nprobe = min(params.nprobe or self.nprobe, self.nlist)
            probe, _ = self._coarse(self._transform(q), nprobe)
        rank = (probe[qi] == lists[:, None]).to(torch.int8).argmax(1)
        return rank * (self.invlists.max_size + 1) + offset

    # ---- searches over lists the caller chose (Faiss's *_preassigned) ------------------------
    def _assignment(self, assign, nq: int) -> torch.Tensor:
        a = torch.as_tensor(assign.cpu().numpy() if isinstance(assign, torch.Tensor) else np.asarray(assign))
        if a.dtype.is_floating_point or a.dtype == torch.bool or a.ndim != 2 or a.shape[0] != nq or a.shape[1] == 0:
            raise ValueError(f"assign must be an integer array of shape ({nq}, nprobe), got "
                             f"{a.dtype} {tuple(a.shape)}")
        if a.numel() and (int(a.min()) < 0 or int(a.max()) >= self.nlist):
            raise ValueError(f"assign must hold list numbers in [0, {self.nlist}), got {int(a.min())}..{int(a.max())}")
        return a.to(device=self.device, dtype=torch.int64)

    def _search_assigned(self, q, k, params, probe):
        nq = q.shape[0]
        if self.ntotal == 0 or nq == 0:
            return (torch.full((nq, k), self.missing_distance, device=self.device),
                    torch.full((nq, k), -1, dtype=torch.int64, device=self.device))
        max_codes = self.max_codes if params.max_codes is None else int(params.max_codes)
        mode = self._pick_mode(nq, probe.shape[1])
        return self._search_core(q, k, probe.shape[1], max_codes, self._allowed_mask(params.allowed), mode, probe=probe)

    def search_preassigned(self, x, k, assign, centroid_dis=None, *, params: SearchParams | None = None):
        """search() over the lists ``assign`` names instead of the nearest ones (Faiss's
        search_preassigned, e.g. with ``index.quantizer.search(x, nprobe)``'s labels).

        Args:
            x: queries (nq, d).
            k: results per query.
            assign: (nq, nprobe) integer list numbers in [0, nlist), each query's lists.
            centroid_dis: the queries' distances to those lists; not read (recomputed exactly).
            params: as for search (its nprobe is not used).

        Returns:
            (D, I) as search returns them.

        Raises:
            ValueError / TypeError: as for search, or assign not (nq, nprobe) list numbers.
        """
        k = self._check_k(k)
        params = _params(params)
        if not self.is_trained:
            raise ValueError("the index must be trained before search")
        q, was_numpy = self._vectors(x)
        probe = self._assignment(assign, q.shape[0])
        D, I = self._up_to_stored(q, k, lambda kk: self._search_assigned(q, kk, params, probe))
        return self._out(was_numpy, D, I)

    def range_search_preassigned(self, x, radius: float, assign, centroid_dis=None, *,
                                 params: SearchParams | None = None, order: str = "distance"):
        """range_search() over the lists ``assign`` names (Faiss's range_search_preassigned); arguments
        as for search_preassigned and range_search."""
        _check_range(radius, order)
        params = _params(params)
        if not self.is_trained:
            raise ValueError("the index must be trained before search")
        q, was_numpy = self._vectors(x)
        probe = self._assignment(assign, q.shape[0])
        # the range plan sizes its k by nprobe: the lists given here
        return self._out(was_numpy, *self._range(q, radius, replace(params, nprobe=probe.shape[1]), order, probe))

    # ---- persistence (io.py writes these) ----------------------------------------------
    def config(self) -> dict:
        """Constructor keyword arguments that rebuild this index (JSON-serialisable)."""
        return {"d": self.d, "nlist": self.nlist, "metric": self.metric, "nprobe": self.nprobe,
                "dtype": str(self.dtype).removeprefix("torch."), "search_mode": self.search_mode,
                "max_codes": self.max_codes, "seed": self.seed, "niter": self.niter}

    def state_tensors(self) -> dict:
        """Tensors io.py saves: the centroids, the packed lists and the codec's tensors."""
        return {"centroids": self.centroids, **super().state_tensors()}

    def load_state_tensors(self, tensors: dict) -> None:
        """Restore what state_tensors returned (ValueError for centroids of the wrong shape)."""
        centroids = tensors["centroids"]
        if centroids.numel() and tuple(centroids.shape) != (self.nlist, self.d):
            raise ValueError(f"stored centroids have shape {tuple(centroids.shape)}, expected ({self.nlist}, {self.d})")
        self.centroids = centroids
        super().load_state_tensors(tensors)


def faiss_form(init):
    """Let an IVF constructor also take Faiss's leading quantizer: ``cls(quantizer, d, nlist, ...)`` is
    ``cls(d, nlist, ..., quantizer=quantizer)``. help() shows ``init``'s own signature."""
    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if args and not isinstance(args[0], (int, np.integer)) and hasattr(args[0], "d"):
            if "quantizer" in kwargs:
                raise TypeError("quantizer given twice: as the first argument and as quantizer=")
            args, kwargs = args[1:], {**kwargs, "quantizer": args[0]}
        init(self, *args, **kwargs)
    return __init__
