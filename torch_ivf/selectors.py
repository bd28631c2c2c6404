"""Faiss's ID selectors: which labels a search may return or remove_ids drops. Each turns into a bool
mask over labels [0, size), the form the scans filter with."""
from __future__ import annotations

import numpy as np
import torch


class IDSelector:
    def mask(self, size: int, device) -> torch.Tensor:
        """Bool tensor (size,): True for the selected labels below size."""
        raise NotImplementedError

    def is_member(self, label: int) -> bool:
        raise NotImplementedError


class IDSelectorRange(IDSelector):
    """Labels imin <= label < imax."""

    def __init__(self, imin: int, imax: int):
        for name, v in (("imin", imin), ("imax", imax)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        self.imin, self.imax = int(imin), int(imax)

    def mask(self, size, device):
        m = torch.zeros(size, dtype=torch.bool, device=device)
        m[max(self.imin, 0):max(min(self.imax, size), 0)] = True
        return m

    def is_member(self, label):
        return self.imin <= int(label) < self.imax


class IDSelectorBatch(IDSelector):
    """The labels in ids (Faiss's IDSelectorBatch(n, ids) or IDSelectorBatch(ids))."""

    def __init__(self, *args):
        ids = args[-1] if len(args) in (1, 2) else None
        if ids is None or isinstance(ids, (str, bytes)):
            raise TypeError("IDSelectorBatch takes ids (an int array) or (n, ids)")
        self.ids = torch.as_tensor(np.asarray(ids).reshape(-1)[: args[0] if len(args) == 2 else None])
        if self.ids.numel() and (self.ids.is_floating_point() or self.ids.dtype == torch.bool):
            raise TypeError(f"ids must be integers, got {self.ids.dtype}")
        self.ids = self.ids.to(torch.int64)

    def mask(self, size, device):
        m = torch.zeros(size, dtype=torch.bool, device=device)
        ids = self.ids[(self.ids >= 0) & (self.ids < size)].to(device)
        m[ids] = True
        return m

    def is_member(self, label):
        return bool((self.ids == int(label)).any())


IDSelectorArray = IDSelectorBatch  # Faiss's sorted-array variant: the same selection


class IDSelectorNot(IDSelector):
    def __init__(self, sel: IDSelector):
        self.sel = _check(sel)

    def mask(self, size, device):
        return ~self.sel.mask(size, device)

    def is_member(self, label):
        return not self.sel.is_member(label)


class IDSelectorAnd(IDSelector):
    def __init__(self, lhs: IDSelector, rhs: IDSelector):
        self.lhs, self.rhs = _check(lhs), _check(rhs)

    def mask(self, size, device):
        return self.lhs.mask(size, device) & self.rhs.mask(size, device)

    def is_member(self, label):
        return self.lhs.is_member(label) and self.rhs.is_member(label)


class IDSelectorOr(IDSelector):
    def __init__(self, lhs: IDSelector, rhs: IDSelector):
        self.lhs, self.rhs = _check(lhs), _check(rhs)

    def mask(self, size, device):
        return self.lhs.mask(size, device) | self.rhs.mask(size, device)

    def is_member(self, label):
        return self.lhs.is_member(label) or self.rhs.is_member(label)


def _check(sel) -> IDSelector:
    if not isinstance(sel, IDSelector):
        raise TypeError(f"sel must be an IDSelector, got {type(sel).__name__}")
    return sel
