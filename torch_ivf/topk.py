"""Row-wise top-k in the order exact search and Faiss return: equal scores, first stored first."""
from __future__ import annotations

import torch

from . import kernels


def topk_first(x: torch.Tensor, k: int, order: torch.Tensor | None = None):
    """Row-wise top-k (values, indices) whose ties at the k-th value keep the entries first by
    ``order`` (default: column), as exact search and Faiss keep the first stored of equal-score
    duplicates; torch.topk picks among them at random, which cost 0.07-0.09 plain recall@10 on the
    MiniLM man pages (duplicate passages) on a CPU. Without such ties it costs one more top-k slot and
    a check (+4% on a clustered IVFFlat search); rows with them take a second top-k over the order keys
    of their equal entries (IVFFlat on the man pages, nprobe 16: +30% over a plain top-k; sorting those
    rows in full cost +40%, a float64 key with the column folded in +35% there but +40-110% without
    ties). GPUs: Triton's row top-k already takes the lowest column of equals; without Triton nothing
    is fixed (that would wait for the device)."""
    if x.device.type != "cpu":
        return kernels.topk(x, k)
    if k == 0 or k >= x.shape[1]:
        top = x.topk(k, dim=1)
        return top.values, top.indices
    top = x.topk(k + 1, dim=1)  # one more: a tie straddles the cut only where the (k+1)-th equals the k-th
    values, idx = top.values[:, :k], top.indices[:, :k]
    if x.shape[0] == 1:  # one query (the per-query path): a scalar test, not four tensor ops
        if top.values[0, k].item() != top.values[0, k - 1].item():
            return values, idx
        rows = torch.zeros(1, dtype=torch.int64)
    else:
        rows = torch.nonzero(top.values[:, k] == top.values[:, k - 1]).flatten()
    if rows.numel() == 0:
        return values, idx
    # Rows with a tie at the cut: the g entries above the k-th value t are in already; the other k - g
    # slots go to the entries equal to t that come first by order (a top-k of their order keys, not a
    # sort of the whole row: 1.5-2x cheaper on the man pages).
    xs, t = x[rows], values[rows, k - 1 :]
    g = (values[rows] > t).sum(1, keepdim=True)
    key = order[rows] if order is not None else torch.arange(x.shape[1], device=x.device).expand_as(xs)
    key = torch.where(xs == t, key, torch.iinfo(key.dtype).max)
    first_eq = key.topk(k, dim=1, largest=False).indices
    slot = torch.arange(k, device=x.device)
    idx = idx.clone()
    idx[rows] = torch.where(slot < g, idx[rows], first_eq.gather(1, (slot - g).clamp_min(0)))
    return values, idx


def running_topk(best, s: torch.Tensor, first: int, k: int):
    """(scores, slab positions) top-k of ``best`` (the same pair from earlier blocks, or None) and a
    block of scores s whose column j is slab position first + j; earlier rows win ties."""
    s, idx = topk_first(s, min(k, s.shape[1]))
    p = idx + first
    if best is not None:
        p = torch.cat([best[1], p], 1)
        # ties by slab position, not by column: best's equal scores above an earlier cut came in any order
        s, at = topk_first(torch.cat([best[0], s], 1), min(k, p.shape[1]), p)
        p = p.gather(1, at)
    return s, p
