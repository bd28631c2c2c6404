"""Optional Triton fast paths. The pure-torch code in torch_ivf.index is the reference and always
runs where Triton is absent (CPUs, DirectML) or disabled (``torch_ivf.kernels.enabled = False``)."""
from __future__ import annotations

import torch

enabled = True

try:  # Triton ships with CUDA and ROCm builds of PyTorch; anything else uses the torch path.
    import triton  # noqa: F401
    _HAVE_TRITON = True
except ImportError:  # pragma: no cover - depends on the install
    _HAVE_TRITON = False


def available(device: torch.device) -> bool:
    return enabled and _HAVE_TRITON and device.type == "cuda"


def dot_precision(preferred: str) -> str:
    """tl.dot input precision for this build: Triton's AMD backend has no TF32 products (tf32x3
    included), so ROCm gets IEEE float32 dots, the same float32-level accuracy."""
    return "ieee" if torch.version.hip and preferred.startswith("tf32") else preferred


def topk(x: torch.Tensor, k: int):
    """torch.topk over the last dim (values, indices), with a Triton fast path for small k."""
    if available(x.device) and k <= 32 and x.shape[-1] <= 8192:
        from .row_topk import row_topk
        return row_topk(x, k)
    top = x.topk(k, dim=-1)
    return top.values, top.indices


def topk_rows(x: torch.Tensor, rows: torch.Tensor, k: int):
    """(values, rows at the top-k entries of each row of x as int64, 0 where a value is -inf): a
    kernel scan's second stage, gather included (one launch on the Triton path)."""
    if available(x.device) and k <= 32:  # any width: rows past 8,192 columns take two passes
        from .row_topk import row_topk
        return row_topk(x, k, rows)
    values, idx = topk(x, k)
    return values, torch.where(torch.isneginf(values), 0, rows.gather(-1, idx).long())
