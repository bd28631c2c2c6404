"""Triton scan of PQ codes over (query, probed list) pairs, with optional Panorama pruning.

Each program scores one probed list for one query, BLOCK_N rows at a time, straight from the slab: per
sub-quantizer it loads the rows' codes and adds the query's look-up table entries, in the fixed
order m = 0 .. M-1. With PRUNE the same additions run level by level (groups of M/L sub-quantizers)
and, before each level, rows whose Cauchy-Schwarz bound falls below the query's threshold drop out;
their later codes are never loaded, and a tile whose rows all dropped stops. A surviving row has
done exactly the additions of the unpruned scan, so both return bitwise the same scores.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

_REL_SLACK = tl.constexpr(1e-5)  # as torch_ivf.panorama: rounding allowance relative to the summed magnitudes
BLOCK_N, NUM_WARPS = 64, 2  # rows per program; tuned on the H100 (benchmarks/pq)


@triton.jit
def _add_levels(s, live, lut, CODES, r, stride_row, stride_level,
                FIRST: tl.constexpr, COUNT: tl.constexpr, LAYOUT_W: tl.constexpr, KSUB: tl.constexpr):
    for i in tl.static_range(COUNT):
        m = FIRST + i
        c = tl.load(CODES + r * stride_row + (m // LAYOUT_W) * stride_level + (m % LAYOUT_W), mask=live, other=0)
        s += tl.load(lut + m * KSUB + c.to(tl.int32), mask=live, other=0.0)
    return s


@triton.jit
def _pq_scan(LUT, CODES, INIT, TAILS, QTAIL, CT, STARTS, SIZES, PROBE, OFF, BEFORE, LABELS, MASK, THR, STATS, OUT,
             P, col0, W, width, max_codes, coef, stride_row, stride_level,
             M: tl.constexpr, KSUB: tl.constexpr, LAYOUT_W: tl.constexpr, L: tl.constexpr, ML: tl.constexpr,
             PRUNE: tl.constexpr, HAS_MASK: tl.constexpr, HAS_MAXC: tl.constexpr, BLOCK_N: tl.constexpr):
    local = tl.program_id(0)  # one (query, probed list) pair of the wave; its rows in tiles
    qi = local // W
    col = col0 + local % W
    pair = qi * P + col
    lst = tl.load(PROBE + pair)
    size = tl.load(SIZES + lst)
    start = tl.load(STARTS + lst)
    ct = tl.load(CT + pair)
    dst = OUT + qi.to(tl.int64) * width + tl.load(OFF + local)
    lut = LUT + qi.to(tl.int64) * (M * KSUB)
    row0 = 0
    while row0 < size:
        rows = row0 + tl.arange(0, BLOCK_N)
        live = rows < size
        if HAS_MAXC:
            live = live & (tl.load(BEFORE + pair) + rows < max_codes)
        r = (start + rows).to(tl.int64)
        if HAS_MASK:
            lab = tl.load(LABELS + r, mask=live, other=0)
            live = live & (tl.load(MASK + lab, mask=live, other=0) != 0)
        s = ct - tl.load(INIT + r, mask=live, other=0.0)
        if PRUNE:
            thr = tl.load(THR + qi)
            qt = tl.load(QTAIL + qi * L)
            yt = tl.load(TAILS + r * L, mask=live, other=0.0).to(tl.float32)
            # thr = -inf (no candidate yet) makes the slack +inf: nothing is pruned
            slack = _REL_SLACK * (tl.abs(s) + coef * qt * yt + tl.abs(thr)) + 1e-30
            n_valid = tl.sum(live.to(tl.int32), 0)
            scanned = 0
            for j in tl.static_range(L):
                if j > 0:
                    qt = tl.load(QTAIL + qi * L + j)
                    yt = tl.load(TAILS + r * L + j, mask=live, other=0.0).to(tl.float32)
                live = live & (s + coef * qt * yt + slack >= thr)
                n_live = tl.sum(live.to(tl.int32), 0)
                scanned += n_live
                if n_live > 0:
                    s = _add_levels(s, live, lut, CODES, r, stride_row, stride_level, j * ML, ML, LAYOUT_W, KSUB)
            live = live & (s + slack >= thr)
            tl.atomic_add(STATS, scanned.to(tl.int64))
            tl.atomic_add(STATS + 1, (n_valid * L).to(tl.int64))
        else:
            s = _add_levels(s, live, lut, CODES, r, stride_row, stride_level, 0, M, LAYOUT_W, KSUB)
        tl.store(dst + rows, tl.where(live, s, float("-inf")), mask=rows < size)
        row0 += BLOCK_N


def pq_scan(out, lut, codes, init, ct, starts, sizes, probe, off, *, cols, before=None, max_codes=0,
            labels=None, mask=None, prune=None):
    """Scores of probe columns ``cols`` = (c0, c1) into out (nq, width), a compact layout: the rows of
    pair (q, c) start at off[q, c - c0]. The caller fills out with -inf; rows filtered out, past
    max_codes or pruned stay -inf.

    lut (nq, M * ksub) fp32; codes (rows, M) or the level-major (rows, L, M/L) view; init (rows,);
    ct (nq, nprobe) coarse terms; before (nq, nprobe) candidates of earlier probes (max_codes only).
    prune: None, or dict(tails (rows, L), qtail (nq, L), thr (nq,), coef, stats (2,) int64
    accumulating [levels scanned, levels of an unpruned scan])."""
    nq, P = probe.shape
    c0, c1 = cols
    M = codes.shape[1] if codes.dim() == 2 else codes.shape[1] * codes.shape[2]
    dummy = out
    p = prune or {}
    L = p["tails"].shape[1] if prune else 1
    _pq_scan[((c1 - c0) * nq,)](
        lut, codes, init, p.get("tails", dummy), p.get("qtail", dummy), ct, starts, sizes, probe, off,
        before if before is not None else probe, labels if labels is not None else probe,
        mask.view(torch.uint8) if mask is not None else dummy, p.get("thr", dummy), p.get("stats", probe), out,
        P, c0, c1 - c0, out.shape[1], max_codes, float(p.get("coef", 0.0)), codes.stride(0),
        codes.stride(1) if codes.dim() == 3 else 0,
        M=M, KSUB=lut.shape[1] // M, LAYOUT_W=codes.shape[-1], L=L, ML=M // L,
        PRUNE=prune is not None, HAS_MASK=mask is not None, HAS_MAXC=before is not None, BLOCK_N=BLOCK_N,
        num_warps=NUM_WARPS,
    )
    return out
