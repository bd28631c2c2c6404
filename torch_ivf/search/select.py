"""The CPU grouped scan without a top-k per list: each list's scores go to one buffer, with the
maximum of every G consecutive scores of a (query, list) row beside them; each query then takes its
k best groups over all its lists, and its top-k over those k x G scores only.

torch.topk on a CPU costs 2-7 ns per score for the short rows of one list (a (15, 530) block: 25 us,
as long as its GEMM), a group maximum 0.1-0.2 ns. The result is exact, ties included: order the
scores by (value descending, slab position ascending). Groups are runs of consecutive slab
positions, so ordering groups by (maximum descending, first position ascending) orders them by their
best score. Any score of a group outside the k best groups ranks below those k maxima, so it is not
in the top k: the top k lie in the k best groups, and a top-k over them whose ties go to the lowest
slab position is the top-k over every score.
"""
from __future__ import annotations

import threading

import numpy as np
import torch

from ..topk import topk_first
from .common import pad_k
from .workers import for_each

G = 64  # scores per group: a query's k best groups are k x G scores to gather and select from
# Scores held at once (32 MB), in a buffer each searching thread keeps: a fresh 80 MB buffer cost
# ~21 ms of page faults each search (nq = 1024, 19k rows per query; a fifth of the search). Larger
# batches take their lists in chunks, each list with all its queries (one GEMM, the same bits).
BUDGET = 1 << 23
_local = threading.local()


def _workspace(n: int) -> torch.Tensor:
    """n float32 of this thread's reused buffer (valid until its next call)."""
    buf = getattr(_local, "buf", None)
    if buf is None or buf.numel() < n:
        buf = _local.buf = torch.empty(max(n, 1 << 16))
    return buf[:n]
NEG = float("-inf")


def list_chunks(active: np.ndarray, width: np.ndarray, budget: int):
    """active lists split into consecutive runs whose blocks (width scores each) fit in budget."""
    a, csum = 0, np.concatenate([[0], np.cumsum(width[active])])
    while a < len(active):
        b = int(np.searchsorted(csum, csum[a] + budget, side="right")) - 1
        b = min(max(b, a + 1), len(active))
        yield active[a:b]
        a = b


def scan_select(index, ctx, probe: torch.Tensor, k: int, mask, workers: int):
    """(scores, slab positions) (nq, k) of every query over all rows of its probed lists: the per-list
    scan's scores (scanner.score_block on each list with the queries that probe it, in query order:
    the same bits) and the top-k of all of them per query, ties to the first slab position."""
    starts = index.invlists.starts.numpy()
    sizes = index.invlists.sizes.numpy()
    probe_np = probe.numpy()
    nq, P = probe_np.shape
    groups = -(-sizes // G)
    lists = probe_np.reshape(-1)
    order = np.argsort(lists, kind="stable")  # pairs by list, queries ascending within a list
    counts = np.bincount(lists, minlength=len(sizes))
    first = np.cumsum(counts) - counts  # each list's first pair in that order
    rank = np.empty(nq * P, dtype=np.int64)
    rank[order] = np.arange(nq * P) - first[lists[order]]  # a pair's row in its list's block
    by_start = np.argsort(starts[probe_np], axis=1, kind="stable")  # each query's lists in slab order
    pairs = (np.take_along_axis(probe_np, by_start, 1), np.take_along_axis(rank.reshape(nq, P), by_start, 1))
    qsorted = torch.from_numpy(order // P)
    into = getattr(index.scanner, "score_block_into", None) if mask is None else None
    qrows = ctx.q.index_select(0, qsorted) if into is not None else None
    active = np.nonzero((counts > 0) & (sizes > 0))[0]
    best = None
    for chunk in list_chunks(active, counts * groups * G, BUDGET):
        s, p = _select_chunk(index, ctx, chunk, pairs, counts, sizes, groups, starts, first, qsorted, qrows,
                             into, k, mask, workers)
        if best is not None:  # merge: top-k of both, ties by slab position
            p = torch.cat([best[1], p], 1)
            s, at = topk_first(torch.cat([best[0], s], 1), min(k, p.shape[1]), p)
            p = p.gather(1, at)
        best = s, p
    if best is None:
        return (torch.full((nq, k), NEG), torch.zeros((nq, k), dtype=torch.int64))
    return pad_k(best[0], torch.where(torch.isneginf(best[0]), 0, best[1]), k)


def _select_chunk(index, ctx, chunk, pairs, counts, sizes, groups, starts, first, qsorted, qrows, into, k,
                  mask, workers):
    """Top-k (scores, slab positions) of every query over the rows of its lists among chunk."""
    pl, pr = pairs
    nq, P = pl.shape
    width = np.zeros(len(sizes), dtype=np.int64)
    width[chunk] = counts[chunk] * groups[chunk]
    block = np.cumsum(width) - width  # first group of each list's block
    total = int(width.sum())
    # S: list l's scores, (counts[l], sizes[l]) with rows groups[l] * G apart (tails -inf), at block[l] * G;
    # M[m]: the maximum of S[m G: (m + 1) G]; group `total` is all -inf, what the group table pads with
    S = _workspace((total + 1) * G)
    S[total * G:] = NEG
    jobs = chunk if workers <= 1 else chunk[np.argsort(-(counts * sizes)[chunk], kind="stable")]
    jobs = np.stack([jobs, counts[jobs], sizes[jobs], groups[jobs], starts[jobs], first[jobs], block[jobs]], 1)

    def scan(job):
        lst, c, n, g, a, f, b = job
        out = S[b * G:(b + c * g) * G].view(c, g * G)
        if into is not None:
            into(ctx, qsorted[f:f + c], lst, a, a + n, out[:, :n], qrows[f:f + c])
        else:
            s = index.scanner.score_block(ctx, qsorted[f:f + c], lst, a, a + n)
            if mask is not None:
                s = s.masked_fill(~index._allowed_at(mask, slice(a, a + n))[None, :], NEG)
            out[:, :n] = s
        if n < g * G:
            out[:, n:] = NEG

    for_each(scan, jobs.tolist(), workers)
    M = torch.empty(total + 1)
    M[total] = NEG
    torch.amax(S[:total * G].view(total, G), 1, out=M[:total])

    # each query's groups, its lists in slab order, each padded to the longest one's with the -inf
    # group: (nq, P * gp) indices into M
    glen = torch.from_numpy(np.where(width[pl] > 0, groups[pl], 0))
    gp = max(int(glen.max()), 1)
    ar = torch.arange(gp)
    pl_t, pr_t = torch.from_numpy(pl), torch.from_numpy(pr)
    table = torch.where(ar < glen[:, :, None], (torch.from_numpy(block)[pl_t] + pr_t * glen)[:, :, None] + ar, total)
    table = table.view(nq, P * gp)
    _, best = topk_first(M.index_select(0, table.view(-1)).view(nq, -1), min(k, P * gp))  # ties: slab order
    chosen = table.gather(1, best)  # (nq, kk) groups
    kk = chosen.shape[1]
    t = torch.arange(G)
    vals = S.index_select(0, (chosen[:, :, None] * G + t).view(-1)).view(nq, kk * G)
    # slab positions: the list's start + the place in it; tails and the -inf group get any position
    # (their scores are -inf: never reported)
    first_pos = torch.from_numpy(starts)[pl_t.gather(1, best // gp)] + (best % gp) * G
    pos = (first_pos[:, :, None] + t).view(nq, kk * G)
    values, idx = topk_first(vals, min(k, kk * G), pos)
    return values, pos.gather(1, idx)
