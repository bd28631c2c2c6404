"""Triton scans of PQ codes straight from the slab, into a compact (query, candidate) score layout.

The rows a query probes sit back to back in its score row (list after list, in coarse order); tiles of
BLOCK_N rows run across list boundaries, so short lists (tens of rows at nlist ~ 4 sqrt(n)) do not
leave most lanes idle.

``_pq_scan`` (IndexIVFPQ): one program per query and group of LISTS lists; per sub-quantizer, load the
rows' codes and add the query's table entries, in the fixed order m = 0 .. M-1.

IndexIVFPQPanorama's pruned scans (pq_panorama.py) reuse the helpers below; a surviving row gets
exactly these additions, in this order, so both return bitwise the same scores.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# (rows per tile, warps, probed lists per program) at their best of the settings timed
# (benchmarks/pq/gpu_profile.py --sweep): the plain scan wants wide tiles.
PLAIN = (128, 4, 16)
SPLIT = (64, 4)  # small batches' (query, row span) programs: rows per tile, warps


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


def wave_args(probe, off, ct, before, cols):
    """The columns c0:c1 of the per-(query, probed list) inputs, contiguous (the kernels index them
    (query, column)); before defaults to probe (an unused pointer)."""
    c0, c1 = cols
    return (probe[:, c0:c1].contiguous(), off[:, c0:c1].contiguous(), ct[:, c0:c1].contiguous(),
            before[:, c0:c1].contiguous() if before is not None else probe)


def code_layout(codes, labels, mask, out, before) -> dict:
    """Constexprs and pointers the scans share: code layout, filter, max_codes, 32-bit code loads."""
    # 32-bit code loads where every code group of 4 is 4-byte aligned (M, or M / levels, divisible by 4)
    words = codes.shape[-1] % 4 == 0 and codes.data_ptr() % 4 == 0 and all(st % 4 == 0 for st in codes.stride()[:-1])
    return dict(LAYOUT_W=codes.shape[-1], HAS_MASK=mask is not None, HAS_MAXC=before is not None, WORDS=words)


def pq_scan(out, tables, codes, init, ct, starts, sizes, probe, off, *, cols, before=None, max_codes=0,
            labels=None, mask=None, span=0):
    """Scores of probe columns ``cols`` = (c0, c1) into out (nq, width), a compact layout: the rows of
    pair (q, c) start at off[q, c] (off (nq, nprobe)). Rows filtered out or past max_codes get -inf;
    out must start as -inf.

    tables (M, nq, ksub) fp32 look-up tables (any strides with unit stride along ksub); codes (rows, M)
    or the level-major (rows, L, M/L) view; init (rows,); ct (nq, nprobe) coarse terms; before
    (nq, nprobe) candidates of earlier probes (max_codes only). span > 0: programs over (query, span
    rows of its row) instead of (query, group of lists), so one query spreads over many programs."""
    nq = probe.shape[0]
    c0, c1 = cols
    probe_w, off_w, ct_w, before_w = wave_args(probe, off, ct, before, cols)
    args = (labels if labels is not None else probe, mask.view(torch.uint8) if mask is not None else out)
    strides = (tables.stride(1), tables.stride(0), codes.stride(0), codes.stride(1) if codes.dim() == 3 else 0)
    if span:
        block, warps = SPLIT
        span = triton.cdiv(span, block) * block
        lists = triton.next_power_of_2(c1 - c0)  # one group: every list of the columns
        grid = (nq, triton.cdiv(out.shape[1], span))
    else:
        block, warps, lists = PLAIN
        grid = (nq, triton.cdiv(c1 - c0, lists))
    _pq_scan[grid](tables, codes, init, ct_w, starts, sizes, probe_w, off_w, before_w, *args, out, c1 - c0,
                   out.shape[1], max_codes, *strides, span, M=tables.shape[0], LISTS=lists, SPLIT=span > 0,
                   BLOCK_N=block, num_warps=warps, **code_layout(codes, labels, mask, out, before))
    return out
