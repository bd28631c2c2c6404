"""Array helpers. Input coercion shared by the standalone codecs (ProductQuantizer, PanoramaTransform):
numpy or torch in, float32 (n, d) tensor on the codec's device, and whether to hand numpy back (as
Faiss does); row gathers for the scans."""
from __future__ import annotations

import numpy as np
import torch


def float_rows(x, d: int, device, name: str = "x") -> tuple[torch.Tensor, bool]:
    was_numpy = isinstance(x, np.ndarray)
    if was_numpy:
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"{name} must hold numbers, got numpy dtype {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a numpy array or torch tensor of shape (n, {d}), got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"{name} must have shape (n, {d}), got {tuple(x.shape)}")
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be a real float array, got {x.dtype}")
    return x.to(device, torch.float32), was_numpy


def back(t: torch.Tensor, was_numpy: bool):
    return t.cpu().numpy() if was_numpy else t


def take_rows(t: torch.Tensor, pos) -> torch.Tensor:
    """t[pos] for a slice or an index tensor of any shape; index_select, which on CPUs is several
    times faster than advanced indexing for the row gathers of a scan."""
    if isinstance(pos, slice):
        return t[pos]
    return t.index_select(0, pos.reshape(-1)).view(*pos.shape, *t.shape[1:])
