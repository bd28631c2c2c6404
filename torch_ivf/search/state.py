"""Per-query state a scanner builds once per search batch and reads while it scores lists."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(kw_only=True)
class QueryState:
    """q: (nq, d) float32 transformed queries; probe: (nq, nprobe) probed lists, best first (None for
    Flat); coarse: (nq, nlist) probe scores from the coarse quantizer (None for Flat), which residual
    scanners add to their list scores instead of computing them again; qnorm: ||q||^2 (l2)."""
    q: torch.Tensor
    probe: torch.Tensor | None = None
    coarse: torch.Tensor | None = None
    qnorm: torch.Tensor | None = None
    cache: dict = field(default_factory=dict)  # what a scanner derives once per search (slab views)

    def count_full_scan(self, rows: torch.Tensor, d: int) -> None:
        """Rows scanned without pruning (Panorama counts them; nothing else does)."""


@dataclass(kw_only=True)
class PQState(QueryState):
    """tables: (M, nq, ksub) look-up tables of the scaled queries; q_scaled: 2q (l2) or q; ct: coarse
    term of each probed list (nq, nprobe); probe_sorted / probe_order: probe sorted by list number and
    the permutation, to find a list's column (built on first use); lut: per-query contiguous tables, built on first use."""
    tables: torch.Tensor
    q_scaled: torch.Tensor
    ct: torch.Tensor
    probe_sorted: torch.Tensor | None = None
    probe_order: torch.Tensor | None = None
    lut: torch.Tensor | None = None


@dataclass(kw_only=True)
class PanoramaFields:
    """qtail: suffix norms of the queries per level; stats: pruning counters of this search; best / thr:
    running top-k scores and k-th best per query; seed_s / seed_p: the seed list's exact top-k;
    kernel_stats: the Triton scan's counters (read lazily)."""
    qtail: torch.Tensor | None = None
    stats: Any = None
    best: torch.Tensor | None = None
    thr: torch.Tensor | None = None
    seed_s: torch.Tensor | None = None
    seed_p: torch.Tensor | None = None
    kernel_stats: torch.Tensor | None = None

    def count_full_scan(self, rows: torch.Tensor, d: int) -> None:
        self.stats.add_counts(rows.repeat(2), d)


@dataclass(kw_only=True)
class PanoramaPQState(PanoramaFields, PQState):
    pass


@dataclass(kw_only=True)
class PanoramaFlatState(PanoramaFields, QueryState):
    """ct: zeros (flat codes have no coarse term in their level sums)."""
    ct: torch.Tensor | None = None
