"""The scanner contract: how one query batch scores rows of the inverted lists. The search paths
(grouped.py, matrix.py, per_query.py, common.py) reach it only through ``index.scanner``: an object
of its own over the index's codec and lists for IndexFlat, IndexIVFFlat and the scalar quantizers
(index/flat_codes.py's FlatScanner) and for IndexIVFPQ (index/ivf_pq.py's PQScanner); the Panorama
indexes, whose pruned scans replace the paths' list loops, mix those scan methods into their class
and are their own scanner (``index.scanner is index``).

Scores are always "larger is better"; ``distances`` turns them into what Faiss returns.
"""
from __future__ import annotations

import torch

from .state import QueryState


class Scanner:
    batched_lists = False  # implements score_lists: the bucketed GPU scan of the grouped path
    kernel_scan = False  # implements scan_kernel: a Triton matrix scan on GPUs with Triton
    graph_safe = False  # its torch matrix scan never syncs with the host, so CUDA graphs may capture it
    graph_safe_kernels = False  # ... and its Triton scan (kernel_scan) neither
    state_type = QueryState

    def prepare(self, q: torch.Tensor, probe: torch.Tensor | None, coarse: torch.Tensor | None) -> QueryState:
        """The per-query state for transformed queries q (nq, d), their probed lists (nq, nprobe) and
        the coarse quantizer's probe scores of every list (nq, nlist); None, None for IndexFlat."""
        raise NotImplementedError

    def score_block(self, ctx: QueryState, qsel: torch.Tensor, list_id: int, start: int, end: int) -> torch.Tensor:
        """Scores (len(qsel), end - start) of queries qsel against slab rows [start, end) of one list."""
        raise NotImplementedError

    def score_lists(self, ctx: QueryState, qsel: torch.Tensor, pos: torch.Tensor, lists: torch.Tensor,
                    row_ok: torch.Tensor):
        """Optional: (scores (B, C, S), pair term (B, C, 1) or None) of queries qsel (B, C) against slab
        rows pos (B, S) of lists (B,); rows where row_ok is False must score -inf. The pair term is
        constant along S, so it is added after the top-k."""
        raise NotImplementedError

    def score_gathered(self, ctx: QueryState, qsel: torch.Tensor, pos: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
        """Scores (b, R) of queries qsel (b,) against slab rows pos (b, R) of lists ``lists`` (b, R)."""
        raise NotImplementedError

    def scan_kernel(self, ctx: QueryState, probe: torch.Tensor, k: int, mask, max_codes: int):
        """Optional: the Triton matrix scan, per-query top-k (scores, slab positions) (nq, k); None where
        the kernel does not take this k (the matrix path then takes its torch gather)."""
        raise NotImplementedError

    def gather_cost(self) -> int:
        """Elements materialised per gathered row (d for flat codes, M for PQ)."""
        return self.d

    def distances(self, ctx: QueryState, scores: torch.Tensor) -> torch.Tensor:
        """Faiss distances from scan scores (identity for ip/cosine)."""
        return scores


class CodecScanner(Scanner):
    """A scanner object over an index's codec and inverted lists (FlatScanner, PQScanner). It keeps
    no state of its own: what it reads comes from the two, so it follows the lists to another device
    and into a copy of the index."""

    def __init__(self, codec, invlists):
        self.codec, self.invlists = codec, invlists

    @property
    def metric(self) -> str:
        """The index's metric ("l2", "ip" or "cosine"), as its codec holds it."""
        return self.codec.metric

    @property
    def by_residual(self) -> bool:
        """True when the rows are residuals: scores add the coarse term of their list."""
        return self.codec.by_residual

    @property
    def device(self) -> torch.device:
        """The device of the inverted lists (index.to moves them)."""
        return self.invlists.device
