"""(list, block of queries probing it) programs: the grouping that list-major kernels share.

The host sorts the (query, probe column) pairs by list and gives each list ceil(count / BLOCK_Q)
programs; a program finds its list by binary search over the running program counts, so the grid
size is a bound known on the host and nothing waits for the device.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


def group_pairs(pair_lists: torch.Tensor, nlist: int, block_q: int):
    """pair_lists (n_pairs,): the list of each (query * P + column) pair, or nlist for pairs no program
    serves. Returns (order, first, count, tile_end, n_programs): pair ids grouped by list, each list's
    first index into order, its pair count, its programs' running end, and a bound on the programs."""
    order = torch.argsort(pair_lists, stable=True).to(torch.int32)
    count = torch.zeros(nlist + 1, dtype=torch.int32, device=pair_lists.device).scatter_add_(
        0, pair_lists, torch.ones_like(pair_lists, dtype=torch.int32))[:nlist]
    first = torch.cumsum(count, 0, dtype=torch.int32) - count
    tile_end = torch.cumsum((count + block_q - 1) // block_q, 0, dtype=torch.int32)
    n_pairs = pair_lists.shape[0]
    return order, first, count, tile_end, min(nlist, n_pairs) + triton.cdiv(n_pairs, block_q)


@triton.jit
def program_pairs(t, ORDER, FIRST, COUNT, TILE_END, nlist, BLOCK_Q: tl.constexpr):
    """Program t's list (nlist for a spare program) and its BLOCK_Q pair slots (pair ids, in-range mask)."""
    lo = 0
    hi = nlist
    while lo < hi:
        mid = (lo + hi) // 2
        if tl.load(TILE_END + mid) <= t:
            lo = mid + 1
        else:
            hi = mid
    lst = tl.minimum(lo, nlist - 1)
    count = tl.where(lo < nlist, tl.load(COUNT + lst), 0)
    tiles_before = tl.load(TILE_END + lst) - (count + BLOCK_Q - 1) // BLOCK_Q
    qa = (t - tiles_before) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    qm = qa < count
    pair = tl.load(ORDER + tl.load(FIRST + lst) + qa, mask=qm, other=0)
    return lo, pair, qm
