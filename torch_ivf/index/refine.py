"""Exact re-ranking (Faiss's IndexRefineFlat): a compressed base index proposes k_factor * k candidates,
full vectors (float16 by default: half the bytes, ~1e-3 relative error) re-score them exactly."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import io as _io
from ..arrays import whole
from ..devices import resolve_device
from .. import kernels
from ..panorama import panorama_stats
from ..search import graphs
from ..search.common import SCORE_BUDGET
from ..topk import topk_first
from .base import Index, SearchParams, _params
from .flat import FlatSearch, IndexFlat
from .ivf import IndexIVF


def _scores(q, vectors, rows, valid, metric) -> torch.Tensor:
    """(nq, kk) float32 re-ranking scores of slab rows, larger is better: <q, x> (ip, cosine: q and x
    are normalised) or -||x - q||^2 (l2, summed as squared differences); -inf where not valid."""
    if kernels.available(q.device):
        from ..kernels.refine_scores import refine_scores
        return refine_scores(q, vectors, rows, valid, metric)
    return _scores_torch(q, vectors, rows, valid, metric)


def _scores_torch(q, vectors, rows, valid, metric) -> torch.Tensor:
    """_scores by gathering the rows, in query chunks of at most SCORE_BUDGET gathered elements."""
    nq, kk = rows.shape
    out = torch.empty((nq, kk), device=q.device)
    step = max(1, SCORE_BUDGET // max(1, kk * q.shape[1]))
    for i in range(0, nq, step):
        qc = q[i : i + step]
        x = vectors.index_select(0, rows[i : i + step].reshape(-1)).view(qc.shape[0], kk, -1).float()
        out[i : i + step] = (-(x - qc[:, None, :]).pow(2).sum(-1) if metric == "l2"
                             else torch.einsum("qkd,qd->qk", x, qc))
    return out.masked_fill_(~valid, float("-inf"))


@dataclass
class IndexRefineSearchParameters(SearchParams):
    """Faiss's IndexRefineSearchParameters: ``k_factor`` overrides the refine index's for this call;
    ``base_index_params`` (a SearchParams) go to the base search instead of these."""
    k_factor: float | None = None
    base_index_params: SearchParams | None = None

    def check(self) -> None:
        if self.k_factor is not None:
            check_k_factor(self.k_factor, "params.k_factor")
        if self.base_index_params is not None:
            _params(self.base_index_params)  # its own checks, before anything runs


def check_k_factor(value, name: str = "k_factor") -> float:
    """A refine factor: a number >= 1 (Faiss's IndexRefine k_factor)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not value >= 1:
        raise ValueError(f"{name} must be a number >= 1, got {value!r}")
    return float(value)



class IndexRefine(Index):
    """``IndexRefine(base_index, k_factor=1.0, refine_dtype=torch.float16)``; factory suffix ",RFlat".
    Faiss's ``IndexRefine(base_index, refine_index)`` form takes an empty IndexFlat (its dtype is kept).

    Args:
        base: an empty torch_ivf index that proposes candidates (IVFPQ, SQ, ...).
        k_factor: the base returns k * k_factor candidates, re-ranked by exact distance (>= 1).
        refine_dtype: dtype of the full vectors kept for re-ranking (float16 halves their memory).
        refine_device: where the full vectors live: None (the base's device) or another device, e.g.
            "cpu" for a GPU index whose full vectors would not fit beside it: each search then
            gathers only its candidates' rows there and sends them through a pinned buffer.

    search(x, k) re-ranks; ``params`` may be IndexRefineSearchParameters (k_factor, base_index_params)."""

    def __init__(self, base=None, k_factor=1.0, refine_dtype=torch.float16, *, refine_device=None,
                 base_class=None, base_config=None, device=None):
        if base is None:  # rebuilt by read_index from the manifest
            cls = _io._REGISTRY.get(base_class)
            if cls is None:
                raise ValueError(f"base_class {base_class!r} is not a known index class")
            base = cls(**(base_config or {}), device=device)
        if not isinstance(base, Index) or isinstance(base, IndexRefine):
            raise TypeError(f"base must be a torch_ivf index (not a refine index), got {type(base).__name__}")
        store = None
        if isinstance(k_factor, Index):  # Faiss's (base, refine_index): that flat index is used as it is
            store, k_factor = k_factor, 1.0
            _check_store(base, store)
            refine_dtype = store.dtype
        k_factor = check_k_factor(k_factor)
        refine_device = _device_or_none(refine_device, "refine_device")
        if base.ntotal and store is None:
            raise ValueError("base must be empty: the refine vectors are added through IndexRefine.add")
        super().__init__(base.d, base.metric, device=base.device, dtype=refine_dtype)
        self.base, self._k_factor = base, k_factor
        self.refine_device = refine_device
        if store is None:
            store = IndexFlat(base.d, base.metric, device=self.refine_device or base.device, dtype=self.dtype)
        elif store.device != (self.refine_device or base.device):
            store.to(self.refine_device or base.device)
        self.refine = store
        self.next_label = base.next_label

    @property
    def k_factor(self) -> float:
        """Candidates per result the base proposes for re-ranking (a number >= 1)."""
        return self._k_factor

    @k_factor.setter
    def k_factor(self, value) -> None:
        self._k_factor = check_k_factor(value)

    # ---- delegation ---------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Number of vectors stored (the base's count)."""
        return self.base.ntotal

    @property
    def is_trained(self) -> bool:
        """The base index's is_trained."""
        return self.base.is_trained

    @property
    def nprobe(self):
        """The base index's nprobe (settable)."""
        return self.base.nprobe

    @nprobe.setter
    def nprobe(self, value) -> None:
        self.base.nprobe = value

    @property
    def base_index(self) -> Index:
        """Faiss's name for ``base``."""
        return self.base

    @property
    def refine_index(self) -> Index:
        """Faiss's name for ``refine`` (the IndexFlat of full vectors)."""
        return self.refine

    def train(self, x) -> None:
        """Train the base index on x (n, d); the full vectors need no training."""
        self.base.train(x)

    def add(self, x) -> None:
        """Add vectors x (n, d) to the base and the full-vector store under labels next_label, ...

        Raises:
            ValueError: the base is not trained, or x has the wrong shape.
        """
        xv, _ = self._vectors(x)
        if not self.base.is_trained:
            raise ValueError("the base index must be trained before add")
        # fresh labels cannot be stored yet: no look-up against every stored label (O(ntotal) per call)
        labels = torch.arange(self.base.next_label, self.base.next_label + xv.shape[0], device=self.device)
        self.base._append(self.base._transform(xv), labels)
        self.refine._append(xv.to(self.refine.device), labels.to(self.refine.device))
        self.next_label = self.base.next_label

    def add_with_ids(self, x, ids) -> None:
        """Add vectors x (n, d) under ids (n,) int64 (unique, non-negative, not stored yet)."""
        xv, _ = self._vectors(x)
        ids = self._ids(ids, xv.shape[0])
        if not self.base.is_trained:
            raise ValueError("the base index must be trained before add")
        self.base.add_with_ids(xv, ids)
        self.refine.add_with_ids(xv, ids)
        self.next_label = self.base.next_label

    def remove_ids(self, ids) -> int:
        """Remove by labels, bool mask or IDSelector from both parts; returns how many were removed."""
        n = self.base.remove_ids(ids)
        self.refine.remove_ids(ids)
        return n

    def reset(self) -> None:
        """Drop every stored vector (training is kept; labels restart at 0)."""
        self.base.reset()
        self.refine.reset()
        self.next_label = 0

    def reconstruct_batch(self, labels) -> torch.Tensor:
        """(n, d) float32 full vectors of the given labels (ValueError for a label not stored)."""
        return self.refine.reconstruct_batch(labels).float().to(self.device)

    def reconstruct(self, key) -> torch.Tensor:
        """(d,) float32 full vector of label ``key``."""
        return self.reconstruct_batch([whole(key, "key")])[0]

    def to(self, device) -> "IndexRefine":
        """Move the base (and the full vectors, unless refine_device pins them) to ``device``; returns self."""
        self.device = resolve_device(device, "cpu")  # before any part moves
        self.base.to(device)
        self.refine.to(self.refine_device or device)
        return self

    # ---- search -------------------------------------------------------------------------
    @property
    def ops_parallel(self) -> bool:
        """Whether a CPU search runs threads inside its ops: as the base index's, whose search dominates."""
        return self.base.ops_parallel

    def _search(self, q, k, params: SearchParams):
        if self.refine.ntotal == 0:  # no slab row to point at; the base answers "all missing" (host count, no sync)
            return self.base._search(q, k, params)
        k_factor, base_params = self.k_factor, params
        if isinstance(params, IndexRefineSearchParameters):
            k_factor = params.k_factor if params.k_factor is not None else k_factor
            if params.base_index_params is not None:
                base_params = _params(params.base_index_params)
        kk = max(k, int(k * k_factor))
        base = self.base
        if (params.allowed is None and base_params.allowed is None and self.refine_device is None
                and _base_graph_ok(base, q.shape[0], base_params)):
            # small batches: the base search and the re-ranking replay as one graph
            key = (q.shape[0], k, kk, base_params.nprobe, base_params.max_codes, getattr(base, "nprobe", None),
                   getattr(base, "max_codes", None), getattr(base, "search_mode", None), base.invlists.version,
                   self.refine.invlists.version, kernels.enabled)
            out = graphs.replay_graph(self, key, q, lambda x: self._refined(x, k, kk, base_params), stats_owner=base)
            if "panorama_stats" in base.__dict__:
                panorama_stats.add(base.panorama_stats)  # the base's own search did not run (replayed)
            return out
        return self._refined(q, k, kk, base_params)

    def _refined(self, q, k, kk, base_params):
        _, cand = self.base._search(q, kk, base_params)
        # The refine IndexFlat stores plain vectors (one list, no residual), so a slab row is the vector.
        # Labels it lacks (-1 above all) come back not found and score -inf: no host sync.
        if self.refine_device is None:
            found, rows, _ = self.refine.invlists.locate(cand)
            s = _scores(q, self.refine.invlists.field("vectors"), rows, found, self.metric)
        else:
            s, rows = self._gathered_scores(q, cand)
        top, at = topk_first(s, min(k, s.shape[1]), rows)  # equal scores: the first stored first
        I = torch.where(torch.isneginf(top), -1, cand.gather(1, at))
        D = torch.where(I < 0, self.missing_distance, -top if self.metric == "l2" else top)
        if D.shape[1] < k:
            D = torch.nn.functional.pad(D, (0, k - D.shape[1]), value=self.missing_distance)
            I = torch.nn.functional.pad(I, (0, k - I.shape[1]), value=-1)
        return D, I

    def _gathered_scores(self, q, cand):
        """_scores with the full vectors on refine_device: per query chunk, the candidates' rows are
        gathered there (into pinned memory when the queries are on a GPU), copied to the queries'
        device and scored; returns (scores, slab rows) on the queries' device."""
        nq, kk = cand.shape
        found, rows, _ = self.refine.invlists.locate(cand.to(self.refine.device))
        vectors = self.refine.invlists.field("vectors")
        pin = q.device.type == "cuda" and vectors.device.type == "cpu"
        s = torch.empty((nq, kk), device=q.device)
        step = max(1, SCORE_BUDGET // max(1, kk * self.d))
        for a in range(0, nq, step):
            r = rows[a:a + step].reshape(-1)
            x = torch.empty((r.shape[0], self.d), dtype=vectors.dtype, pin_memory=pin)
            torch.index_select(vectors, 0, r, out=x)
            x = x.to(q.device, non_blocking=pin)
            local = torch.arange(r.shape[0], device=q.device).view(-1, kk)
            s[a:a + step] = _scores(q[a:a + step], x, local, found[a:a + step].to(q.device), self.metric)
        return s, rows.to(q.device)

    def _range_key(self, q, qi, labels, params, probe=None):
        if isinstance(params, IndexRefineSearchParameters) and params.base_index_params is not None:
            params = _params(params.base_index_params)
        return self.base._range_key(q, qi, labels, params, probe)  # the base's order, as Faiss returns it

    def _range_plan(self, params) -> tuple[int, int]:
        k, rows = self.base._range_plan(params)  # every base candidate is re-scored: k_factor x the buffers
        return k, max(1, int(rows / self.k_factor))

    # ---- persistence --------------------------------------------------------------------
    def config(self) -> dict:
        """Constructor keyword arguments that rebuild this index (JSON-serialisable)."""
        return {"k_factor": self.k_factor, "refine_dtype": str(self.dtype).removeprefix("torch."),
                "refine_device": None if self.refine_device is None else str(self.refine_device),
                "base_class": type(self.base).__name__, "base_config": self.base.config()}

    def state_tensors(self) -> dict:
        """Tensors io.py saves: the base's and the full vectors' state."""
        out = {f"base.{k}": v for k, v in self.base.state_tensors().items()}
        out.update({f"refine.{k}": v for k, v in self.refine.state_tensors().items()})
        out["next_labels"] = torch.tensor([self.base.next_label, self.refine.next_label])
        return out

    def load_state_tensors(self, tensors) -> None:
        """Restore what state_tensors returned."""
        self.base.load_state_tensors({k[5:]: v for k, v in tensors.items() if k.startswith("base.")})
        self.refine.load_state_tensors({k[7:]: v for k, v in tensors.items() if k.startswith("refine.")})
        if "next_labels" in tensors:
            self.base.next_label, self.refine.next_label = (int(v) for v in tensors["next_labels"])


def _check_store(base, store) -> None:
    """A refine index given to IndexRefine: a flat index of the base's vectors under the same labels."""
    if not isinstance(store, IndexFlat) or store.d != base.d or store.metric != base.metric:
        raise ValueError(f"refine_index must be an IndexFlat with d={base.d} and metric {base.metric!r}, "
                         f"got {type(store).__name__}")
    if store.ntotal != base.ntotal or (base.ntotal and not torch.equal(
            torch.sort(store.labels().cpu()).values, torch.sort(base.labels().cpu()).values)):
        raise ValueError(f"refine_index must hold the base's {base.ntotal} vectors under the same ids "
                         f"(or both be empty), got {store.ntotal} vectors")


def _device_or_none(value, name: str):
    if value is None:
        return None
    try:
        return torch.device(value)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name} must be None or a torch device such as 'cpu' or 'cuda:0', got {value!r}") from None


def _base_graph_ok(base, nq: int, params) -> bool:
    """The base's search can be captured: an exhaustive one, or an IVF whose path for this batch is
    a capturable matrix scan."""
    if isinstance(base, FlatSearch):
        return graphs.usable(base.device, nq)
    if not isinstance(base, IndexIVF) or not base._graph_ok(nq):
        return False
    return base._pick_mode(nq, min(params.nprobe or base.nprobe, base.nlist)) == "matrix"


class IndexRefineFlat(IndexRefine):
    """Faiss's ``IndexRefineFlat(base_index, k_factor=1.0)``: re-ranks on float32 vectors, as Faiss does."""

    def __init__(self, base=None, k_factor=1.0, refine_dtype=torch.float32, *, refine_device=None,
                 base_class=None, base_config=None, device=None):
        super().__init__(base, k_factor, refine_dtype, refine_device=refine_device, base_class=base_class,
                         base_config=base_config, device=device)



def extract_index_ivf(index) -> Index:
    """Faiss's extract_index_ivf: the IVF index inside a refine wrapper (or the index itself)."""
    inner = index.base if isinstance(index, IndexRefine) else index
    if not isinstance(inner, IndexIVF):
        raise TypeError(f"index must be an IVF index or wrap one, got {type(index).__name__}")
    return inner
