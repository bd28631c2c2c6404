"""Pieces every search path shares: the temporary-buffer budget, one list's top-k, rows visited under
max_codes, padding to k, and the mapping of scan results to Faiss's (D, I)."""
from __future__ import annotations

import torch

from ..topk import running_topk

SCORE_BUDGET = 1 << 25  # elements of a temporary score / gather buffer per chunk (~128 MB fp32)


def scan_list(index, ctx, qsel, lst, start, size, k, mask):
    """Top-k (scores, slab positions) of one list for a query group, in row chunks so huge lists (Flat)
    fit in memory."""
    rows = max(1024, SCORE_BUDGET // max(1, qsel.shape[0]))
    best = None
    for a in range(start, start + size, rows):
        b = min(a + rows, start + size)
        s = index.scanner.score_block(ctx, qsel, lst, a, b)
        if mask is not None:
            s = s.masked_fill(~index._allowed_at(mask, slice(a, b))[None, :], float("-inf"))
        best = running_topk(best, s, a, k)
    return best


def faiss_results(index, ctx, scores, pos):
    """(D, I) as Faiss returns them from scan scores and slab positions (-inf: missing)."""
    missing = torch.isneginf(scores)
    labels = torch.where(missing, -1, index.invlists.labels_at(pos.clamp_min(0)))
    D = torch.where(missing, index.missing_distance, index.scanner.distances(ctx, scores))
    return D, labels


def scanned_rows(lens: torch.Tensor, max_codes: int) -> torch.Tensor:
    """Rows scanned per probed list (lens (nq, nprobe) in coarse order): all of them, or as Faiss's
    max_codes allows, counted in coarse order (the list where it runs out is cut short)."""
    if not max_codes:
        return lens
    return (max_codes - (torch.cumsum(lens, 1) - lens)).clamp_min(0).minimum(lens)


def pad_k(scores: torch.Tensor, pos: torch.Tensor, k: int):
    if scores.shape[1] < k:
        pad = k - scores.shape[1]
        scores = torch.nn.functional.pad(scores, (0, pad), value=float("-inf"))
        pos = torch.nn.functional.pad(pos, (0, pad), value=0)
    return scores, pos
