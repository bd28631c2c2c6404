"""Triton scans of PQ codes straight from the slab, into a compact (query, candidate) score layout.

The rows a query probes sit back to back in its score row (list after list, in coarse order); tiles of
BLOCK_N rows run across list boundaries, so short lists (tens of rows at nlist ~ 4 sqrt(n)) do not
leave most lanes idle.

``_pq_scan`` (IndexIVFPQ): one program per query and group of LISTS lists; per sub-quantizer, load the
rows' codes and add the query's table entries, in the fixed order m = 0 .. M-1.

``_pq_scan_pruned`` (Panorama): one program per query walks its lists in coarse order, so the threshold
is the exact running k-th best, as in a sequential CPU scan, with no extra launch or host round trip.
Per group of lists, pass 1 runs level 0 on every row and compacts the rows whose level-1
Cauchy-Schwarz bound still reaches the threshold; pass 2 runs the later levels over full tiles of
survivors, pruning before each level, and merges every finished tile into a running top-BLOCK_N
(two bitonic sorts), which raises the threshold for the rest. Compaction matters because table
look-ups cost by the cache lines a warp touches, which barely falls when a tile's rows die one by
one. A surviving row gets exactly the additions of ``_pq_scan``, so both return bitwise the same
scores.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

_REL_SLACK = tl.constexpr(1e-5)  # as torch_ivf.panorama: rounding allowance relative to the summed magnitudes
# (rows per tile, warps, probed lists per program or group), each at its best of the settings timed
# (benchmarks/pq/gpu_profile.py --sweep): the plain scan wants wide tiles, the pruned ones narrower
# tiles whose per-level "any row left?" exits fire more often.
PLAIN = (128, 4, 16)
WAVES = (64, 2, 16)
RUNNING = (32, 1, 8)
SPLIT = (64, 4)  # small batches' (query, row span) programs: rows per tile, warps
RUNNING_MAX_K = 32  # top-k of the running scan lives in one tile; larger k take the waves (measured faster)


@triton.jit
def _add_levels(s, live, lut, lut_sm, CODES, r, stride_row, stride_level,
                FIRST: tl.constexpr, COUNT: tl.constexpr, LAYOUT_W: tl.constexpr, WORDS: tl.constexpr):
    if WORDS:  # four codes per 32-bit load (byte b of the little-endian word is code m + b): H200 15-18% faster
        codes32 = CODES.to(tl.pointer_type(tl.int32))
        for i in tl.static_range(0, COUNT, 4):
            m = FIRST + i
            w = tl.load(codes32 + (r * stride_row + (m // LAYOUT_W) * stride_level + (m % LAYOUT_W)) // 4,
                        mask=live, other=0)
            for b in tl.static_range(4):
                s += tl.load(lut + (m + b) * lut_sm + ((w >> (8 * b)) & 0xFF), mask=live, other=0.0)
    else:
        for i in tl.static_range(COUNT):
            m = FIRST + i
            c = tl.load(CODES + r * stride_row + (m // LAYOUT_W) * stride_level + (m % LAYOUT_W), mask=live, other=0)
            s += tl.load(lut + m * lut_sm + c.to(tl.int32), mask=live, other=0.0)
    return s


@triton.jit
def _group(qi, W, PROBE, OFF, SIZES, w0, n, LISTS: tl.constexpr):
    """Lists w0 .. w0+n-1 (n <= LISTS) of query qi: (first and end offset in its row, per-list ends)."""
    ws = w0 + tl.arange(0, LISTS)
    wm = (ws < W) & (ws < w0 + n)
    size = tl.load(SIZES + tl.load(PROBE + qi * W + ws, mask=wm, other=0), mask=wm, other=0)
    ends = tl.where(wm, tl.load(OFF + qi * W + ws, mask=wm, other=0) + size, 2147483647)
    o0 = tl.load(OFF + qi * W + w0)
    o1 = tl.max(tl.where(wm, ends, 0), 0)
    return o0, o1, ends


@triton.jit
def _tile(j, qi, W, w0, ends, PROBE, OFF, STARTS, CT, INIT, BEFORE, LABELS, MASK, max_codes, o1,
          HAS_MASK: tl.constexpr, HAS_MAXC: tl.constexpr):
    """Slab rows, liveness and base scores (coarse term - init) of row offsets j of a query's row."""
    valid = j < o1
    pair = qi * W + w0 + tl.sum((j[:, None] >= ends[None, :]).to(tl.int32), 1)  # lists ending at or before j
    lst = tl.load(PROBE + pair, mask=valid, other=0)
    row = j - tl.load(OFF + pair, mask=valid, other=0)
    r = (tl.load(STARTS + lst, mask=valid, other=0) + row).to(tl.int64)
    live = valid
    if HAS_MAXC:
        live = live & (tl.load(BEFORE + pair, mask=valid, other=0) + row < max_codes)
    if HAS_MASK:
        live = live & (tl.load(MASK + r, mask=live, other=0) != 0)  # _allowed_mask: per slab row
    s = tl.load(CT + pair, mask=valid, other=0.0) - tl.load(INIT + r, mask=live, other=0.0)
    return r, live, s


@triton.jit
def _pq_scan(LUT, CODES, INIT, CT, STARTS, SIZES, PROBE, OFF, BEFORE, LABELS, MASK, OUT,
             W, width, max_codes, lut_sq, lut_sm, stride_row, stride_level, span,
             M: tl.constexpr, LAYOUT_W: tl.constexpr, LISTS: tl.constexpr, HAS_MASK: tl.constexpr,
             HAS_MAXC: tl.constexpr, WORDS: tl.constexpr, SPLIT: tl.constexpr, BLOCK_N: tl.constexpr):
    qi = tl.program_id(0)
    if SPLIT:  # program (query, span of its row): every list of the query, rows j0 .. j0 + span
        w0 = 0
        o0, o1, ends = _group(qi, W, PROBE, OFF, SIZES, 0, W, LISTS)
        j0 = o0 + tl.program_id(1) * span
        j_end = tl.minimum(o1, j0 + span)
    else:  # program (query, group of LISTS lists): the group's rows
        w0 = tl.program_id(1) * LISTS
        o0, o1, ends = _group(qi, W, PROBE, OFF, SIZES, w0, LISTS, LISTS)
        j0 = o0
        j_end = o1
    out = OUT + qi.to(tl.int64) * width
    lut = LUT + qi.to(tl.int64) * lut_sq
    while j0 < j_end:
        j = j0 + tl.arange(0, BLOCK_N)
        r, live, s = _tile(j, qi, W, w0, ends, PROBE, OFF, STARTS, CT, INIT, BEFORE, LABELS, MASK, max_codes, o1,
                           HAS_MASK, HAS_MAXC)
        s = _add_levels(s, live, lut, lut_sm, CODES, r, stride_row, stride_level, 0, M, LAYOUT_W, WORDS)
        tl.store(out + j, tl.where(live, s, float("-inf")), mask=j < o1)
        j0 += BLOCK_N


@triton.jit
def _merge_best(best, s, ar, KTH: tl.constexpr):
    """Top-BLOCK_N of best (sorted descending) and s, and its KTH-th largest (0-based)."""
    # max of a descending and an ascending sequence is the top half of both (bitonic merge)
    best = tl.sort(tl.maximum(best, tl.sort(s)), descending=True)
    return best, tl.max(tl.where(ar == KTH, best, float("-inf")), 0)


@triton.jit
def _pq_scan_pruned(LUT, CODES, INIT, TAILS, QTAIL, CT, STARTS, SIZES, PROBE, OFF, BEFORE, LABELS, MASK, THR,
                    STATS, OUT, SURV_ROW, SURV_AT,
                    W, width, max_codes, coef, lut_sq, lut_sm, stride_row, stride_level,
                    L: tl.constexpr, ML: tl.constexpr, LAYOUT_W: tl.constexpr, LISTS: tl.constexpr,
                    RUNNING: tl.constexpr, KTH: tl.constexpr, HAS_MASK: tl.constexpr, HAS_MAXC: tl.constexpr,
                    WORDS: tl.constexpr, BLOCK_N: tl.constexpr):
    qi = tl.program_id(0)
    out = OUT + qi.to(tl.int64) * width
    surv_row = SURV_ROW + qi.to(tl.int64) * width
    surv_at = SURV_AT + qi.to(tl.int64) * width
    lut = LUT + qi.to(tl.int64) * lut_sq
    ar = tl.arange(0, BLOCK_N)
    best = tl.full([BLOCK_N], float("-inf"), tl.float32)  # running top-BLOCK_N of finished scores
    if RUNNING:  # all lists, a first group of one list, then LISTS at a time
        w0 = 0
        n = 1
        w_end = W
        thr = tl.max(best, 0)  # -inf until KTH+1 scores exist: the slack is then +inf and keeps every row
    else:  # one group of a wave, against the threshold of the waves before it
        w0 = tl.program_id(1) * LISTS
        n = LISTS
        w_end = tl.minimum(W, w0 + LISTS)
        thr = tl.load(THR + qi)
    q0 = tl.load(QTAIL + qi * L)
    n_rows = 0
    scanned = 0
    while w0 < w_end:
        o0, o1, ends = _group(qi, W, PROBE, OFF, SIZES, w0, n, LISTS)
        thr_mag = tl.abs(thr)
        n_surv = 0
        # pass 1: level 0 on every row; survivors of the level-1 bound are compacted
        j0 = o0
        while j0 < o1:
            j = j0 + ar
            r, live, s = _tile(j, qi, W, w0, ends, PROBE, OFF, STARTS, CT, INIT, BEFORE, LABELS, MASK, max_codes,
                               o1, HAS_MASK, HAS_MAXC)
            n_rows += tl.sum(live.to(tl.int32), 0)
            y0 = tl.load(TAILS + r * L, mask=live, other=0.0).to(tl.float32)
            slack = _REL_SLACK * (tl.abs(s) + coef * q0 * y0 + thr_mag) + 1e-30
            live = live & (s + coef * q0 * y0 + slack >= thr)
            n_live = tl.sum(live.to(tl.int32), 0)
            if n_live > 0:
                scanned += n_live
                s = _add_levels(s, live, lut, lut_sm, CODES, r, stride_row, stride_level, 0, ML, LAYOUT_W, WORDS)
                if L > 1:
                    y1 = tl.load(TAILS + r * L + 1, mask=live, other=0.0).to(tl.float32)
                    live = live & (s + coef * tl.load(QTAIL + qi * L + 1) * y1 + slack >= thr)
                else:
                    live = live & (s + slack >= thr)
            fin = tl.where(live, s, float("-inf"))
            tl.store(out + j, fin, mask=j < o1)
            if L > 1:
                keep = live.to(tl.int32)
                n_keep = tl.sum(keep, 0)
                if n_keep > 0:
                    at = o0 + n_surv + tl.cumsum(keep, 0) - 1
                    tl.store(surv_row + at, r.to(tl.int32), mask=live)
                    tl.store(surv_at + at, j, mask=live)
                    n_surv += n_keep
            elif RUNNING:
                best, thr = _merge_best(best, fin, ar, KTH)
                thr_mag = tl.abs(thr)
            j0 += BLOCK_N
        # pass 2: levels 1 .. L-1 over full tiles of survivors (their level-0 partial waits in out)
        t0 = 0
        while t0 < n_surv:
            i = t0 + ar
            live = i < n_surv
            r = tl.load(surv_row + o0 + i, mask=live, other=0).to(tl.int64)
            at = tl.load(surv_at + o0 + i, mask=live, other=0)
            s = tl.load(out + at, mask=live, other=0.0)
            # allowance relative to the partial and the remaining terms (valid for the rest of the sum)
            slack = _REL_SLACK * (tl.abs(s) + coef * q0 * tl.load(TAILS + r * L, mask=live, other=0.0).to(tl.float32)
                                  + thr_mag) + 1e-30
            n_live = tl.sum(live.to(tl.int32), 0)
            for lv in tl.static_range(1, L):
                if n_live > 0:
                    yj = tl.load(TAILS + r * L + lv, mask=live, other=0.0).to(tl.float32)
                    live = live & (s + coef * tl.load(QTAIL + qi * L + lv) * yj + slack >= thr)
                    n_live = tl.sum(live.to(tl.int32), 0)
                    scanned += n_live
                    if n_live > 0:
                        s = _add_levels(s, live, lut, lut_sm, CODES, r, stride_row, stride_level, lv * ML, ML,
                                        LAYOUT_W, WORDS)
            live = live & (s + slack >= thr)
            fin = tl.where(live, s, float("-inf"))
            tl.store(out + at, fin, mask=i < n_surv)
            if RUNNING:
                best, thr = _merge_best(best, fin, ar, KTH)
                thr_mag = tl.abs(thr)
            t0 += BLOCK_N
        w0 += n
        n = LISTS
    tl.atomic_add(STATS, scanned.to(tl.int64))
    tl.atomic_add(STATS + 1, (n_rows * L).to(tl.int64))


@triton.jit
def _pq_tiles_pruned(LUT, CODES, INIT, TAILS, QTAIL, CT, STARTS, SIZES, PROBE, OFF, BEFORE, LABELS, MASK, THR,
                     STATS, OUT, W, width, max_codes, coef, lut_sq, lut_sm, stride_row, stride_level, span,
                     L: tl.constexpr, ML: tl.constexpr, LAYOUT_W: tl.constexpr, LISTS: tl.constexpr,
                     HAS_MASK: tl.constexpr, HAS_MAXC: tl.constexpr, WORDS: tl.constexpr, BLOCK_N: tl.constexpr):
    """Small batches: program (query, span of its row) against a fixed threshold (THR, from a first
    wave), every tile pruned level by level without compaction: no program walks a whole list, so a
    single query still spreads over the GPU. Survivors get _pq_scan's additions, in its order."""
    qi = tl.program_id(0)
    o0, o1, ends = _group(qi, W, PROBE, OFF, SIZES, 0, W, LISTS)
    j0 = o0 + tl.program_id(1) * span
    j_end = tl.minimum(o1, j0 + span)
    out = OUT + qi.to(tl.int64) * width
    lut = LUT + qi.to(tl.int64) * lut_sq
    thr = tl.load(THR + qi)
    thr_mag = tl.abs(thr)
    q0 = tl.load(QTAIL + qi * L)
    n_rows = 0
    scanned = 0
    while j0 < j_end:
        j = j0 + tl.arange(0, BLOCK_N)
        r, live, s = _tile(j, qi, W, 0, ends, PROBE, OFF, STARTS, CT, INIT, BEFORE, LABELS, MASK, max_codes, o1,
                           HAS_MASK, HAS_MAXC)
        n_rows += tl.sum(live.to(tl.int32), 0)
        # allowance relative to every term's magnitude (the table terms sum to at most coef q0 y0)
        slack = _REL_SLACK * (tl.abs(s) + coef * q0 * tl.load(TAILS + r * L, mask=live, other=0.0).to(tl.float32)
                              + thr_mag) + 1e-30
        n_live = tl.sum(live.to(tl.int32), 0)
        for lv in tl.static_range(L):
            if n_live > 0:
                yj = tl.load(TAILS + r * L + lv, mask=live, other=0.0).to(tl.float32)
                live = live & (s + coef * tl.load(QTAIL + qi * L + lv) * yj + slack >= thr)
                n_live = tl.sum(live.to(tl.int32), 0)
                scanned += n_live
                if n_live > 0:
                    s = _add_levels(s, live, lut, lut_sm, CODES, r, stride_row, stride_level, lv * ML, ML, LAYOUT_W,
                                    WORDS)
        live = live & (s + slack >= thr)
        tl.store(out + j, tl.where(live, s, float("-inf")), mask=j < o1)
        j0 += BLOCK_N
    tl.atomic_add(STATS, scanned.to(tl.int64))
    tl.atomic_add(STATS + 1, (n_rows * L).to(tl.int64))



def pq_scan(out, tables, codes, init, ct, starts, sizes, probe, off, *, cols, before=None, max_codes=0,
            labels=None, mask=None, prune=None, surv=None, span=0):
    """Scores of probe columns ``cols`` = (c0, c1) into out (nq, width), a compact layout: the rows of
    pair (q, c) start at off[q, c] (off (nq, nprobe)). Rows filtered out, past max_codes or pruned get
    -inf; out must start as -inf. ``surv`` (2, nq, width) int32 scratch for the pruned scan.

    tables (M, nq, ksub) fp32 look-up tables (any strides with unit stride along ksub); codes (rows, M)
    or the level-major (rows, L, M/L) view; init (rows,); ct (nq, nprobe) coarse terms; before
    (nq, nprobe) candidates of earlier probes (max_codes only). prune: None, or dict(tails (rows, L),
    qtail (nq, L), coef, stats (2,) int64 accumulating [levels scanned, levels unpruned], and either
    thr (nq,) the threshold of earlier waves, or k for the running top-k scan of all columns).
    span > 0: programs over (query, span rows of its row) instead of (query, group of lists), so one
    query spreads over many programs (small batches); with prune, thr must be given."""
    nq = probe.shape[0]
    c0, c1 = cols
    M = tables.shape[0]
    probe_w = probe[:, c0:c1].contiguous()  # the wave's pairs: the kernels index them (query, column)
    off = off[:, c0:c1].contiguous()
    ct_w = ct[:, c0:c1].contiguous()
    before_w = before[:, c0:c1].contiguous() if before is not None else probe
    args = (labels if labels is not None else probe, mask.view(torch.uint8) if mask is not None else out)
    strides = (tables.stride(1), tables.stride(0), codes.stride(0), codes.stride(1) if codes.dim() == 3 else 0)
    # 32-bit code loads where every code group of 4 is 4-byte aligned (M, or M / levels, divisible by 4)
    words = codes.shape[-1] % 4 == 0 and codes.data_ptr() % 4 == 0 and all(st % 4 == 0 for st in codes.stride()[:-1])
    common = dict(LAYOUT_W=codes.shape[-1], HAS_MASK=mask is not None, HAS_MAXC=before is not None, WORDS=words)
    if span:
        block, warps = SPLIT
        span = triton.cdiv(span, block) * block
        lists = triton.next_power_of_2(c1 - c0)  # one group: every list of the columns
        grid = (nq, triton.cdiv(out.shape[1], span))
    if prune is None:
        if not span:
            block, warps, lists = PLAIN
            grid = (nq, triton.cdiv(c1 - c0, lists))
        _pq_scan[grid](tables, codes, init, ct_w, starts, sizes, probe_w, off, before_w, *args, out, c1 - c0,
                       out.shape[1], max_codes, *strides, span, M=M, LISTS=lists, SPLIT=span > 0, BLOCK_N=block,
                       num_warps=warps, **common)
        return out
    L = prune["tails"].shape[1]
    if span:
        _pq_tiles_pruned[grid](tables, codes, init, prune["tails"], prune["qtail"], ct_w, starts, sizes, probe_w, off,
                               before_w, *args, prune["thr"], prune["stats"], out, c1 - c0, out.shape[1], max_codes,
                               float(prune["coef"]), *strides, span, L=L, ML=M // L, LISTS=lists, BLOCK_N=block,
                               num_warps=warps, **common)
        return out
    running = "k" in prune
    block, warps, lists = RUNNING if running else WAVES
    grid = (nq,) if running else (nq, triton.cdiv(c1 - c0, lists))
    _pq_scan_pruned[grid](tables, codes, init, prune["tails"], prune["qtail"], ct_w, starts, sizes, probe_w, off,
                          before_w, *args, prune.get("thr", out), prune["stats"], out, surv[0], surv[1],
                          c1 - c0, out.shape[1], max_codes, float(prune["coef"]), *strides,
                          L=L, ML=M // L, LISTS=lists, RUNNING=running, KTH=prune.get("k", 1) - 1,
                          BLOCK_N=block, num_warps=warps, **common)
    return out
