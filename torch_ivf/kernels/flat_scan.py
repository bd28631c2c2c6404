"""Triton scan of flat codes for the padded (query, probed list, row) layout.

Each program scores BLOCK_N rows of one probed list for one query, reading the vectors straight
from the slab: the torch path first gathers them into a (nq, nprobe * maxlen, d) copy, which is
what limits it for small batches. Scores follow FlatCodes' form: scale * q.v - bias + pair.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _flat_scan(Q, X, BIAS, PAIR, STARTS, SIZES, PROBE, BEFORE, LABELS, MASK, OUT,
               P, maxlen, d, max_codes, stride_q, stride_x,
               SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_PAIR: tl.constexpr,
               HAS_MASK: tl.constexpr, HAS_MAXC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pair = tl.program_id(0)
    tile = tl.program_id(1)
    qi = pair // P
    lst = tl.load(PROBE + pair)
    size = tl.load(SIZES + lst)
    row0 = tile * BLOCK_N
    if row0 < size:
        start = tl.load(STARTS + lst)
        rows = row0 + tl.arange(0, BLOCK_N)
        live = rows < size
        if HAS_MAXC:
            live = live & (tl.load(BEFORE + pair) + rows < max_codes)
        acc = tl.zeros([BLOCK_N], dtype=tl.float32)
        for d0 in range(0, d, BLOCK_D):
            cols = d0 + tl.arange(0, BLOCK_D)
            cm = cols < d
            q = tl.load(Q + qi * stride_q + cols, mask=cm, other=0.0).to(tl.float32)
            x = tl.load(X + (start + rows)[:, None] * stride_x + cols[None, :],
                        mask=live[:, None] & cm[None, :], other=0.0).to(tl.float32)
            acc += tl.sum(x * q[None, :], axis=1)
        s = acc * SCALE
        if HAS_BIAS:
            s -= tl.load(BIAS + start + rows, mask=live, other=0.0)
        if HAS_PAIR:
            s += tl.load(PAIR + pair)
        if HAS_MASK:
            lab = tl.load(LABELS + start + rows, mask=live, other=0)
            live = live & (tl.load(MASK + lab, mask=live, other=0) != 0)
        s = tl.where(live, s, float("-inf"))
        tl.store(OUT + pair * maxlen + rows, s, mask=rows < maxlen)


def flat_scan_padded(q, vectors, bias, pair, starts, sizes, probe, before, labels, mask, max_codes, maxlen, scale):
    """Scores (nq, nprobe * maxlen), -inf where a row is absent, filtered out or past max_codes."""
    nq, P = probe.shape
    d = q.shape[1]
    out = torch.full((nq, P * maxlen), float("-inf"), device=q.device, dtype=torch.float32)
    dummy = out  # placeholder pointer for disabled inputs
    block_d = min(128, triton.next_power_of_2(d))
    grid = (nq * P, triton.cdiv(maxlen, 64))
    _flat_scan[grid](
        q, vectors, bias if bias is not None else dummy, pair if pair is not None else dummy,
        starts, sizes, probe.contiguous(), before if before is not None else probe,
        labels, mask.view(torch.uint8) if mask is not None else dummy, out,
        P, maxlen, d, max_codes, q.stride(0), vectors.stride(0),
        SCALE=scale, HAS_BIAS=bias is not None, HAS_PAIR=pair is not None,
        HAS_MASK=mask is not None, HAS_MAXC=before is not None, BLOCK_N=64, BLOCK_D=block_d,
    )
    return out
