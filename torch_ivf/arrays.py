"""Array helpers: the checks every entry point shares (argument ints, float rows, labels), so a bad
argument is refused the same way everywhere and before anything changes; row gathers for the scans."""
from __future__ import annotations

import math

import numpy as np
import torch

F32_MAX = float(torch.finfo(torch.float32).max)
# Squared norms up to this keep every float32 dot product, squared norm and squared distance of two
# such vectors finite (||q - x||^2 <= 2||q||^2 + 2||x||^2, with room for the 2q.x - ||x||^2 terms).
MAX_SQUARED_NORM = F32_MAX / 8


def positive_int(value, name: str) -> int:
    """A size or count argument (d, nlist, M, k, nprobe, ...): a Python or numpy int >= 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def non_negative_int(value, name: str) -> int:
    """A limit where 0 means none (max_codes): a Python or numpy int >= 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative int (0 = unlimited), got {value!r}")
    return int(value)


def whole(value, name: str, minimum: int | None = None) -> int:
    """An integer argument (a label, an offset): float, str and bool are refused with TypeError rather
    than truncated; below ``minimum``: ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def float_rows(x, d: int, device, name: str = "x", *, one_row: bool = False, defer: bool = False):
    """(float32 (n, d) tensor on device, whether x was numpy), for numpy or torch input of any real
    dtype. Gradients are dropped (vectors straight from a model); complex, bool, object and string
    arrays are refused (TypeError), as are NaN, Inf and magnitudes whose squared norms float32 cannot
    hold (ValueError). ``one_row``: a (d,) vector is taken as one row. ``defer``: a third item, the
    magnitude check to call later (None when done already), see check_magnitude."""
    was_numpy = isinstance(x, np.ndarray)
    if was_numpy:
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"{name} must hold numbers (real), got numpy dtype {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a numpy array or torch tensor of shape (n, {d}), got {type(x).__name__}")
    if one_row and x.ndim == 1 and x.shape[0] == d:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"{name} must have shape (n, {d}), got {tuple(x.shape)}")
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be a real float array, got {x.dtype}")
    x = x.detach().to(device, torch.float32)
    pending = check_magnitude(x, name, defer=defer)
    return (x, was_numpy, pending) if defer else (x, was_numpy)


def check_magnitude(x: torch.Tensor, name: str = "x", *, defer: bool = False):
    """ValueError for NaN / Inf or a row whose squared norm exceeds MAX_SQUARED_NORM (its distances
    would overflow to Inf / NaN and rank first). One reduction in the common case.

    ``defer`` (GPU tensors): the reduction is queued and a function that finishes the check is
    returned instead, so a search can queue its work before the one wait for the device (reading
    the peak waited ~20 us before every small GPU search); None where nothing is left to check."""
    if not x.numel():
        return None
    peak = x.abs().amax()  # NaN propagates through amax
    if defer and x.device.type != "cpu":
        return lambda: _check_peak(x, float(peak), name)
    _check_peak(x, float(peak), name)
    return None


def _check_peak(x: torch.Tensor, peak: float, name: str) -> None:
    if peak * peak * x.shape[1] <= MAX_SQUARED_NORM:
        return
    if not math.isfinite(peak):
        raise ValueError(f"{name} contains NaN or Inf")
    norms = x.double().pow(2).sum(1)
    over = torch.nonzero(norms > MAX_SQUARED_NORM).flatten()
    if over.numel():
        row = int(over[0])
        raise ValueError(f"{name} row {row} has squared norm {float(norms[row]):.3g}, beyond the {MAX_SQUARED_NORM:.3g} "
                         "that float32 distances can hold; scale the vectors down")


def label_tensor(ids, device, name: str = "ids") -> torch.Tensor:
    """int64 (n,) tensor of labels from an integer array, tensor or sequence of ints (floats, bools
    and objects refused with TypeError)."""
    if isinstance(ids, torch.Tensor):
        if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
            raise TypeError(f"{name} must be integers (an int64 array or tensor), got dtype {ids.dtype}")
        return ids.detach().reshape(-1).to(device=device, dtype=torch.int64)
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{name} must be an int64 array or tensor, got {type(ids).__name__}")
    if not isinstance(ids, np.ndarray) and np.ndim(ids) == 0:
        ids = [ids]
    arr = np.asarray(ids)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be integers (an int64 array or tensor), got dtype {arr.dtype}")
    if arr.size and arr.dtype == np.uint64 and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} must fit int64, got {int(arr.max())}")
    return torch.as_tensor(arr.astype(np.int64).reshape(-1), device=device)


def back(t: torch.Tensor, was_numpy: bool):
    return t.cpu().numpy() if was_numpy else t


def take_rows(t: torch.Tensor, pos) -> torch.Tensor:
    """t[pos] for a slice or an index tensor of any shape; index_select, which on CPUs is several
    times faster than advanced indexing for the row gathers of a scan."""
    if isinstance(pos, slice):
        return t[pos]
    return t.index_select(0, pos.reshape(-1)).view(*pos.shape, *t.shape[1:])
