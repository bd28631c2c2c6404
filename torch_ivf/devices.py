"""Which torch device an index, collection or store runs on, checked before any work starts.

A device that this torch build or machine lacks fails here with the device's name and the fix, not
later as an assertion deep in the index (after minutes of embedding, for a store).
"""

from __future__ import annotations

from typing import Any

import torch


def default_device() -> str:
    """"cuda" when a CUDA or ROCm GPU is usable, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _available(dev: torch.device) -> tuple[bool, str]:
    if dev.type == "cpu":
        return True, ""
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = "a CPU-only build" if torch.version.cuda is None and getattr(torch.version, "hip", None) is None \
                else "no visible GPU"
            return False, f"torch {torch.__version__} has {build}"
        if dev.index is not None and dev.index >= count:
            return False, f"only {count} CUDA device(s) are visible (cuda:0..cuda:{count - 1})"
        return True, ""
    if dev.type == "mps":
        return torch.backends.mps.is_available(), "MPS is not available in this torch build or machine"
    backend = getattr(torch, dev.type, None)
    if backend is not None and hasattr(backend, "is_available"):
        return bool(backend.is_available()), f"torch.{dev.type}.is_available() is False"
    try:
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as exc:
        return False, str(exc).splitlines()[0]
    return True, ""


def resolve_device(device: Any, default: str | None = None) -> torch.device:
    """``device`` as a torch.device, checked to exist on this machine.

    Args:
        device: "cpu", "cuda", "cuda:1", "mps", a torch.device, or None.
        default: the device None stands for; None picks the GPU when one is usable.

    Raises:
        ValueError: an unknown device name, or a device this torch build or machine lacks (named,
            with the fix).
        TypeError: device is not a str, torch.device or None.
    """
    if device is None:
        return torch.device(default or default_device())
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a string like 'cpu' or 'cuda:0', a torch.device or None, "
                        f"got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"device {device!r} is not a torch device name ('cpu', 'cuda', 'cuda:1', 'mps', ...)") from exc
    ok, why = _available(dev)
    if not ok:
        fallback = "device='cpu' (the default)" if default == "cpu" else \
            "device='cpu', or device=None to use the GPU when there is one"
        raise ValueError(f"device {str(device)!r} is not available: {why}. Pass {fallback}; for a GPU, "
                         "install a CUDA or ROCm build of torch (https://pytorch.org/get-started/locally/)")
    return dev
