"""Panorama: exact level-wise pruning with the Cauchy-Schwarz bound (shared by IVFPQ and IVFFlat).

A candidate's score (larger is better) is ``base + sum over levels of level_part``; what is not yet
scanned after level j-1 is an inner product over the remaining dimensions, so
    score <= partial_j + coef * ||q_tail_j|| * ||y_tail_j||          (coef 2 for l2, 1 for ip)
and a candidate whose bound is below the current k-th best score can be dropped without changing the
result. Survivors get their exact score from the unpruned scorer, so results are identical to it.
"""
from __future__ import annotations

import torch

from .topk import topk_first

_REL_SLACK = 1e-5  # bound slack relative to the magnitude of the summed terms (fp32 rounding of partials)


class PanoramaStats:
    """Like Faiss's PanoramaStats: dimensions actually scanned versus those an unpruned scan reads.

    A GPU scan leaves its counters on the device (``add_counts``); they are read when a total is,
    so a search never waits for the device just to count."""

    _MAX_PENDING = 64  # device counters held before they are read anyway (bounds their memory)

    def __init__(self, total_dims_scanned: int = 0, total_dims: int = 0):
        self._scanned, self._total, self._pending = int(total_dims_scanned), int(total_dims), []

    def _settle(self) -> None:
        for counts, scale in self._pending:
            scanned, total = counts.tolist()
            self._scanned += scanned * scale
            self._total += total * scale
        self._pending = []

    def add_counts(self, counts, scale: int) -> None:
        """Add device counters (2,) = [units scanned, units in all], each unit ``scale`` dimensions."""
        self._pending.append((counts, scale))
        if len(self._pending) > self._MAX_PENDING:
            self._settle()

    @property
    def total_dims_scanned(self) -> int:
        self._settle()
        return self._scanned

    @total_dims_scanned.setter
    def total_dims_scanned(self, value) -> None:
        self._settle()
        self._scanned = int(value)

    @property
    def total_dims(self) -> int:
        self._settle()
        return self._total

    @total_dims.setter
    def total_dims(self, value) -> None:
        self._settle()
        self._total = int(value)

    @property
    def ratio_dims_scanned(self) -> float:
        return self.total_dims_scanned / self.total_dims if self.total_dims else 1.0

    def reset(self) -> None:
        self._scanned, self._total, self._pending = 0, 0, []

    def add(self, other: "PanoramaStats") -> None:
        self._scanned += other._scanned
        self._total += other._total
        for counts, scale in other._pending:
            self.add_counts(counts, scale)

    def __repr__(self) -> str:
        return f"PanoramaStats(total_dims_scanned={self.total_dims_scanned}, total_dims={self.total_dims})"


panorama_stats = PanoramaStats()  # process-wide accumulator (Faiss: faiss.cvar.indexPanorama_stats)


def level_width(d: int, n_levels: int) -> int:
    """Dimensions per level: ceil(d / L), so that L levels cover d even when L does not divide it (the
    last levels are then narrower, or empty); level j is [min(j*w, d), min((j+1)*w, d))."""
    return -(-d // n_levels)


def level_slice(d: int, n_levels: int, j: int) -> slice:
    """The dimensions of level j."""
    w = level_width(d, n_levels)
    return slice(min(j * w, d), min((j + 1) * w, d))


def suffix_norms(y: torch.Tensor, n_levels: int) -> torch.Tensor:
    """(n, L): ||y[:, start_j:]|| for each level j (the part not yet scanned before level j)."""
    d = y.shape[1]
    if d % n_levels:  # uneven levels: zero columns up to L * ceil(d / L) change no norm
        y = torch.nn.functional.pad(y.float(), (0, n_levels * level_width(d, n_levels) - d))
    e = y.float().pow(2).view(y.shape[0], n_levels, -1).sum(-1)
    return e.flip(1).cumsum(1).flip(1).clamp_min(0).sqrt()


def round_up_half(t: torch.Tensor) -> torch.Tensor:
    """float16 copy never below t, so a stored norm can only loosen the bound, never break it."""
    tc = t.float().cpu()  # (nextafter on float16 is not implemented on every device; encode-time only)
    h = tc.half()
    up = torch.nextafter(h, torch.full_like(h, float("inf")))
    return torch.where(h.float() < tc, up, h).to(t.device)


def pruned_scores(qi, pos, partial, slack, thr, *, first_level, level_part, exact, qtail, ytail, coef,
                  stats: PanoramaStats, dims_per_level: int):
    """Scores (N,) of (query, row) pairs whose levels < first_level are summed in ``partial``;
    -inf for pairs pruned against thr (N,). ``slack`` (N,) absorbs fp32 rounding of the partials.

    level_part(qi, pos, j) -> contribution of level j; exact(qi, pos, idx) -> exact scores of the
    survivors (idx indexes the original pairs), or None to keep the summed partials;
    qtail (nq, L), ytail (rows, L): suffix norms.
    """
    n_levels = qtail.shape[1]
    N = qi.shape[0]
    out = torch.full((N,), float("-inf"), device=qi.device)
    idx = torch.arange(N, device=qi.device)
    for j in range(first_level, n_levels):
        ub = partial + coef * qtail[qi, j] * ytail[pos, j].float() + slack
        sel = torch.nonzero(ub >= thr).squeeze(1)
        if sel.numel() < idx.numel():
            idx, qi, pos, partial, thr, slack = idx[sel], qi[sel], pos[sel], partial[sel], thr[sel], slack[sel]
        if idx.numel() == 0:
            return out
        stats.total_dims_scanned += idx.numel() * dims_per_level
        partial = partial + level_part(qi, pos, j)
    sel = torch.nonzero(partial + slack >= thr).squeeze(1)
    idx, qi, pos = idx[sel], qi[sel], pos[sel]
    out[idx] = partial[sel] if exact is None else exact(qi, pos, idx)
    return out


def bound_slack(base, tail_product, thr):
    """Rounding allowance: relative to the magnitudes that are summed (not to the small result)."""
    return _REL_SLACK * (base.abs() + tail_product + thr.abs().nan_to_num(0.0, 0.0, 0.0)) + 1e-30


WAVE_PAIRS = 1 << 16  # (query, row) pairs per chunk of a wave: its per-level temporaries stay in cache


def merge_ragged(best_s, best_p, qi, s, p, k: int):
    """Top-k per query of best (nq, k) and candidates (qi, s, p) sorted by query qi."""
    nq = best_s.shape[0]
    if qi.numel() == 0:
        return best_s, best_p
    cnt = torch.bincount(qi, minlength=nq)
    rank = torch.arange(qi.numel(), device=qi.device) - (torch.cumsum(cnt, 0) - cnt)[qi]
    width = k + int(cnt.max())
    cs = torch.full((nq, width), float("-inf"), device=best_s.device)
    cp = torch.zeros((nq, width), dtype=torch.int64, device=best_s.device)
    cs[:, :k], cp[:, :k] = best_s, best_p
    cs[qi, k + rank], cp[qi, k + rank] = s, p
    values, idx = topk_first(cs, k, cp)  # equal scores: the first stored first
    return values, cp.gather(1, idx)


def ragged_kth(qi, v, k: int, nq: int):
    """(nq,) k-th largest of v per query, for qi (sorted) in [0, nq); -inf where fewer than k."""
    cnt = torch.bincount(qi, minlength=nq)
    maxc = int(cnt.max()) if qi.numel() else 0
    if maxc < k:
        return torch.full((nq,), float("-inf"), device=v.device)
    rank = torch.arange(qi.numel(), device=qi.device) - (torch.cumsum(cnt, 0) - cnt)[qi]
    m = torch.full((nq, maxc), float("-inf"), device=v.device)
    m[qi, rank] = v
    return m.topk(k, dim=1).values[:, -1]
