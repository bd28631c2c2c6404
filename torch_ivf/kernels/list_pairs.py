"""(list, block of queries probing it, row chunk) programs: the grouping that list-major kernels share.

The host sorts the (query, probe column) pairs by list and gives each list ceil(count / BLOCK_Q) x
chunks[list] programs; a program finds its list by binary search over the running program counts, so
the grid size is a bound known on the host and nothing waits for the device. Splitting long lists
into row chunks is what keeps a GPU busy at small batches: without it one program walks the longest
probed list alone (one query, 16 lists: 16 programs on a 132-SM H200).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..search.cost import longest_chunks


def group_pairs(pair_lists: torch.Tensor, nlist: int, block_q: int, chunks: torch.Tensor | None = None,
                bound: int | None = None):
    """pair_lists (n_pairs,): the list of each (query * P + column) pair, or nlist for pairs no program
    serves; chunks (nlist,) int32: row chunks per list (None: 1). Returns (order, first, count,
    tile_end, n_programs): pair ids grouped by list, each list's first index into order, its pair
    count, its programs' running end, and a bound on the programs (``bound`` where chunks are given)."""
    order = torch.argsort(pair_lists, stable=True).to(torch.int32)
    count = torch.zeros(nlist + 1, dtype=torch.int32, device=pair_lists.device).scatter_add_(
        0, pair_lists, torch.ones_like(pair_lists, dtype=torch.int32))[:nlist]
    first = torch.cumsum(count, 0, dtype=torch.int32) - count
    tiles = (count + block_q - 1) // block_q
    tile_end = torch.cumsum(tiles * chunks if chunks is not None else tiles, 0, dtype=torch.int32)
    n_pairs = pair_lists.shape[0]
    if chunks is not None:
        return order, first, count, tile_end, bound
    return order, first, count, tile_end, min(nlist, n_pairs) + triton.cdiv(n_pairs, block_q)


def chunk_plan(sizes_host: torch.Tensor, nq: int, P: int, chunk_rows: int, block_q: int, device):
    """Bounds for chunked programs from the host list sizes (no device sync): (chunks per list (nlist,)
    int32 on the device, the most chunks one query can meet (its P longest lists), and a bound on the
    programs: a list probed by c pairs has ceil(c / block_q) <= c / block_q + 1 query blocks, each with
    chunks[list] programs). The device copy is cached per sizes tensor and chunk size: a host-to-device
    copy cannot be captured in a CUDA graph."""
    key = (sizes_host.data_ptr(), sizes_host._version, int(sizes_host.sum()), chunk_rows, str(device))
    hit = _PLANS.get(key)
    if hit is None:
        chunks = (sizes_host + chunk_rows - 1) // chunk_rows
        hit = (chunks, chunks.to(torch.int32).to(device), int(chunks.sum()))
        while len(_PLANS) >= 16:
            _PLANS.pop(next(iter(_PLANS)))
        _PLANS[key] = hit
    chunks, chunks_dev, total = hit
    per_query = longest_chunks(sizes_host, P, chunk_rows)
    return chunks_dev, per_query, triton.cdiv(nq * per_query, block_q) + min(total, nq * per_query)


_PLANS: dict = {}


@triton.jit
def program_pairs(t, ORDER, FIRST, COUNT, TILE_END, CHUNKS, nlist, BLOCK_Q: tl.constexpr, CHUNKED: tl.constexpr):
    """Program t's list (nlist for a spare program), its BLOCK_Q pair slots (pair ids, in-range mask) and
    its row chunk (0 unless CHUNKED)."""
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
    blocks = (count + BLOCK_Q - 1) // BLOCK_Q
    if CHUNKED:
        n_chunks = tl.maximum(tl.load(CHUNKS + lst), 1)
        local = t - (tl.load(TILE_END + lst) - blocks * n_chunks)
        block = local // n_chunks
        chunk = local % n_chunks
    else:
        block = t - (tl.load(TILE_END + lst) - blocks)
        chunk = 0
    qa = block * BLOCK_Q + tl.arange(0, BLOCK_Q)
    qm = qa < count
    pair = tl.load(ORDER + tl.load(FIRST + lst) + qa, mask=qm, other=0)
    return lo, pair, qm, chunk
