"""Packed inverted lists: every field lives in one slab; list l owns rows [start, start + cap).

Rows [start, start + size) are live, so a list is always one contiguous slice (the grouped scan
reads it without a gather). Appends go into the spare capacity of a list; a full list moves to the
end of the slab with ~3% headroom, so adding a batch costs O(batch) amortized and never re-copies
the whole index. The holes left behind are reclaimed by compaction once they exceed a third.

A field declared level-major (spec ``(shape, dtype, True)``, shape ``(L, width)``) is stored as
``(L, rows, width)`` and exposed as the transposed ``(rows, L, width)`` view: every row operation
below is unchanged, and level j of a list is one contiguous block, so a scan that drops most
candidates after the first levels never reads the later levels of their rows.
"""
from __future__ import annotations

import torch

from .arrays import take_rows

_HEADROOM = 32  # a relocated list gets size/32 + 8 spare rows (memory stays within ~5% of the data)


class InvertedLists:
    def __init__(self, nlist: int, fields: dict[str, tuple[tuple[int, ...], torch.dtype]], device):
        self.nlist = int(nlist)
        self.specs = {n: (spec[0], spec[1]) for n, spec in fields.items()}
        self.specs["labels"] = ((), torch.int64)
        self.level_major = {n for n, spec in fields.items() if len(spec) > 2 and spec[2]}
        self.device = torch.device(device)
        self.reset()

    # ---- bookkeeping -------------------------------------------------------------------------
    def reset(self) -> None:
        self.data = {n: self._alloc(n, 0) for n in self.specs}
        self.starts = torch.zeros(self.nlist, dtype=torch.int64)  # host copies: the grouped scan slices with them
        self.sizes = torch.zeros(self.nlist, dtype=torch.int64)
        self.caps = torch.zeros(self.nlist, dtype=torch.int64)
        self.used = 0
        self._changed()

    def _alloc(self, name: str, rows: int) -> torch.Tensor:
        shape, dtype = self.specs[name]
        if name in self.level_major:
            return torch.empty((shape[0], rows, *shape[1:]), dtype=dtype, device=self.device).transpose(0, 1)
        return torch.empty((rows, *shape), dtype=dtype, device=self.device)

    def _changed(self) -> None:
        self._device_meta = None
        self._live = None  # caches of live_positions() and locate(), rebuilt on first use
        self._by_label = None
        self.version = getattr(self, "version", 0) + 1  # cached search graphs key on this
        self.ntotal = int(self.sizes.sum())
        self.max_size = int(self.sizes.max()) if self.nlist else 0

    def device_meta(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(starts, sizes) on the device, cached so small searches need no host transfer."""
        if self._device_meta is None:
            self._device_meta = (self.starts.to(self.device), self.sizes.to(self.device))
        return self._device_meta

    @property
    def rows(self) -> int:
        return self.data["labels"].shape[0]

    def live_positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Slab row of every stored vector in list order, and the list each belongs to (cached)."""
        if self._live is None:
            lists = torch.repeat_interleave(torch.arange(self.nlist), self.sizes)
            first = torch.cumsum(self.sizes, 0) - self.sizes
            rank = torch.arange(self.ntotal) - first[lists]
            self._live = ((self.starts[lists] + rank).to(self.device), lists.to(self.device))
        return self._live

    def locate(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(found, slab row, list) for each label; rows of labels not stored are meaningless."""
        if self._by_label is None:
            pos, lists = self.live_positions()
            stored = self.data["labels"][pos]
            order = torch.argsort(stored)
            self._by_label = (stored[order], pos[order], lists[order])
        keys, pos, lists = self._by_label
        if len(keys) == 0:
            return torch.zeros(labels.shape, dtype=torch.bool, device=labels.device), labels, labels
        at = torch.searchsorted(keys, labels).clamp_max(len(keys) - 1)
        return keys[at] == labels, pos[at], lists[at]

    # ---- read API (scanners, codecs and converters read the slab only through these) ----------
    def field(self, name: str) -> torch.Tensor:
        """The whole slab of one field (rows indexed by slab position; kernels take it as is)."""
        return self.data[name]

    def fields(self) -> dict[str, torch.Tensor]:
        """Every field's slab by name (labels included), for kernels that take several."""
        return dict(self.data)

    def nbytes(self) -> int:
        """Bytes held by the slabs (capacity included)."""
        return sum(t.numel() * t.element_size() for t in self.data.values())

    def block(self, name: str, start: int, end: int) -> torch.Tensor:
        """Slab rows [start, end) of one field: a view, no copy."""
        return self.data[name][start:end]

    def gather(self, name: str, pos) -> torch.Tensor:
        """Rows ``pos`` (a tensor of any shape, or a slice) of one field, shaped (*pos.shape, *row)."""
        return take_rows(self.data[name], pos)

    def gather_all(self, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every field (labels included) at slab rows pos, as ``append`` takes them."""
        return {n: t[pos] for n, t in self.data.items()}

    def labels_at(self, pos) -> torch.Tensor:
        return take_rows(self.data["labels"], pos)

    def list_size(self, list_no: int) -> int:
        """Faiss's invlists.list_size."""
        return int(self.sizes[list_no])

    def get_ids(self, list_no: int) -> torch.Tensor:
        """Labels stored in one list (Faiss's invlists.get_ids, as a tensor)."""
        start = int(self.starts[list_no])
        return self.data["labels"][start : start + int(self.sizes[list_no])]

    def labels(self) -> torch.Tensor:
        pos, _ = self.live_positions()
        return self.data["labels"][pos]

    def relabel(self, pos: torch.Tensor, labels: torch.Tensor) -> None:
        """Give the vectors at slab rows pos new labels (in place; the label caches are rebuilt)."""
        self.data["labels"][pos] = labels.to(self.device, torch.int64)
        self._changed()

    # ---- growth ------------------------------------------------------------------------------
    def _ensure_rows(self, rows: int) -> None:
        if rows <= self.rows:
            return
        new_rows = max(rows, self.rows + self.rows // 8)
        for name, t in self.data.items():
            grown = self._alloc(name, new_rows)
            grown[: self.used] = t[: self.used]
            self.data[name] = grown

    def _move_rows(self, src: torch.Tensor, dst: torch.Tensor) -> None:
        for t in self.data.values():
            t[dst] = t[src]

    def _ranges(self, starts: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """Concatenated arange(start, start + size) for each pair (host tensors in, device out)."""
        total = int(sizes.sum())
        first = torch.cumsum(sizes, 0) - sizes
        owner = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
        return (starts[owner] + torch.arange(total) - first[owner]).to(self.device)

    def _relocate(self, lists: torch.Tensor, need: torch.Tensor) -> None:
        new_caps = need + need // _HEADROOM + 8
        new_starts = self.used + torch.cumsum(new_caps, 0) - new_caps
        self._ensure_rows(self.used + int(new_caps.sum()))
        self._move_rows(self._ranges(self.starts[lists], self.sizes[lists]),
                        self._ranges(new_starts, self.sizes[lists]))
        self.used += int(new_caps.sum())
        self.starts[lists] = new_starts
        self.caps[lists] = new_caps

    def compact(self) -> None:
        """Rewrite the slab with lists back to back (sizes + headroom), dropping holes."""
        caps = self.sizes + self.sizes // _HEADROOM + 8 * (self.sizes > 0)
        starts = torch.cumsum(caps, 0) - caps
        src = self._ranges(self.starts, self.sizes)
        dst = self._ranges(starts, self.sizes)
        total = int(caps.sum())
        for name, t in self.data.items():
            fresh = self._alloc(name, total)
            fresh[dst] = t[src]
            self.data[name] = fresh
        self.starts, self.caps, self.used = starts, caps, total
        self._changed()

    # ---- mutation ----------------------------------------------------------------------------
    def reserve(self, counts: torch.Tensor) -> None:
        """Make room for ``counts[l]`` more rows in each list l in one relocation, so that appends of
        that many rows (in any number of batches) move nothing: a streamed add then costs one slab
        and no repeated list moves."""
        need = self.sizes + counts.to(torch.int64).cpu()
        full = torch.nonzero(need > self.caps).flatten()
        if len(full):
            self._relocate(full, need[full])
            self._changed()

    def append(self, list_ids: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        """Append rows; values must hold every field (labels included), each with len(list_ids) rows."""
        n = list_ids.shape[0]
        if n == 0:
            return
        counts = torch.bincount(list_ids, minlength=self.nlist).cpu()
        need = self.sizes + counts
        full = torch.nonzero(need > self.caps).flatten()
        if len(full):
            self._relocate(full, need[full])
        order = torch.argsort(list_ids, stable=True)
        sorted_lists = list_ids[order]
        first = (torch.cumsum(counts, 0) - counts).to(self.device)
        rank = torch.arange(n, device=self.device) - first[sorted_lists]
        starts, sizes = self.starts.to(self.device), self.sizes.to(self.device)
        dst = starts[sorted_lists] + sizes[sorted_lists] + rank
        for name, t in self.data.items():
            t[dst] = values[name][order].to(t.dtype)
        self.sizes = need
        self._changed()
        if self.used - int(self.caps.sum()) > 2 * max(self.ntotal, 1024):  # holes, not room reserved ahead
            self.compact()

    def remove(self, drop: torch.Tensor) -> int:
        """Drop live rows where ``drop`` (bool over live_positions order) is True; lists stay packed."""
        pos, lists = self.live_positions()
        keep = ~drop
        removed = int(drop.sum())
        if removed == 0:
            return 0
        kept_pos, kept_lists = pos[keep], lists[keep]
        new_sizes = torch.bincount(kept_lists.cpu(), minlength=self.nlist)
        dst = self._ranges(self.starts, new_sizes)
        self._move_rows(kept_pos, dst)  # dst <= src inside each list; the gather is taken first
        self.sizes = new_sizes
        self._changed()
        return removed

    def to(self, device) -> "InvertedLists":
        self.device = torch.device(device)
        self.data = {n: t.to(self.device) for n, t in self.data.items()}  # keeps the level-major strides
        self._changed()
        return self

    # ---- persistence -------------------------------------------------------------------------
    def packed(self) -> dict[str, torch.Tensor]:
        """Fields packed in list order (no holes) plus the list sizes: the on-disk form."""
        pos, _ = self.live_positions()
        out = {f"invlists.{n}": t[pos].contiguous() for n, t in self.data.items()}
        out["invlists.sizes"] = self.sizes.clone()
        return out

    def load_packed(self, tensors: dict[str, torch.Tensor]) -> None:
        sizes = tensors["invlists.sizes"].to(torch.int64).cpu()
        if sizes.shape != (self.nlist,):
            raise ValueError(f"invlists.sizes has shape {tuple(sizes.shape)}, expected ({self.nlist},)")
        total = int(sizes.sum())
        for name, (shape, dtype) in self.specs.items():
            t = tensors.get(f"invlists.{name}")
            if t is None or tuple(t.shape) != (total, *shape) or t.dtype != dtype:
                raise ValueError(f"stored field {name!r} is missing or has the wrong shape/dtype")
        self.data = {n: self._alloc(n, total) for n in self.specs}
        for n, t in self.data.items():
            t.copy_(tensors[f"invlists.{n}"])
        self.sizes = sizes
        self.caps = sizes.clone()
        self.starts = torch.cumsum(sizes, 0) - sizes
        self.used = total
        self._changed()
