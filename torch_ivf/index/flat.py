"""Exact search: every stored vector scored against every query (chunked GEMM + top-k)."""
from __future__ import annotations

import torch

from .. import kernels
from ..codecs import FlatCodec
from ..search.common import faiss_results, pad_k, scan_list
from ..search import cost, graphs
from .base import SearchParams
from .flat_codes import FlatScanner
from .stored import StoredIndex


class FlatSearch(StoredIndex):
    """Exhaustive search over one list (IndexFlat, IndexScalarQuantizer): every query scans every row."""

    def _assign(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)

    def _make_scanner(self) -> FlatScanner:
        return FlatScanner(self.codec, self.invlists)

    def load_state_tensors(self, tensors: dict) -> None:
        """Restore what state_tensors returned (a one-list IVF file's centroids are ignored)."""
        # files written as a one-list IVF also hold a (1, d) "centroids" tensor: Flat has no centroids
        super().load_state_tensors({k: v for k, v in tensors.items() if k != "centroids"})

    # ---- search ---------------------------------------------------------------------------
    def _search(self, q: torch.Tensor, k: int, params: SearchParams):
        nq = q.shape[0]
        mask = self._allowed_mask(params.allowed)
        if self.ntotal == 0 or nq == 0:
            return (torch.full((nq, k), self.missing_distance, device=self.device),
                    torch.full((nq, k), -1, dtype=torch.int64, device=self.device))
        if mask is None and graphs.usable(self.device, nq):
            key = (nq, k, self.invlists.version, kernels.enabled)
            return graphs.replay_graph(self, key, q, lambda x: self._search_core(x, k))
        return self._search_core(q, k, mask=mask)

    def _probe_kernel(self, nq: int, k: int) -> bool:
        """Whether the Triton query-major scan serves this batch: a GEMM reads the slab once for every
        query, the kernel once per query, so only the smallest batches (the cost figure
        flat_exact_kernel_nq; 0, i.e. never, by default)."""
        if not (self.scanner.kernel_scan and kernels.available(self.device)):
            return False
        from ..kernels.flat_scan import MAX_K
        return k <= MAX_K and nq <= cost.figures(self.device)["flat_exact_kernel_nq"]

    def _search_core(self, q, k, nprobe=None, max_codes=None, mask=None, mode=None):
        """One list, every query scans it: no pairs to group, no host sync. nprobe, max_codes and mode
        mean nothing here; they are accepted so that a call written for IVF's _search_core runs."""
        ctx = self.scanner.prepare(q, None, None)
        if self._probe_kernel(q.shape[0], k):  # one query: row chunks of the one list, top-k fused in
            probe = torch.zeros((q.shape[0], 1), dtype=torch.int64, device=self.device)
            return faiss_results(self, ctx, *self.scanner.scan_kernel(ctx, probe, k, mask, 0))
        start, size = int(self.invlists.starts[0]), int(self.invlists.sizes[0])
        qsel = torch.arange(q.shape[0], device=self.device)
        scores, pos = pad_k(*scan_list(self, ctx, qsel, 0, start, size, k, mask), k)
        return faiss_results(self, ctx, scores, pos)


class IndexFlat(FlatSearch):
    """``IndexFlat(d, metric="l2", *, device=None, dtype=torch.float32)``: exact search.

    Args:
        d: vector dimension.
        metric: "l2" (squared L2, ascending), "ip" (inner product, descending), "cosine" (vectors and
            queries normalised, then inner product) or Faiss's METRIC_L2 / METRIC_INNER_PRODUCT.
        device: torch device of the stored vectors (default CPU).
        dtype: storage dtype, float32, float16 or bfloat16 (scores are computed in float32).
    """

    def __init__(self, d, metric="l2", *, device=None, dtype=torch.float32):
        super().__init__(d, metric, device=device, dtype=dtype)

    def _make_codec(self) -> FlatCodec:
        return FlatCodec(self.d, self.metric, self.dtype)  # one list, no centroid: vectors as they are

    @property
    def is_trained(self) -> bool:
        """Always True: a flat index has nothing to learn."""
        return True

    @property
    def code_size(self) -> int:
        """Bytes per stored vector (Faiss's code_size)."""
        return self.codec.sa_bytes()

    def config(self) -> dict:
        """Constructor keyword arguments that rebuild this index (JSON-serialisable)."""
        return {"d": self.d, "metric": self.metric, "dtype": str(self.dtype).removeprefix("torch.")}

    def train(self, x) -> None:
        """Nothing to learn; input is still validated, as Faiss accepts train() on flat indexes."""
        self._vectors(x)


class IndexFlatL2(IndexFlat):
    """``IndexFlatL2(d)``: exact squared-L2 search (Faiss's IndexFlatL2)."""

    def __init__(self, d, *, device=None, dtype=torch.float32):
        super().__init__(d, "l2", device=device, dtype=dtype)

    def config(self) -> dict:
        """Constructor keyword arguments that rebuild this index (JSON-serialisable)."""
        return {k: v for k, v in super().config().items() if k != "metric"}


class IndexFlatIP(IndexFlat):
    """``IndexFlatIP(d)``: exact inner-product search (Faiss's IndexFlatIP)."""

    def __init__(self, d, *, device=None, dtype=torch.float32):
        super().__init__(d, "ip", device=device, dtype=dtype)

    def config(self) -> dict:
        """Constructor keyword arguments that rebuild this index (JSON-serialisable)."""
        return {k: v for k, v in super().config().items() if k != "metric"}
