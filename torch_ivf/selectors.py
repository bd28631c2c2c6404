"""Faiss's ID selectors: which labels a search may return or remove_ids drops. ``select(labels)`` says
which of the given (stored) labels are selected, allocating by their count, never by the label values
(hashed 64-bit ids sit near 2**62); ``mask(size)`` is the bool mask over labels [0, size)."""
from __future__ import annotations

import numpy as np
import torch


def members(labels: torch.Tensor, chosen: torch.Tensor, bound: int | None = None) -> torch.Tensor:
    """Bool like ``labels``: which are in ``chosen`` (int64). A dense table where the labels (known to
    lie in [0, bound)) or chosen's range are small, else a sorted search: memory by the counts, not by
    the label values."""
    if chosen.numel() == 0 or labels.numel() == 0:
        return torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    chosen = chosen.to(labels.device)
    if bound is not None and bound <= _dense_limit(labels.numel()):  # one gather, as a label mask costs
        table = torch.zeros(bound, dtype=torch.bool, device=labels.device)
        table[chosen[(chosen >= 0) & (chosen < bound)]] = True
        return table.index_select(0, labels.reshape(-1)).view(labels.shape)
    lo, hi = int(chosen.min()), int(chosen.max())
    if hi - lo < _dense_limit(labels.numel() + chosen.numel()):
        table = torch.zeros(hi - lo + 1, dtype=torch.bool, device=labels.device)
        table[chosen - lo] = True
        inside = (labels >= lo) & (labels <= hi)
        return inside & table[(labels - lo).clamp(0, hi - lo)]
    keys = torch.sort(chosen).values
    at = torch.searchsorted(keys, labels).clamp_max(keys.numel() - 1)
    return keys[at] == labels


def _dense_limit(n: int) -> int:
    """Largest label span a dense bool table may cover for n labels (a few bytes per label)."""
    return 4 * n + (1 << 20)


class IDSelector:
    """Base of the label selectors (Faiss's IDSelector): search params' ``sel`` and remove_ids take them."""

    def mask(self, size: int, device) -> torch.Tensor:
        """Bool tensor (size,): True for the selected labels below size."""
        raise NotImplementedError

    def is_member(self, label: int) -> bool:
        """True when ``label`` is selected."""
        raise NotImplementedError

    def select(self, labels: torch.Tensor, bound: int | None = None) -> torch.Tensor:
        """Bool like the int64 tensor ``labels``: which are selected (``bound``: the labels are known
        to lie in [0, bound)). Selectors that only define ``mask`` / ``is_member`` (user subclasses)
        get a dense mask where the labels are small, else one is_member call per distinct label."""
        if labels.numel() == 0:
            return torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
        if bound is not None and bound <= _dense_limit(labels.numel()):
            return self.mask(bound, labels.device).index_select(0, labels.reshape(-1)).view(labels.shape)
        lo, hi = int(labels.min()), int(labels.max())
        if lo >= 0 and hi < _dense_limit(labels.numel()):
            return self.mask(hi + 1, labels.device)[labels]
        distinct, inverse = torch.unique(labels, return_inverse=True)
        picked = torch.tensor([bool(self.is_member(int(v))) for v in distinct.tolist()], dtype=torch.bool)
        return picked.to(labels.device)[inverse]


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
        """True when imin <= label < imax."""
        return self.imin <= int(label) < self.imax

    def select(self, labels, bound=None):
        return (labels >= self.imin) & (labels < self.imax)


class IDSelectorBatch(IDSelector):
    """The labels in ids: ``IDSelectorBatch(ids)``, or Faiss's ``IDSelectorBatch(n, ids)`` (the first n ids).

    Args:
        n_or_ids: the ids (an int array, tensor or sequence), or n when ids follows.
        ids: the ids, in the (n, ids) form.

    Raises:
        TypeError: ids that are not integers.
    """

    def __init__(self, n_or_ids, ids=None):
        n, ids = (None, n_or_ids) if ids is None else (int(n_or_ids), ids)
        if ids is None or isinstance(ids, (str, bytes)):
            raise TypeError("IDSelectorBatch takes ids (an int array) or (n, ids)")
        self.ids = torch.as_tensor(np.asarray(ids).reshape(-1)[:n])
        if self.ids.numel() and (self.ids.is_floating_point() or self.ids.dtype == torch.bool):
            raise TypeError(f"ids must be integers, got {self.ids.dtype}")
        self.ids = self.ids.to(torch.int64)

    def mask(self, size, device):
        m = torch.zeros(size, dtype=torch.bool, device=device)
        ids = self.ids[(self.ids >= 0) & (self.ids < size)].to(device)
        m[ids] = True
        return m

    def is_member(self, label):
        """True when ``label`` is one of the ids."""
        return bool((self.ids == int(label)).any())

    def select(self, labels, bound=None):
        return members(labels, self.ids, bound)


IDSelectorArray = IDSelectorBatch  # Faiss's sorted-array variant: the same selection


class IDSelectorNot(IDSelector):
    """The labels ``sel`` does not select."""

    def __init__(self, sel: IDSelector):
        self.sel = _check(sel)

    def mask(self, size, device):
        return ~self.sel.mask(size, device)

    def is_member(self, label):
        """True when ``label`` is not selected by sel."""
        return not self.sel.is_member(label)

    def select(self, labels, bound=None):
        return ~self.sel.select(labels, bound)


class IDSelectorAnd(IDSelector):
    """The labels both ``lhs`` and ``rhs`` select."""

    def __init__(self, lhs: IDSelector, rhs: IDSelector):
        self.lhs, self.rhs = _check(lhs), _check(rhs)

    def mask(self, size, device):
        return self.lhs.mask(size, device) & self.rhs.mask(size, device)

    def is_member(self, label):
        """True when both selectors select ``label``."""
        return self.lhs.is_member(label) and self.rhs.is_member(label)

    def select(self, labels, bound=None):
        return self.lhs.select(labels, bound) & self.rhs.select(labels, bound)


class IDSelectorOr(IDSelector):
    """The labels ``lhs`` or ``rhs`` (or both) select."""

    def __init__(self, lhs: IDSelector, rhs: IDSelector):
        self.lhs, self.rhs = _check(lhs), _check(rhs)

    def mask(self, size, device):
        return self.lhs.mask(size, device) | self.rhs.mask(size, device)

    def is_member(self, label):
        """True when either selector selects ``label``."""
        return self.lhs.is_member(label) or self.rhs.is_member(label)

    def select(self, labels, bound=None):
        return self.lhs.select(labels, bound) | self.rhs.select(labels, bound)


def _check(sel) -> IDSelector:
    if not isinstance(sel, IDSelector):
        raise TypeError(f"sel must be an IDSelector, got {type(sel).__name__}")
    return sel
