"""Triton scans of PQ codes straight from the slab, into a compact (query, candidate) score layout.

``_pq_scan`` (IndexIVFPQ): one program per (query, probed list), BLOCK_N rows at a time; per
sub-quantizer it loads the rows' codes and adds the query's table entries in the fixed order
m = 0 .. M-1.

``_pq_scan_pruned`` (Panorama): one program per query and wave of probed lists. Pass 1 runs level 0
(the first M/L sub-quantizers) on every row and keeps the rows whose Cauchy-Schwarz bound still
reaches the query's threshold, compacted into a survivor list; pass 2 runs the later levels over
full tiles of survivors, pruning again before each level. Compaction matters because table look-ups
cost by the cache lines a warp touches, which barely falls when a tile's rows die one by one. A
surviving row gets exactly the additions of ``_pq_scan``, so both return bitwise the same scores.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

_REL_SLACK = tl.constexpr(1e-5)  # as torch_ivf.panorama: rounding allowance relative to the summed magnitudes
BLOCK_N, NUM_WARPS = 64, 2  # rows per tile, warps per program: the better of 32/1 and 64/2 on the H100
LISTS = 8  # lists per program of the pruned scan: survivors of this many lists fill tiles together


@triton.jit
def _add_levels(s, live, lut, lut_sm, CODES, r, stride_row, stride_level,
                FIRST: tl.constexpr, COUNT: tl.constexpr, LAYOUT_W: tl.constexpr):
    for i in tl.static_range(COUNT):
        m = FIRST + i
        c = tl.load(CODES + r * stride_row + (m // LAYOUT_W) * stride_level + (m % LAYOUT_W), mask=live, other=0)
        s += tl.load(lut + m * lut_sm + c.to(tl.int32), mask=live, other=0.0)
    return s


@triton.jit
def _row_filter(live, rows, r, pair, BEFORE, LABELS, MASK, max_codes, HAS_MASK: tl.constexpr, HAS_MAXC: tl.constexpr):
    if HAS_MAXC:
        live = live & (tl.load(BEFORE + pair) + rows < max_codes)
    if HAS_MASK:
        lab = tl.load(LABELS + r, mask=live, other=0)
        live = live & (tl.load(MASK + lab, mask=live, other=0) != 0)
    return live


@triton.jit
def _pq_scan(LUT, CODES, INIT, CT, STARTS, SIZES, PROBE, OFF, BEFORE, LABELS, MASK, OUT,
             P, W, width, max_codes, lut_sq, lut_sm, stride_row, stride_level,
             M: tl.constexpr, LAYOUT_W: tl.constexpr, HAS_MASK: tl.constexpr, HAS_MAXC: tl.constexpr,
             BLOCK_N: tl.constexpr):
    local = tl.program_id(0)  # one (query, probed list) pair; its rows in tiles
    qi = local // W
    pair = qi * P + local % W
    lst = tl.load(PROBE + pair)
    size = tl.load(SIZES + lst)
    start = tl.load(STARTS + lst)
    ct = tl.load(CT + pair)
    dst = OUT + qi.to(tl.int64) * width + tl.load(OFF + local)
    lut = LUT + qi.to(tl.int64) * lut_sq
    row0 = 0
    while row0 < size:
        rows = row0 + tl.arange(0, BLOCK_N)
        r = (start + rows).to(tl.int64)
        live = _row_filter(rows < size, rows, r, pair, BEFORE, LABELS, MASK, max_codes, HAS_MASK, HAS_MAXC)
        s = ct - tl.load(INIT + r, mask=live, other=0.0)
        s = _add_levels(s, live, lut, lut_sm, CODES, r, stride_row, stride_level, 0, M, LAYOUT_W)
        tl.store(dst + rows, tl.where(live, s, float("-inf")), mask=rows < size)
        row0 += BLOCK_N


@triton.jit
def _pq_scan_pruned(LUT, CODES, INIT, TAILS, QTAIL, CT, STARTS, SIZES, PROBE, OFF, BEFORE, LABELS, MASK, THR,
                    STATS, OUT, SURV_ROW, SURV_AT,
                    P, col0, W, width, max_codes, coef, lut_sq, lut_sm, stride_row, stride_level,
                    L: tl.constexpr, ML: tl.constexpr, LAYOUT_W: tl.constexpr, LISTS: tl.constexpr,
                    HAS_MASK: tl.constexpr, HAS_MAXC: tl.constexpr, BLOCK_N: tl.constexpr):
    qi = tl.program_id(0)  # one query and up to LISTS of the wave's lists (enough programs to fill the GPU)
    w = tl.program_id(1) * LISTS
    w_end = tl.minimum(W, w + LISTS)
    out = OUT + qi.to(tl.int64) * width
    base = tl.load(OFF + qi * W + w)  # survivors are listed in this program's own span of the row
    surv_row = SURV_ROW + qi.to(tl.int64) * width + base
    surv_at = SURV_AT + qi.to(tl.int64) * width + base
    lut = LUT + qi.to(tl.int64) * lut_sq
    thr = tl.load(THR + qi)
    thr_mag = tl.abs(thr)  # +inf while no candidate exists: the slack then keeps every row
    q0 = tl.load(QTAIL + qi * L)
    n_surv = 0
    n_rows = 0
    scanned = 0
    # pass 1: level 0 on every row of the wave's lists; survivors of the level-1 bound are compacted
    while w < w_end:  # (a while loop: Triton's interpreter cannot range over a runtime bound)
        pair = qi * P + col0 + w
        lst = tl.load(PROBE + pair)
        size = tl.load(SIZES + lst)
        start = tl.load(STARTS + lst)
        ct = tl.load(CT + pair)
        off = tl.load(OFF + qi * W + w)
        row0 = 0
        while row0 < size:
            rows = row0 + tl.arange(0, BLOCK_N)
            r = (start + rows).to(tl.int64)
            live = _row_filter(rows < size, rows, r, pair, BEFORE, LABELS, MASK, max_codes, HAS_MASK, HAS_MAXC)
            n_rows += tl.sum(live.to(tl.int32), 0)
            s = ct - tl.load(INIT + r, mask=live, other=0.0)
            y0 = tl.load(TAILS + r * L, mask=live, other=0.0).to(tl.float32)
            slack = _REL_SLACK * (tl.abs(s) + coef * q0 * y0 + thr_mag) + 1e-30
            live = live & (s + coef * q0 * y0 + slack >= thr)
            n_live = tl.sum(live.to(tl.int32), 0)
            if n_live > 0:
                scanned += n_live
                s = _add_levels(s, live, lut, lut_sm, CODES, r, stride_row, stride_level, 0, ML, LAYOUT_W)
                if L > 1:
                    y1 = tl.load(TAILS + r * L + 1, mask=live, other=0.0).to(tl.float32)
                    live = live & (s + coef * tl.load(QTAIL + qi * L + 1) * y1 + slack >= thr)
                else:
                    live = live & (s + slack >= thr)
            tl.store(out + off + rows, tl.where(live, s, float("-inf")), mask=rows < size)
            if L > 1:
                keep = live.to(tl.int32)
                n_keep = tl.sum(keep, 0)
                if n_keep > 0:
                    at = n_surv + tl.cumsum(keep, 0) - 1
                    tl.store(surv_row + at, r.to(tl.int32), mask=live)
                    tl.store(surv_at + at, off + rows, mask=live)
                    n_surv += n_keep
            row0 += BLOCK_N
        w += 1
    # pass 2: levels 1 .. L-1 over full tiles of survivors (their level-0 partial waits in out)
    t0 = 0
    while t0 < n_surv:
        i = t0 + tl.arange(0, BLOCK_N)
        live = i < n_surv
        r = tl.load(surv_row + i, mask=live, other=0).to(tl.int64)
        at = tl.load(surv_at + i, mask=live, other=0)
        s = tl.load(out + at, mask=live, other=0.0)
        # allowance relative to the partial and the remaining terms (valid for the rest of the sum)
        slack = _REL_SLACK * (tl.abs(s) + coef * q0 * tl.load(TAILS + r * L, mask=live, other=0.0).to(tl.float32)
                              + thr_mag) + 1e-30
        n_live = tl.sum(live.to(tl.int32), 0)
        for j in tl.static_range(1, L):
            if n_live > 0:
                yj = tl.load(TAILS + r * L + j, mask=live, other=0.0).to(tl.float32)
                live = live & (s + coef * tl.load(QTAIL + qi * L + j) * yj + slack >= thr)
                n_live = tl.sum(live.to(tl.int32), 0)
                scanned += n_live
                if n_live > 0:
                    s = _add_levels(s, live, lut, lut_sm, CODES, r, stride_row, stride_level, j * ML, ML, LAYOUT_W)
        live = live & (s + slack >= thr)
        tl.store(out + at, tl.where(live, s, float("-inf")), mask=i < n_surv)
        t0 += BLOCK_N
    tl.atomic_add(STATS, scanned.to(tl.int64))
    tl.atomic_add(STATS + 1, (n_rows * L).to(tl.int64))


def pq_scan(out, tables, codes, init, ct, starts, sizes, probe, off, *, cols, before=None, max_codes=0,
            labels=None, mask=None, prune=None, surv=None):
    """Scores of probe columns ``cols`` = (c0, c1) into out (nq, width), a compact layout: the rows of
    pair (q, c) start at off[q, c] (off (nq, nprobe)). Rows filtered out, past max_codes or pruned get
    -inf; out must start as -inf. ``surv`` (2, nq, width) int32 scratch for the pruned scan.

    tables (M, nq, ksub) fp32 look-up tables (any strides with unit stride along ksub); codes (rows, M)
    or the level-major (rows, L, M/L) view; init (rows,); ct (nq, nprobe) coarse terms; before
    (nq, nprobe) candidates of earlier probes (max_codes only). prune: None, or dict(tails (rows, L),
    qtail (nq, L), thr (nq,), coef, stats (2,) int64 accumulating [levels scanned, levels unpruned])."""
    nq, P = probe.shape
    c0, c1 = cols
    M = tables.shape[0]
    probe_w = probe[:, c0:c1]  # pairs of the wave; OFF and CT are indexed per wave below
    off = off[:, c0:c1].contiguous()
    ct_w = ct[:, c0:c1].contiguous()
    before_w = before[:, c0:c1].contiguous() if before is not None else probe
    common = dict(LAYOUT_W=codes.shape[-1], HAS_MASK=mask is not None, HAS_MAXC=before is not None,
                  BLOCK_N=BLOCK_N, num_warps=NUM_WARPS)
    args = (labels if labels is not None else probe, mask.view(torch.uint8) if mask is not None else out)
    strides = (tables.stride(1), tables.stride(0), codes.stride(0), codes.stride(1) if codes.dim() == 3 else 0)
    probe_w = probe_w.contiguous()
    if prune is None:
        _pq_scan[((c1 - c0) * nq,)](tables, codes, init, ct_w, starts, sizes, probe_w, off, before_w, *args, out,
                                    c1 - c0, c1 - c0, out.shape[1], max_codes, *strides, M=M, **common)
        return out
    L = prune["tails"].shape[1]
    _pq_scan_pruned[(nq, triton.cdiv(c1 - c0, LISTS))](tables, codes, init, prune["tails"], prune["qtail"], ct_w, starts, sizes, probe_w, off,
                           before_w, *args, prune["thr"], prune["stats"], out, surv[0], surv[1],
                           c1 - c0, 0, c1 - c0, out.shape[1], max_codes, float(prune["coef"]), *strides,
                           L=L, ML=M // L, LISTS=LISTS, **common)
    return out
