"""What every index that keeps its vectors in packed inverted lists shares (IndexFlat: one list;
IVF indexes: one per centroid): add, ids, remove, reconstruct, merge, standalone codes, persistence.

A subclass supplies where a vector goes (``_assign``), its codec (``_make_codec``: a
torch_ivf.codecs.Codec) and the search. The codec sees vectors, or residuals when its
``by_residual`` is set: the list centroids are subtracted and added back here, in one place.
"""
from __future__ import annotations

import numpy as np
import torch

from ..arrays import back, label_tensor, take_rows, whole
from ..devices import resolve_device
from ..invlists import InvertedLists
from ..selectors import IDSelector
from .base import Index


class StoredIndex(Index):
    def __init__(self, d, metric="l2", *, device=None, dtype=torch.float32, nlist: int = 1):
        super().__init__(d, metric, device=device, dtype=dtype)
        self.codec = self._make_codec()
        self.invlists = InvertedLists(nlist, self.codec.fields(), self.device)
        self.scanner = self._make_scanner()

    @property
    def ntotal(self) -> int:
        """Number of vectors stored."""
        return self.invlists.ntotal

    # ---- the codec, with the list centroids of residual codecs ---------------------------
    def _make_codec(self):
        """The codec of this index type (called once the index's d, metric, device and dtype are set)."""
        raise NotImplementedError

    def _make_scanner(self):
        """The scanner the search paths call (search/scanner.py), built after the codec and the lists;
        index types whose scans are still their own methods (IVFPQ, Panorama) return the index."""
        return self

    @property
    def by_residual(self) -> bool:
        """True when the codec stores x - centroid of x's list."""
        return self.codec.by_residual

    @property
    def lossless(self) -> bool:
        """True when decode() gives back what was added (re-training may then re-assign it)."""
        return self.codec.lossless

    def _list_centroids(self, lists: torch.Tensor):
        """(n, d) centroids of lists for a residual codec, else None."""
        return self.centroids[lists] if self.codec.by_residual else None

    def _encode(self, x: torch.Tensor, lists: torch.Tensor) -> dict:
        """Stored fields of transformed vectors x assigned to lists."""
        c = self._list_centroids(lists)
        return self.codec.encode(x if c is None else x - c, c, getattr(self, "verbose", False))

    def _fields_from_codes(self, codes: torch.Tensor, lists: torch.Tensor) -> dict:
        """Stored fields of a codec's own codes (the converters' from_faiss)."""
        return self.codec.from_codes(codes, self._list_centroids(lists))

    def _decode(self, pos: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
        """Transformed vectors at slab rows pos of lists."""
        v = self.codec.rows(self.invlists, pos)
        return v + self.centroids[lists] if self.codec.by_residual else v

    def _train_codec(self, x: torch.Tensor, lists: torch.Tensor) -> None:
        """Train the codec on transformed vectors x assigned to lists."""
        c = self._list_centroids(lists)
        self.codec.train(x if c is None else x - c, getattr(self, "verbose", False))

    def _assign(self, x: torch.Tensor) -> torch.Tensor:
        """The list of each (transformed) vector."""
        raise NotImplementedError

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-transform applied before lists are assigned (identity unless the index has one)."""
        return x

    def _untransform(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _codec_tensors(self) -> dict:
        """Trained state persisted under ``codec.<name>`` (the codec's; Panorama adds its transform)."""
        return self.codec.tensors()

    def _load_codec_tensors(self, tensors: dict) -> None:
        self.codec.load_tensors(tensors)
        self.codec.to(self.device)

    def _sa_payload(self, x: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
        """(n, codec.sa_bytes()) uint8 codes of transformed vectors x assigned to lists."""
        c = self._list_centroids(lists)
        return self.codec.sa_encode(x if c is None else x - c)

    def _sa_vectors(self, payload: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
        """Inverse of _sa_payload (transformed space)."""
        v = self.codec.sa_decode(payload)
        return v + self.centroids[lists] if self.codec.by_residual else v

    def _head_bytes(self) -> int:
        """Bytes of the list number at the head of a standalone code (0 with one list)."""
        return ((self.invlists.nlist - 1).bit_length() + 7) // 8

    # ---- adding and removing -------------------------------------------------------------
    def add(self, x) -> None:
        """Add vectors; they get the labels next_label, next_label + 1, ...

        Args:
            x: (n, d) or (d,) vectors, numpy or tensor of any real dtype, on any device.

        Raises:
            ValueError: the index is not trained, x has the wrong shape, or holds NaN / Inf.
            TypeError: x is not a numeric array or tensor.
        """
        x, _ = self._vectors(x)
        self._require_trained()
        labels = torch.arange(self.next_label, self.next_label + x.shape[0], dtype=torch.int64, device=self.device)
        self._append(self._transform(x), labels)

    def add_with_ids(self, x, ids) -> None:
        """Add vectors under the caller's labels.

        Args:
            x: (n, d) vectors, numpy or tensor.
            ids: (n,) integer labels (numpy, tensor or sequence): unique, non-negative, not stored yet.

        Raises:
            ValueError: untrained index, wrong shapes, NaN / Inf, or ids repeated, negative or present.
            TypeError: x or ids of the wrong type (ids must be integers).
        """
        x, _ = self._vectors(x)
        ids = self._ids(ids, x.shape[0])
        self._require_trained()
        if self.ntotal and ids.numel() and bool(torch.isin(ids, self.invlists.labels()).any()):
            raise ValueError("ids already present in the index; remove_ids first (labels are unique)")
        self._append(self._transform(x), ids)

    def _require_trained(self) -> None:
        if not self.is_trained:
            raise ValueError(f"{type(self).__name__} must be trained before add")

    def _append(self, xt: torch.Tensor, labels: torch.Tensor) -> None:
        if xt.shape[0] == 0:
            return
        lists = self._assign(xt)
        fields = self._encode(xt, lists)
        fields["labels"] = labels
        self.invlists.append(lists, fields)
        self.next_label = max(self.next_label, int(labels.max()) + 1)

    def remove_ids(self, ids) -> int:
        """Remove stored vectors; unknown or repeated ids are ignored, as in Faiss.

        Args:
            ids: labels (int array, tensor or sequence), a bool mask over labels, or an IDSelector.

        Returns:
            How many vectors were removed (their labels are never handed out again).
        """
        if not (_is_mask(ids) or isinstance(ids, IDSelector)):
            ids = label_tensor(ids, self.device)
        if self.ntotal == 0:
            return 0
        return self.invlists.remove(self._selected(ids, self._live_labels()[1]))

    def reset(self) -> None:
        """Drop every stored vector (training is kept; labels restart at 0 as in Faiss)."""
        self.invlists.reset()
        self.next_label = 0

    def _positions_of(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        found, pos, lists = self.invlists.locate(labels)
        if not bool(found.all()):
            raise ValueError(f"label {int(labels[~found][0])} is not in the index")
        return pos, lists

    def _allowed_mask(self, allowed) -> torch.Tensor | None:
        """SearchParams.allowed as a bool mask over slab rows (None = all), which the scans read
        through _allowed_at; rows no vector owns are False."""
        if allowed is None:
            return None
        pos, stored = self._live_labels()
        mask = torch.zeros(self.invlists.rows, dtype=torch.bool, device=self.device)
        mask[pos] = self._selected(allowed, stored)
        return mask

    def _live_labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(slab rows, labels) of the stored vectors in list order, kept until the lists change."""
        key = (id(self.invlists), self.invlists.version)
        cached = self.__dict__.get("_live_cache")
        if cached is None or cached[0] != key:
            pos, _ = self.invlists.live_positions()
            cached = (key, pos, self.invlists.labels_at(pos))
            self._live_cache = cached  # concurrent searches may both build it: the same tensors
        return cached[1], cached[2]

    def _allowed_at(self, mask: torch.Tensor, pos) -> torch.Tensor:
        """Whether slab rows pos (a tensor of any shape, or a slice) pass the _allowed_mask filter.

        index_select, not advanced indexing: on a busy CPU the latter cost ~12 ms for 10k rows."""
        return take_rows(mask, pos)

    # ---- reading back ----------------------------------------------------------------------
    def reconstruct_batch(self, labels) -> torch.Tensor:
        """Decoded vectors of the given labels.

        Args:
            labels: (n,) integer labels.

        Returns:
            (n, d) float32 tensor on the index device (lossy codecs give their reconstruction).

        Raises:
            ValueError: a label that is not stored.
        """
        labels = label_tensor(labels, self.device, "labels")
        pos, lists = self._positions_of(labels)
        return self._untransform(self._decode(pos, lists))

    def reconstruct(self, key) -> torch.Tensor:
        """(d,) float32 tensor: the decoded vector of label ``key`` (ValueError if not stored)."""
        return self.reconstruct_batch([whole(key, "key")])[0]

    def reconstruct_n(self, i0: int, n: int) -> torch.Tensor:
        """(n, d) float32 tensor: the vectors of labels i0 .. i0 + n - 1 (ValueError if one is not stored)."""
        i0, n = whole(i0, "i0", 0), whole(n, "n", 0)
        return self.reconstruct_batch(torch.arange(i0, i0 + n))

    def labels(self) -> torch.Tensor:
        """int64 tensor of every stored label."""
        return self.invlists.labels()

    def _range_key(self, q, qi, labels, params, probe=None) -> torch.Tensor:
        """Storage order: list by list, rows in the order they were added (Faiss's range_search)."""
        lists, offset = self._list_offsets(labels)
        return lists * (self.invlists.max_size + 1) + offset

    def _list_offsets(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(list, row within the list) of stored labels."""
        _, pos, lists = self.invlists.locate(labels)
        return lists, pos - self.invlists.device_meta()[0][lists]

    # ---- standalone codes (Faiss's sa_encode / sa_decode) ---------------------------------
    def sa_code_size(self) -> int:
        """Bytes of one standalone code (sa_encode): the list number's bytes plus the codec's."""
        return self._head_bytes() + self.codec.sa_bytes()

    def sa_encode(self, x):
        """Standalone codes of x, in Faiss's byte layout.

        Args:
            x: (n, d) vectors, numpy or tensor.

        Returns:
            (n, sa_code_size()) uint8 (numpy for numpy input): the nearest list's number
            (little-endian, IVF only), then the codec's code (raw float32 for flat codes, the
            bit-packed PQ code of the residual for IVFPQ).

        Raises:
            ValueError: the index is not trained, or x has the wrong shape.
        """
        if not self.is_trained:
            raise ValueError("the index must be trained before sa_encode")
        x, was_numpy = self._vectors(x)
        xt = self._transform(x)
        lists = self._assign(xt)
        shifts = 8 * torch.arange(self._head_bytes(), device=self.device)
        head = ((lists[:, None] >> shifts) & 0xFF).to(torch.uint8)
        return back(torch.cat([head, self._sa_payload(xt, lists)], 1), was_numpy)

    def sa_decode(self, codes):
        """Vectors back from sa_encode's codes.

        Args:
            codes: (n, sa_code_size()) uint8 numpy array or tensor.

        Returns:
            (n, d) float32 (numpy for numpy input).

        Raises:
            ValueError: untrained index, codes of the wrong width, or a list number >= nlist.
            TypeError: codes that are not uint8.
        """
        if not self.is_trained:
            raise ValueError("the index must be trained before sa_decode")
        was_numpy = isinstance(codes, np.ndarray)
        if not isinstance(codes, (np.ndarray, torch.Tensor)):
            raise TypeError(f"codes must be a uint8 numpy array or tensor, got {type(codes).__name__}")
        c = torch.as_tensor(codes)
        if c.dtype != torch.uint8:
            raise TypeError(f"codes must be uint8, got {c.dtype}")
        if c.ndim != 2 or c.shape[1] != self.sa_code_size():
            raise ValueError(f"codes must have shape (n, {self.sa_code_size()}), got {tuple(c.shape)}")
        c = c.to(self.device)
        cs = self._head_bytes()
        lists = (c[:, :cs].long() << (8 * torch.arange(cs, device=self.device))).sum(1)
        if c.shape[0] and int(lists.max()) >= self.invlists.nlist:
            raise ValueError(f"codes hold list number {int(lists.max())}, but the index has nlist={self.invlists.nlist}")
        return back(self._untransform(self._sa_vectors(c[:, cs:], lists)), was_numpy)

    # ---- merging ---------------------------------------------------------------------------
    def merge_from(self, other: "StoredIndex", add_id: int = 0) -> None:
        """Move every vector of ``other`` into this index; other is left empty.

        Args:
            other: an index of the same type, d, metric and trained codec (and centroids for IVF).
            add_id: added to other's labels as they move.

        Raises:
            ValueError: other is not mergeable, or a shifted label is already stored here.
        """
        self._check_mergeable(other)
        pos, lists = other.invlists.live_positions()
        fields = other.invlists.gather_all(pos)
        fields = {n: t.to(self.device) for n, t in fields.items()}
        fields["labels"] = fields["labels"] + int(add_id)
        if self.ntotal and bool(torch.isin(fields["labels"], self.invlists.labels()).any()):
            raise ValueError("other holds labels already present here; pass add_id to shift them")
        self.invlists.append(lists.to(self.device), fields)
        if len(pos):
            self.next_label = max(self.next_label, int(fields["labels"].max()) + 1)
        other.reset()

    def _check_mergeable(self, other) -> None:
        if type(other) is not type(self) or other.d != self.d or other.metric != self.metric:
            raise ValueError("other must be the same index type with the same d and metric")
        if not self._same_codec(other):
            raise ValueError("other must share this index's trained codec")

    def _same_codec(self, other) -> bool:
        mine, theirs = self._codec_tensors(), other._codec_tensors()
        return mine.keys() == theirs.keys() and all(torch.equal(mine[k].cpu(), theirs[k].cpu()) for k in mine)

    def to(self, device) -> "StoredIndex":
        """Move the index to ``device`` (in place); returns it. ValueError for a device not on this machine."""
        self.device = resolve_device(device, "cpu")
        self.invlists.to(self.device)
        self._load_codec_tensors({k: v.to(self.device) for k, v in self._codec_tensors().items()})
        return self

    # ---- persistence (io.py writes these) ----------------------------------------------
    def state_tensors(self) -> dict:
        """Tensors io.py saves: the packed lists and the codec's tensors."""
        return {**self.invlists.packed(), **{f"codec.{k}": v for k, v in self._codec_tensors().items()}}

    def load_state_tensors(self, tensors: dict) -> None:
        """Restore what state_tensors returned."""
        self._load_codec_tensors({k[6:]: v for k, v in tensors.items() if k.startswith("codec.")})
        self.invlists.load_packed(tensors)


def _is_mask(x) -> bool:
    return (isinstance(x, torch.Tensor) and x.dtype == torch.bool) or (isinstance(x, np.ndarray) and x.dtype == np.bool_)

