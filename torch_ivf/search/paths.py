"""How an IVF index searches: coarse probe, the scanner's per-query state, the path choose_path picks,
then scan results mapped to Faiss's (D, I). The scanner is ``index.scanner`` (search/scanner.py)."""
from __future__ import annotations

import torch

from .. import kernels
from .choose import choose_path
from .common import faiss_results
from . import graphs
from .grouped import GroupedScan
from .matrix import MatrixScan
from .per_query import PerQueryScan


class IVFScan(GroupedScan, MatrixScan, PerQueryScan):
    """Search half of IndexIVF; relies on its invlists, coarse quantizer and ``scanner`` (a Scanner
    object, or the index itself where its class implements the Scanner methods)."""

    wave_scan = False  # Panorama: "auto" takes its wave-ordered matrix scan on every device
    ops_parallel = False  # CPU: many small ops, one thread each; lists spread over workers (cost.py)

    # ---- search -------------------------------------------------------------------------
    def _pick_mode(self, nq: int, nprobe: int, max_codes: int = 0) -> str:
        return choose_path(self, nq, nprobe, max_codes)

    def _search(self, q: torch.Tensor, k: int, params):
        nq = q.shape[0]
        mask = self._allowed_mask(params.allowed)
        if self.ntotal == 0 or nq == 0:
            return (torch.full((nq, k), self.missing_distance, device=self.device),
                    torch.full((nq, k), -1, dtype=torch.int64, device=self.device))
        nprobe = min(params.nprobe if params.nprobe is not None else self.nprobe, self.nlist)
        if nprobe <= 0:
            raise ValueError(f"nprobe must be a positive int, got {nprobe!r} (index.nprobe {self.nprobe!r}, params.nprobe {params.nprobe!r})")
        max_codes = self.max_codes if params.max_codes is None else int(params.max_codes)
        mode = self._pick_mode(nq, nprobe, max_codes)
        if mode == "matrix" and mask is None and self._graph_ok(nq):
            return self._search_graphed(q, k, nprobe, max_codes, mode)
        return self._search_core(q, k, nprobe, max_codes, mask, mode)

    def _search_core(self, q, k, nprobe, max_codes, mask, mode, probe=None):
        """probe: (nq, nprobe) lists to scan, given by the caller (search_preassigned), or None."""
        qt = self._transform(q)
        if probe is None:
            probe, coarse = self.coarse.probe(qt, nprobe)
        else:
            coarse = self.coarse.scores(qt)
        ctx = self.scanner.prepare(qt, probe, coarse)
        if mode == "matrix":
            scores, pos = self._scan_matrix(ctx, probe, k, mask, max_codes)
        elif mode == "query":
            scores, pos = self._scan_per_query(ctx, probe, k, mask)
        else:
            scores, pos = self._scan_grouped(ctx, probe, k, mask, max_codes)
        return faiss_results(self, ctx, scores, pos)

    # ---- CUDA graphs for small batches ---------------------------------------------------
    def _graph_ok(self, nq: int) -> bool:
        scanner = self.scanner
        kernel = scanner.kernel_scan and kernels.available(self.device)
        return (scanner.graph_safe_kernels if kernel else scanner.graph_safe) and graphs.usable(self.device, nq)

    def _search_graphed(self, q, k, nprobe, max_codes, mode):
        key = (q.shape[0], k, nprobe, max_codes, mode, self.invlists.version, self.centroids.data_ptr(), kernels.enabled)
        return graphs.replay_graph(self, key, q, lambda x: self._search_core(x, k, nprobe, max_codes, None, mode))

    def _filter(self, scores: torch.Tensor, pos: torch.Tensor, mask) -> torch.Tensor:
        if mask is None:
            return scores
        return scores.masked_fill(~self._allowed_at(mask, pos), float("-inf"))

