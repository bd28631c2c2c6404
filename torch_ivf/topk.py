"""Row-wise top-k in the order exact search and Faiss return: equal scores, first stored first."""
from __future__ import annotations

import torch

from . import kernels


def topk_first(x: torch.Tensor, k: int, order: torch.Tensor | None = None):
    """Row-wise top-k (values, indices) whose ties at the k-th value keep the entries first by
    ``order`` (default: column), as exact search and Faiss keep the first stored of equal-score
    duplicates; torch.topk picks among them at random, which cost 0.07-0.09 plain recall@10 on the
    MiniLM man pages (duplicate passages) on a CPU. Without such ties it costs one more top-k slot and
    a check (+4% on a clustered IVFFlat search); rows with them are sorted in full (+50% on the man
    pages; a float64 key with the column folded in cost +35% there but +40-110% without ties). GPUs: Triton's row top-k
    already takes the lowest column of equals; without Triton nothing is fixed (that would wait for
    the device)."""
    if x.device.type != "cpu":
        return kernels.topk(x, k)
    if k == 0 or k >= x.shape[1]:
        top = x.topk(k, dim=1)
        return top.values, top.indices
    top = x.topk(k + 1, dim=1)  # one more: a tie straddles the cut only where the (k+1)-th equals the k-th
    values, idx = top.values[:, :k], top.indices[:, :k]
    rows = torch.nonzero(top.values[:, k] == top.values[:, k - 1]).flatten()
    if rows.numel() == 0:
        return values, idx
    xs = x[rows]  # the few rows with a tie at the cut: sorted in full, equal values by order
    if order is None:
        v, i = xs.sort(dim=1, descending=True, stable=True)
    else:
        perm = order[rows].argsort(dim=1)
        v, at = xs.gather(1, perm).sort(dim=1, descending=True, stable=True)
        i = perm.gather(1, at)
    idx = idx.clone()
    idx[rows] = i[:, :k]
    return values, idx


def running_topk(best, s: torch.Tensor, first: int, k: int):
    """(scores, slab positions) top-k of ``best`` (the same pair from earlier blocks, or None) and a
    block of scores s whose column j is slab position first + j; earlier rows win ties."""
    s, idx = topk_first(s, min(k, s.shape[1]))
    p = idx + first
    if best is not None:
        s, at = topk_first(torch.cat([best[0], s], 1), min(k, best[0].shape[1] + s.shape[1]))
        p = torch.cat([best[1], p], 1).gather(1, at)
    return s, p
