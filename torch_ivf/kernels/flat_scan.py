"""Triton scan of flat codes: per probed list, tile GEMMs against all the queries probing it, each
query keeping its best KOUT rows of the list.

Programs own (list, block of queries probing it) and walk the list's rows in tiles of BLOCK_N, so a
list is read once per query block instead of once per query (a scan per query is bound by those
re-reads), and only KOUT candidates per (query, list) leave the chip: the output is
(nq, nprobe * KOUT) whatever the list sizes (a layout of every probed row is as wide as the nprobe
longest lists, 5-40x the mean on skewed data). Scores take FlatCodes' form
s = scale * q.v - bias + pair; dot products split each float32 into TF32 high and low parts (tf32x3),
so they agree with float32 GEMMs to rounding, not bitwise.

Small batches split each list into row chunks (``chunk_rows``), one program per (list, query block,
chunk), each keeping its own KOUT best: the output then holds KOUT candidates per (query, probed
list, chunk), chunks of a query's lists back to back, and the caller's top-k is the second stage.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import dot_precision
from ..search.cost import longest_chunks
from .bitonic import MAX_GROUPS, merge_top
from .list_pairs import chunk_plan, group_pairs, program_pairs

# (rows per tile, dimensions per step, warps, dot precision); queries per program follow the mean
# queries per list. Best of those timed (benchmarks/flat_tiles.py, H200): "tf32x3" (three TF32 tensor
# core products, float32-level error) ran 1.5-1.9x faster than IEEE float32 FMA dots. With the two-sort
# merge, 32-row tiles ran 1.5-2.3x faster than 64 (benchmarks/latency/README.md, gpuflat section); not
# timed with the grouped merge, whose benchmarks/large sweep kept 64.
TILES = (64, 16, 4, "tf32x3")
MAX_K = 128  # KOUT <= BLOCK_N: larger k take the torch scans
# Running top-KOUT per tile: bitonic.merge_top (the tile's groups of KOUT reduced pairwise, 896 key-stages
# per 16 x 64 tile at KOUT 16; benchmarks/large: 1.7-2.7x faster searches, same results) or two full
# sorts of the tile (2688; GROUPED False, and KOUT < 8, more groups than merge_top takes).
GROUPED = True


@triton.jit
def _key(s, row):
    """int64 keys ordered like (score, -row): the float's bits made order-preserving, then the row
    reversed, so equal scores (duplicate vectors) rank the earlier row first, as exact search does."""
    b = s.to(tl.int32, bitcast=True)
    b = b ^ ((b >> 31) & 0x7FFFFFFF)
    return (b.to(tl.int64) << 32) | (0x7FFFFFFF - row).to(tl.int64)


@triton.jit
def _flat_lists(Q, X, BIAS, CT, STARTS, SIZES, ORDER, FIRST, COUNT, TILE_END, CHUNKS, SLOT, OFF, LABELS, MASK,
                OUT_S, OUT_R, nlist, P, d, max_codes, stride_q, stride_x, width, chunk_rows,
                SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_CT: tl.constexpr, HAS_MASK: tl.constexpr,
                HAS_MAXC: tl.constexpr, CHUNKED: tl.constexpr, KOUT: tl.constexpr, BLOCK_Q: tl.constexpr,
                BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr, GROUPED: tl.constexpr):
    lst, pair, qm, chunk = program_pairs(tl.program_id(0), ORDER, FIRST, COUNT, TILE_END, CHUNKS, nlist, BLOCK_Q,
                                         CHUNKED)
    if lst < nlist:
        qi = (pair // P).to(tl.int64)
        if HAS_MAXC:
            col0 = tl.load(OFF + pair, mask=qm, other=0)  # candidates of the query's earlier probes
        if HAS_CT:
            ct = tl.load(CT + pair, mask=qm, other=0.0)
        start = tl.load(STARTS + lst)
        size = tl.load(SIZES + lst)
        if CHUNKED:
            row0 = chunk * chunk_rows
            row1 = tl.minimum(size, row0 + chunk_rows)
            slot = tl.load(SLOT + pair, mask=qm, other=0) + chunk  # the query's chunks sit back to back
        else:
            row0 = 0
            row1 = size
            slot = pair % P
        zero = tl.zeros([BLOCK_Q, BLOCK_N], tl.int32)
        if GROUPED:  # kept sorted descending
            best = _key(tl.full([BLOCK_Q, KOUT], float("-inf"), tl.float32), tl.zeros([BLOCK_Q, KOUT], tl.int32))
        else:
            best = _key(tl.full([BLOCK_Q, BLOCK_N], float("-inf"), tl.float32), zero)
        for r0 in range(row0, row1, BLOCK_N):
            rows = r0 + tl.arange(0, BLOCK_N)
            rm = rows < row1
            acc = tl.zeros([BLOCK_Q, BLOCK_N], dtype=tl.float32)
            for d0 in range(0, d, BLOCK_D):
                dims = d0 + tl.arange(0, BLOCK_D)
                dm = dims < d
                q = tl.load(Q + qi[:, None] * stride_q + dims[None, :], mask=qm[:, None] & dm[None, :], other=0.0)
                x = tl.load(X + (start + rows)[None, :].to(tl.int64) * stride_x + dims[:, None],
                            mask=rm[None, :] & dm[:, None], other=0.0)
                acc = tl.dot(q.to(tl.float32), x.to(tl.float32), acc, input_precision=PRECISION)
            s = acc * SCALE
            if HAS_BIAS:
                s -= tl.load(BIAS + start + rows, mask=rm, other=0.0)[None, :]
            if HAS_CT:
                s += ct[:, None]
            live = qm[:, None] & rm[None, :]
            if HAS_MAXC:
                live = live & (col0[:, None] + rows[None, :] < max_codes)
            if HAS_MASK:
                # MASK: the search's _allowed_mask, one entry per slab row
                live = live & (tl.load(MASK + start + rows, mask=rm, other=0) != 0)[None, :]
            keys = _key(tl.where(live, s, float("-inf")), rows[None, :] + zero)
            if GROUPED:
                best = merge_top(best, keys, BLOCK_Q, BLOCK_N, KOUT)
            else:  # the elementwise max of a descending and an ascending sequence is the top half of both
                best = tl.sort(tl.maximum(best, tl.sort(keys, dim=1)), dim=1, descending=True)
        b = (best >> 32).to(tl.int32)
        s = (b ^ ((b >> 31) & 0x7FFFFFFF)).to(tl.float32, bitcast=True)
        row = (0x7FFFFFFF - (best & 0xFFFFFFFF).to(tl.int32)) + start.to(tl.int32)  # slab row
        if GROUPED:
            cols = tl.arange(0, KOUT)
        else:
            cols = tl.arange(0, BLOCK_N)
        at = qi[:, None] * width + slot.to(tl.int64)[:, None] * KOUT + cols[None, :]
        keep = qm[:, None] & (cols[None, :] < KOUT)
        tl.store(OUT_S + at, s, mask=keep)
        tl.store(OUT_R + at, row, mask=keep)


def queries_per_program(per_list: float) -> int:
    """BLOCK_Q for lists probed by per_list queries of the batch on average. H200, 10M x 128, nq 10k
    (benchmarks/large): programs of 32 queries ran 2.6x longer than as many of 64 with twice the
    queries (IVF4096: nprobe 16 at 32 took 224 ms, nprobe 32 at 64 took 87 ms), so lists probed by
    more than 16 queries take blocks of 64, empty slots and all."""
    return 16 if per_list <= 16 else 64


def flat_scan(q, vectors, bias, ct, starts, sizes, probe, off, labels, mask, max_codes, scale, k, chunk_rows=0,
              sizes_host=None):
    """(scores, slab rows int32) (nq, width): per probed list (or per row chunk of it, chunk_rows > 0;
    sizes_host: the host copy of sizes, for the bounds), its best KOUT >= k rows in descending order,
    -inf where it has fewer (or rows filtered out / past max_codes, when max_codes > 0; off (nq, nprobe):
    candidates of earlier probes). bias (rows,) or None; ct (nq, nprobe) or None."""
    nq, P = probe.shape
    nlist = sizes.shape[0]
    block_n, block_d, warps, precision = TILES
    precision = dot_precision(precision)
    kout = triton.next_power_of_2(k)
    block_n = max(block_n, kout)
    block_q = queries_per_program(nq * P / nlist)
    chunked = chunk_rows > 0
    if chunked:
        chunk_rows = triton.cdiv(chunk_rows, block_n) * block_n
        chunks, per_query, bound = chunk_plan(sizes_host, nq, P, chunk_rows, block_q, q.device)
        per_pair = chunks[probe]
        slot = (torch.cumsum(per_pair, 1, dtype=torch.int32) - per_pair).reshape(-1)
        order, first, count, tile_end, n_tiles = group_pairs(probe.reshape(-1), nlist, block_q, chunks, bound)
        width = max(per_query, 1) * kout
        out_s = torch.full((nq, width), float("-inf"), device=q.device)
        out_r = torch.zeros((nq, width), dtype=torch.int32, device=q.device)
    else:
        chunks = slot = sizes
        order, first, count, tile_end, n_tiles = group_pairs(probe.reshape(-1), nlist, block_q)
        width = P * kout
        out_s = torch.empty((nq, width), device=q.device)
        out_r = torch.empty((nq, width), dtype=torch.int32, device=q.device)
    _flat_lists[(max(n_tiles, 1),)](
        q, vectors, bias if bias is not None else out_s, ct if ct is not None else out_s, starts, sizes, order,
        first, count, tile_end, chunks, slot, off, labels, mask.view(torch.uint8) if mask is not None else out_s,
        out_s, out_r, nlist, P, q.shape[1], max_codes, q.stride(0), vectors.stride(0), width, max(chunk_rows, 1),
        SCALE=scale, HAS_BIAS=bias is not None, HAS_CT=ct is not None, HAS_MASK=mask is not None,
        HAS_MAXC=max_codes > 0, CHUNKED=chunked, KOUT=kout, BLOCK_Q=block_q, BLOCK_N=block_n, BLOCK_D=block_d,
        PRECISION=precision, GROUPED=GROUPED and block_n // kout <= MAX_GROUPS, num_warps=warps,
    )
    return out_s, out_r


@triton.jit
def _flat_probes(Q, X, BIAS, CT, PROBE, STARTS, SIZES, MASK, OUT_S, OUT_R, P, d, max_codes, stride_q, stride_x,
                 width, SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_CT: tl.constexpr, HAS_MASK: tl.constexpr,
                 HAS_MAXC: tl.constexpr, K: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_P: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    # program (t, query): the query's t-th tile of BLOCK_N rows, counting the tiles of its probed lists
    # in probe order; the tile table comes from the probe row itself, so nothing runs before the launch
    t = tl.program_id(0)
    qi = tl.program_id(1).to(tl.int64)
    ps = tl.arange(0, BLOCK_P)
    pm = ps < P
    lists = tl.load(PROBE + qi * P + ps, mask=pm, other=0)
    sizes = tl.load(SIZES + lists, mask=pm, other=0)
    n_tiles = (sizes + BLOCK_N - 1) // BLOCK_N
    end = tl.cumsum(n_tiles, 0)
    j = tl.sum((end <= t).to(tl.int32), 0)  # the probe column whose tiles hold t (P: none, a spare program)
    here = ps == j
    lst = tl.sum(tl.where(here, lists, 0), 0)
    row0 = (t - tl.sum(tl.where(here, end - n_tiles, 0), 0)) * BLOCK_N
    row1 = tl.minimum(tl.sum(tl.where(here, sizes, 0), 0), row0 + BLOCK_N)  # 0 for a spare program
    if HAS_MAXC:  # rows of the query's earlier probes count against max_codes
        row1 = tl.minimum(row1, max_codes - tl.sum(tl.where(ps < j, sizes, 0), 0))
    cols = tl.arange(0, BLOCK_N)
    at = qi * width + t * K
    if row1 > row0:
        start = tl.load(STARTS + lst)
        rows = row0 + cols
        rm = rows < row1
        acc = tl.zeros([BLOCK_N], dtype=tl.float32)
        for d0 in range(0, d, BLOCK_D):  # one query: float32 FMA dots, no dot-block padding
            dims = d0 + tl.arange(0, BLOCK_D)
            dm = dims < d
            q = tl.load(Q + qi * stride_q + dims, mask=dm, other=0.0).to(tl.float32)
            x = tl.load(X + (start + rows)[:, None].to(tl.int64) * stride_x + dims[None, :],
                        mask=rm[:, None] & dm[None, :], other=0.0)
            acc += tl.sum(x.to(tl.float32) * q[None, :], axis=1)
        s = acc * SCALE
        if HAS_BIAS:
            s -= tl.load(BIAS + start + rows, mask=rm, other=0.0)
        if HAS_CT:
            s += tl.sum(tl.where(here, tl.load(CT + qi * P + ps, mask=pm, other=0.0), 0.0), 0)
        live = rm
        if HAS_MASK:
            live = live & (tl.load(MASK + start + rows, mask=rm, other=0) != 0)
        s = tl.where(live, s, float("-inf"))
        # the tile's K best by K successive maxima (with two sorts per tile instead, one query's 19k
        # probed rows took 0.156 ms on the H200): descending, the lowest row first among equal scores
        last = row1 - row0 - 1
        for i in tl.static_range(K):
            best = tl.max(s, 0)
            c = tl.minimum(tl.min(tl.where(s == best, cols, BLOCK_N), 0), last)  # NaN: no column equals it
            tl.store(OUT_S + at + i, best)
            tl.store(OUT_R + at + i, tl.where(best == float("-inf"), 0, start + row0 + c).to(tl.int32))
            s = tl.where(cols == c, float("-inf"), s)
    else:  # a spare slot (past the query's tiles, or cut off by max_codes): nothing to read
        ks = tl.arange(0, BLOCK_K)
        tl.store(OUT_S + at + ks, tl.full([BLOCK_K], float("-inf"), tl.float32), mask=ks < K)
        tl.store(OUT_R + at + ks, tl.zeros([BLOCK_K], tl.int32), mask=ks < K)


# query-major tiles: rows per program -> (dimensions per step, warps). On the H200 (sorting version,
# benchmarks/latency/README.md) 128-row tiles ran 1.5x (nq 1) and 4.5x (nq 64) faster than 64-row ones
PROBE_TILES = {64: (128, 4), 128: (128, 4), 256: (64, 8)}


def flat_probe_scan(q, vectors, bias, ct, starts, sizes, probe, mask, max_codes, scale, k, tile_rows, sizes_host):
    """Query-major scan for small batches: one program per (query, tile of tile_rows rows of one of
    its probed lists), each keeping its best k rows; (scores, slab rows int32) (nq, width), k columns
    per tile slot, -inf in slots past the query's tiles. The caller's top-k per query is the second
    stage. tile_rows: a key of PROBE_TILES."""
    nq, P = probe.shape
    block_d, warps = PROBE_TILES[tile_rows]
    n_tiles = max(longest_chunks(sizes_host, P, tile_rows), 1)
    width = n_tiles * k
    out_s = torch.empty((nq, width), device=q.device)
    out_r = torch.empty((nq, width), dtype=torch.int32, device=q.device)
    _flat_probes[(n_tiles, nq)](
        q, vectors, bias if bias is not None else out_s, ct if ct is not None else out_s, probe, starts, sizes,
        mask.view(torch.uint8) if mask is not None else out_s, out_s, out_r, P, q.shape[1], max_codes,
        q.stride(0), vectors.stride(0), width,
        SCALE=scale, HAS_BIAS=bias is not None, HAS_CT=ct is not None, HAS_MASK=mask is not None,
        HAS_MAXC=max_codes > 0, K=k, BLOCK_K=triton.next_power_of_2(k), BLOCK_P=triton.next_power_of_2(P),
        BLOCK_N=tile_rows,
        BLOCK_D=min(block_d, triton.next_power_of_2(q.shape[1])), num_warps=warps,
    )
    return out_s, out_r
