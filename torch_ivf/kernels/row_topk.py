"""Row-wise top-k for small k in Triton: each program keeps one row in registers and takes k
successive maxima. torch.topk's radix select made up 58% of the H100's time for a 19,600-query
IVF search (rows of ~1,000 scores, k = 10); this reads each row once."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_COLS = 8192
MAX_K = 32


@triton.jit
def _row_topk(X, VALUES, INDICES, n_cols, stride, K: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    x = tl.load(X + row * stride + cols, mask=cols < n_cols, other=float("-inf"))
    for j in tl.static_range(K):
        best = tl.max(x, 0)
        # lowest column holding the maximum (tl.argmax's tie order is not specified)
        at = tl.min(tl.where(x == best, cols, BLOCK), 0)
        tl.store(VALUES + row * K + j, best)
        tl.store(INDICES + row * K + j, tl.minimum(at, n_cols - 1).to(tl.int64))
        x = tl.where(cols == at, float("-inf"), x)


def row_topk(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of the k largest entries of each row of x (..., n), descending."""
    shape = x.shape
    rows = x.reshape(-1, shape[-1]).float()
    if rows.stride(-1) != 1:  # a column slice of a wider matrix is read in place
        rows = rows.contiguous()
    values = torch.empty(rows.shape[0], k, device=x.device, dtype=torch.float32)
    indices = torch.empty(rows.shape[0], k, device=x.device, dtype=torch.int64)
    if rows.shape[0]:
        block = triton.next_power_of_2(shape[-1])
        _row_topk[(rows.shape[0],)](rows, values, indices, shape[-1], rows.stride(0), K=k, BLOCK=block,
                                    num_warps=4 if block <= 2048 else 8)
    return values.reshape(*shape[:-1], k), indices.reshape(*shape[:-1], k)
