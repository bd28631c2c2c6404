"""IndexIVFPQPanorama's pruned look-up scans (the plain scan and the shared helpers: pq_scan.py).

Every row's bound is the Cauchy-Schwarz one of torch_ivf.panorama: after level j-1 the score is at
most partial + coef ||q_tail_j|| ||y_tail_j||, so a row whose bound (plus a rounding allowance) falls
below a threshold that some k exact scores reach already can be dropped. A surviving row gets
exactly ``_pq_scan``'s additions in its order, so the scores (and ids) are bitwise IndexIVFPQ's.

``_pq_tiles_seeded`` (small batches, one launch): programs over (query, span of its row), as the plain
split scan. Each program first scores (the first 4 tiles of) its query's nearest list and keeps the lane-wise
best of its tiles, whose k-th largest (k distinct rows' exact scores) is the threshold (every program
of the query repeats this: ~one list of work, against a launch and a top-k per wave otherwise; no
sort, so it compiles in seconds), then walks its span tile by tile and level by level, each tile leaving as soon as no row
of it is alive. Query tails are computed in the kernel (no torch ops for them).

``_pq_scan_pruned`` (larger batches): one program per query walks its lists in coarse order, so the
threshold is the exact running k-th best, as in a sequential CPU scan, with no extra launch or host
round trip. Per group of lists, pass 1 runs level 0 on every row and compacts the rows whose level-1
bound still reaches the threshold; pass 2 runs the later levels over full tiles of survivors, pruning
before each level, and merges every finished tile into a running top-BLOCK_N (two bitonic sorts),
which raises the threshold for the rest. Compaction matters because table look-ups cost by the cache
lines a warp touches, which barely falls when a tile's rows die one by one. Larger k: waves of lists
(RUNNING False), each pruned against the k-th best of the waves before it.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pq_scan import SPLIT, _add_levels, _group, _tile, code_layout, wave_args

_REL_SLACK = tl.constexpr(1e-5)  # as torch_ivf.panorama: rounding allowance relative to the summed magnitudes
# (rows per tile, warps, probed lists per program or group), each at its best of the settings timed
# (benchmarks/pq/gpu_profile.py --sweep): the pruned scans want narrower tiles than the plain one,
# whose per-level "any row left?" exits fire more often.
WAVES = (64, 2, 16)
RUNNING = (32, 1, 8)
RUNNING_MAX_K = 32  # top-k of the running scan lives in one tile; larger k take the waves (measured faster)
SEED_MAX_K = SPLIT[0]  # the seed needs k distinct lanes of a tile
SEED_TILES = tl.constexpr(4)  # tiles of the nearest list each program scores for its threshold


@triton.jit
def _prune_levels(s, live, slack, thr, qt, lvs, lut, lut_sm, CODES, TAILS, r, stride_row, stride_level, scanned,
                  FIRST: tl.constexpr, L: tl.constexpr, ML: tl.constexpr, LAYOUT_W: tl.constexpr, WORDS: tl.constexpr):
    """Levels FIRST .. L-1 of a tile: before each, the rows whose bound (qt: coef ||q_tail|| per level)
    falls below thr die, and the level's look-ups run while any row lives. (s, live, scanned + levels run)."""
    n_live = tl.sum(live.to(tl.int32), 0)
    for lv in tl.static_range(FIRST, L):
        if n_live > 0:
            yj = tl.load(TAILS + r * L + lv, mask=live, other=0.0).to(tl.float32)
            live = live & (s + tl.sum(tl.where(lvs == lv, qt, 0.0), 0) * yj + slack >= thr)
            n_live = tl.sum(live.to(tl.int32), 0)
            scanned += n_live
            if n_live > 0:
                s = _add_levels(s, live, lut, lut_sm, CODES, r, stride_row, stride_level, lv * ML, ML, LAYOUT_W, WORDS)
    return s, live, scanned


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
                    L: tl.constexpr, ML: tl.constexpr, LP: tl.constexpr, LAYOUT_W: tl.constexpr, LISTS: tl.constexpr,
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
    lvs = tl.arange(0, LP)
    qt = coef * tl.load(QTAIL + qi * L + lvs, mask=lvs < L, other=0.0)
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
            s, live, scanned = _prune_levels(s, live, slack, thr, qt, lvs, lut, lut_sm, CODES, TAILS, r, stride_row,
                                             stride_level, scanned, 1, L, ML, LAYOUT_W, WORDS)
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
def _add_looped(s, live, lut, lut_sm, CODES, r, stride_row, stride_level, COUNT: tl.constexpr,
                LAYOUT_W: tl.constexpr, WORDS: tl.constexpr):
    """_add_levels over sub-quantizers 0 .. COUNT-1 in a loop the compiler keeps rolled: same additions
    in the same order; the seed's copy of a full unrolled scan (and its sorts) took ~50 s to compile."""
    if WORDS:
        codes32 = CODES.to(tl.pointer_type(tl.int32))
        for m in range(0, COUNT, 4):
            w = tl.load(codes32 + (r * stride_row + (m // LAYOUT_W) * stride_level + (m % LAYOUT_W)) // 4,
                        mask=live, other=0)
            for b in tl.static_range(4):
                s += tl.load(lut + (m + b) * lut_sm + ((w >> (8 * b)) & 0xFF), mask=live, other=0.0)
    else:
        for m in range(COUNT):
            c = tl.load(CODES + r * stride_row + (m // LAYOUT_W) * stride_level + (m % LAYOUT_W), mask=live, other=0)
            s += tl.load(lut + m * lut_sm + c.to(tl.int32), mask=live, other=0.0)
    return s


@triton.jit
def _level_norms(Q, qi, d, DL: tl.constexpr, LP: tl.constexpr, BLOCK_D: tl.constexpr):
    """(LP,) suffix norms ||q[l DL:]|| of query qi for levels l = 0 .. LP-1 (0 past the last level)."""
    dims = tl.arange(0, BLOCK_D)
    x = tl.load(Q + qi.to(tl.int64) * d + dims, mask=dims < d, other=0.0)
    lv = tl.arange(0, LP)
    return tl.sqrt(tl.sum(tl.where(dims[None, :] >= (lv * DL)[:, None], (x * x)[None, :], 0.0), 1))


@triton.jit
def _pq_tiles_seeded(LUT, CODES, INIT, TAILS, Q, CT, STARTS, SIZES, PROBE, OFF, BEFORE, LABELS, MASK, THR,
                     STATS, OUT, W, width, max_codes, coef, lut_sq, lut_sm, stride_row, stride_level, span, d,
                     L: tl.constexpr, ML: tl.constexpr, DL: tl.constexpr, LP: tl.constexpr, BLOCK_D: tl.constexpr,
                     LAYOUT_W: tl.constexpr, LISTS: tl.constexpr, SEED: tl.constexpr, KTH: tl.constexpr,
                     HAS_THR: tl.constexpr, HAS_MASK: tl.constexpr, HAS_MAXC: tl.constexpr, WORDS: tl.constexpr,
                     BLOCK_N: tl.constexpr):
    """Program (query, span of its row): threshold = max(THR (HAS_THR), k-th best of the first rows of
    the nearest list (SEED)); every tile of the span pruned level by level against it, no compaction."""
    qi = tl.program_id(0)
    o0, o1, ends = _group(qi, W, PROBE, OFF, SIZES, 0, W, LISTS)
    j0 = o0 + tl.program_id(1) * span
    j_end = tl.minimum(o1, j0 + span)
    if j0 < j_end:  # spans past the query's last row do nothing (not even the seed)
        out = OUT + qi.to(tl.int64) * width
        lut = LUT + qi.to(tl.int64) * lut_sq
        ar = tl.arange(0, BLOCK_N)
        lvs = tl.arange(0, LP)
        qt = coef * _level_norms(Q, qi, d, DL, LP, BLOCK_D)  # coef ||q_tail|| per level
        best = tl.full([BLOCK_N], float("-inf"), tl.float32)
        thr = tl.max(best, 0)
        if HAS_THR:
            thr = tl.load(THR + qi)
        if SEED:  # the nearest list (column 0) in full: k of its exact scores bound the final k-th best
            # (its first SEED_TILES tiles: every program repeats the seed, and a long nearest list, e.g.
            # 10k rows at 1M x 128 IVF1024, would cost each program far more than its own span)
            e0 = tl.minimum(tl.minimum(o1, o0 + SEED_TILES * BLOCK_N),
                            tl.load(OFF + qi * W) + tl.load(SIZES + tl.load(PROBE + qi * W)))
            s0 = o0
            while s0 < e0:
                js = s0 + ar
                rs, ls, ss = _tile(js, qi, W, 0, ends, PROBE, OFF, STARTS, CT, INIT, BEFORE, LABELS, MASK,
                                   max_codes, e0, HAS_MASK, HAS_MAXC)
                ss = _add_looped(ss, ls, lut, lut_sm, CODES, rs, stride_row, stride_level, L * ML, LAYOUT_W, WORDS)
                best = tl.maximum(best, tl.where(ls, ss, float("-inf")))  # lane-wise: distinct rows' scores
                s0 += BLOCK_N
            for _ in range(KTH):  # drop the KTH largest (ties at once: what is left stays a lower bound)
                best = tl.where(best == tl.max(best, 0), float("-inf"), best)
            thr = tl.maximum(thr, tl.max(best, 0))
        thr_mag = tl.abs(thr)  # -inf: the slack is +inf and keeps every row
        q0 = tl.sum(tl.where(lvs == 0, qt, 0.0), 0)
        n_rows = 0
        scanned = 0
        while j0 < j_end:
            j = j0 + ar
            r, live, s = _tile(j, qi, W, 0, ends, PROBE, OFF, STARTS, CT, INIT, BEFORE, LABELS, MASK, max_codes, o1,
                               HAS_MASK, HAS_MAXC)
            n_rows += tl.sum(live.to(tl.int32), 0)
            # allowance relative to every term's magnitude (the table terms sum to at most coef q0 y0)
            slack = _REL_SLACK * (tl.abs(s) + q0 * tl.load(TAILS + r * L, mask=live, other=0.0).to(tl.float32)
                                  + thr_mag) + 1e-30
            s, live, scanned = _prune_levels(s, live, slack, thr, qt, lvs, lut, lut_sm, CODES, TAILS, r, stride_row,
                                             stride_level, scanned, 0, L, ML, LAYOUT_W, WORDS)
            live = live & (s + slack >= thr)
            tl.store(out + j, tl.where(live, s, float("-inf")), mask=j < o1)
            j0 += BLOCK_N
        tl.atomic_add(STATS, scanned.to(tl.int64))
        tl.atomic_add(STATS + 1, (n_rows * L).to(tl.int64))


def pq_scan_pruned(out, tables, codes, init, ct, starts, sizes, probe, off, *, tails, coef, stats, cols,
                   qtail=None, q=None, k=None, thr=None, before=None, max_codes=0, labels=None, mask=None,
                   surv=None, span=0):
    """pq_scan's scores (same layout and arguments), rows whose bound falls below the threshold -inf.

    tails (rows, L) suffix norms of the stored residuals; coef 2 (l2) or 1 (ip); stats (2,) int64
    accumulating [levels scanned, levels of the rows visited].
    span > 0 (small batches, (query, span) programs): q (nq, d) the transformed queries; thresholds
    from thr (nq,) when given and, for k <= SEED_MAX_K, each query's nearest list (column c0).
    span 0: qtail (nq, L) query suffix norms; k (<= RUNNING_MAX_K): the running top-k scan of every
    column, with surv (2, nq, width) int32 scratch; else thr, one wave pruned against it."""
    nq = probe.shape[0]
    c0, c1 = cols
    L = tails.shape[1]
    M = tables.shape[0]
    probe_w, off_w, ct_w, before_w = wave_args(probe, off, ct, before, cols)
    args = (labels if labels is not None else probe, mask.view(torch.uint8) if mask is not None else out)
    strides = (tables.stride(1), tables.stride(0), codes.stride(0), codes.stride(1) if codes.dim() == 3 else 0)
    common = code_layout(codes, labels, mask, out, before)
    if span:
        block, warps = SPLIT
        span = triton.cdiv(span, block) * block
        seed = k is not None and k <= SEED_MAX_K
        d = q.shape[1]
        _pq_tiles_seeded[(nq, triton.cdiv(out.shape[1], span))](
            tables, codes, init, tails, q, ct_w, starts, sizes, probe_w, off_w, before_w, *args,
            thr if thr is not None else out, stats, out, c1 - c0, out.shape[1], max_codes, float(coef), *strides,
            span, d, L=L, ML=M // L, DL=d // L, LP=triton.next_power_of_2(L), BLOCK_D=triton.next_power_of_2(d),
            LISTS=triton.next_power_of_2(c1 - c0), SEED=seed, KTH=(k - 1) if seed else 0, HAS_THR=thr is not None,
            BLOCK_N=block, num_warps=warps, **common)
        return out
    running = k is not None
    block, warps, lists = RUNNING if running else WAVES
    grid = (nq,) if running else (nq, triton.cdiv(c1 - c0, lists))
    _pq_scan_pruned[grid](tables, codes, init, tails, qtail, ct_w, starts, sizes, probe_w, off_w, before_w, *args,
                          thr if thr is not None else out, stats, out, surv[0], surv[1], c1 - c0, out.shape[1],
                          max_codes, float(coef), *strides, L=L, ML=M // L, LP=triton.next_power_of_2(L), LISTS=lists, RUNNING=running,
                          KTH=(k - 1) if running else 0, BLOCK_N=block, num_warps=warps, **common)
    return out
