"""Triton scan of the PQ lists that many queries of a batch probe: decode a tile of the list once,
score it against a block of queries with a tensor-core GEMM.

The look-up scan (pq_scan.py) pays one table read per (query, row, sub-quantizer). A list that many
queries probe is cheaper read the IVFFlat way: one program per (list, block of the queries probing
it) rebuilds each tile's residuals from the codebook (d = M * dsub reads per row, shared by BLOCK_Q
queries, instead of M per query and row) and takes <q, r> as a tf32x3 GEMM. This matters most for
the catch-all lists k-means leaves near the data's mean (10-70x the mean list size, probed by every
query). Scores land in the same compact (query, candidate) layout as the look-up scan's, at
OFFL[pair] + row. They equal the table sums to float32 rounding, not bitwise: IndexIVFPQ and
IndexIVFPQPanorama route the same lists here (``busy_lists``), so both still return identical results.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import dot_precision
from .list_pairs import group_pairs, program_pairs

# A list takes this scan when >= MIN_QUERIES queries of a launch probe it: a program's block of
# queries shares each decoded row (d reads) where look-ups cost M per query and row. H200, MiniLM
# (benchmarks/pq/gpu_profile.py --sweep): 8 beat 16, 32, 64 and never; any list size: a bar of 128
# or 512 rows was slower than none on the clustered set too.
MIN_QUERIES = 8
TILES = (32, 64, 16, 4, "tf32x3")  # queries per program, rows per tile, dimensions per step, warps, dot precision


def busy_lists(nlist: int, probe: torch.Tensor) -> torch.Tensor:
    """(nlist,) bool on the device: the lists this scan serves for these probes (no host sync)."""
    pairs = probe.reshape(-1)
    count = torch.zeros(nlist, dtype=torch.int32, device=probe.device).scatter_add_(
        0, pairs, torch.ones_like(pairs, dtype=torch.int32))
    return count >= MIN_QUERIES


@triton.jit
def _pq_lists(Q, CB, CODES, INIT, CT, STARTS, SIZES, ORDER, FIRST, COUNT, TILE_END, OFFL, BEFORE, LABELS, MASK,
              OUT, nlist, P, d, width, max_codes, stride_q, stride_row, stride_level,
              DSUB: tl.constexpr, KSUB: tl.constexpr, LAYOUT_W: tl.constexpr, HAS_MASK: tl.constexpr,
              HAS_MAXC: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
              PRECISION: tl.constexpr):
    lst, pair, qm, chunk = program_pairs(tl.program_id(0), ORDER, FIRST, COUNT, TILE_END, COUNT, nlist, BLOCK_Q, False)
    if lst < nlist:
        qi = (pair // P).to(tl.int64)
        ct = tl.load(CT + pair, mask=qm, other=0.0)
        col = tl.load(OFFL + pair, mask=qm, other=0)  # where this (query, list) starts in the query's row
        if HAS_MAXC:
            col0 = tl.load(BEFORE + pair, mask=qm, other=0)  # candidates of the query's earlier probes
        start = tl.load(STARTS + lst)
        size = tl.load(SIZES + lst)
        for r0 in range(0, size, BLOCK_N):
            rows = r0 + tl.arange(0, BLOCK_N)
            rm = rows < size
            r = (start + rows).to(tl.int64)
            acc = tl.zeros([BLOCK_Q, BLOCK_N], dtype=tl.float32)
            for d0 in range(0, d, BLOCK_D):
                dims = d0 + tl.arange(0, BLOCK_D)
                dm = dims < d
                m = dims // DSUB
                xm = dm[:, None] & rm[None, :]
                code = tl.load(CODES + r[None, :] * stride_row + ((m // LAYOUT_W) * stride_level + m % LAYOUT_W)[:, None],
                               mask=xm, other=0)
                x = tl.load(CB + (m[:, None] * KSUB + code.to(tl.int32)) * DSUB + (dims % DSUB)[:, None], mask=xm,
                            other=0.0)
                q = tl.load(Q + qi[:, None] * stride_q + dims[None, :], mask=qm[:, None] & dm[None, :], other=0.0)
                acc = tl.dot(q, x, acc, input_precision=PRECISION)
            s = (ct[:, None] - tl.load(INIT + r, mask=rm, other=0.0)[None, :]) + acc
            live = qm[:, None] & rm[None, :]
            if HAS_MAXC:
                live = live & (col0[:, None] + rows[None, :] < max_codes)
            if HAS_MASK:
                live = live & (tl.load(MASK + r, mask=rm, other=0) != 0)[None, :]  # per slab row
            tl.store(OUT + qi[:, None] * width + (col[:, None] + rows[None, :]), tl.where(live, s, float("-inf")),
                     mask=qm[:, None] & rm[None, :])


def pq_lists(out, q, codebook, codes, init, ct, starts, sizes, probe, served, offl, *, before=None, max_codes=0,
             labels=None, mask=None):
    """Scores of the served lists' rows into out (nq, width) at offl[q, c] + row (offl (nq, nprobe)).
    q (nq, d) float32, scaled so that <q, residual> is the table sum (2q for l2); codebook (M, ksub, dsub);
    codes (rows, M) or the level-major (rows, L, M/L) view; served (nlist,) bool from busy_lists."""
    nq, P = probe.shape
    nlist = sizes.shape[0]
    block_q, block_n, block_d, warps, precision = TILES
    precision = dot_precision(precision)
    offl, ct = offl.contiguous(), ct.contiguous()  # indexed by pair = query * P + column
    before = before.contiguous() if before is not None else None
    pair_lists = torch.where(served[probe], probe, nlist).reshape(-1)
    order, first, count, tile_end, n_programs = group_pairs(pair_lists, nlist, block_q)
    strides = (codes.stride(0), codes.stride(1) if codes.dim() == 3 else 0)
    _pq_lists[(n_programs,)](
        q, codebook, codes, init, ct, starts, sizes, order, first, count, tile_end, offl,
        before if before is not None else offl, labels if labels is not None else offl,
        mask.view(torch.uint8) if mask is not None else out, out, nlist, P, q.shape[1], out.shape[1], max_codes,
        q.stride(0), *strides, DSUB=codebook.shape[2], KSUB=codebook.shape[1], LAYOUT_W=codes.shape[-1],
        HAS_MASK=mask is not None, HAS_MAXC=before is not None, BLOCK_Q=block_q, BLOCK_N=block_n,
        BLOCK_D=block_d, PRECISION=precision, num_warps=warps,
    )
    return out
