"""Shared IVF machinery: coarse quantizer + packed inverted lists + a codec/scanner per index type.

Written once here: training, probe selection, grouping (query, list) work, the top-k merge,
id filters, add/remove/reconstruct, merge_from and the state persisted by io.py. A concrete index
type supplies the codec hooks (what is stored per vector, how to encode/decode) and the scanner
hooks (how a group of queries scores a block of one list). Scores inside the scan are always
"larger is better"; ``_distances`` turns them into what Faiss returns.
"""
from __future__ import annotations

import numpy as np
import torch

from ..arrays import back
from ..distances import nearest_centroids
from ..invlists import InvertedLists
from ..kmeans import kmeans
from ..selectors import IDSelector
from .base import _RANGE_BUDGET, Index
from .scan import _SCORE_BUDGET, SEARCH_MODES, IVFScan  # noqa: F401  (_SCORE_BUDGET: used by codecs)



class IndexIVF(IVFScan, Index):
    lossless = True  # re-training may re-assign stored vectors only if decode() gives them back

    def __init__(self, d, nlist, metric="l2", *, nprobe=1, device=None, dtype=torch.float32,
                 search_mode="auto", max_codes=0, seed=1234, niter=20, quantizer=None):
        super().__init__(d, metric, device=device, dtype=dtype)
        if isinstance(nlist, bool) or not isinstance(nlist, (int, np.integer)) or nlist <= 0:
            raise ValueError(f"nlist must be a positive int, got {nlist!r}")
        self.nlist = int(nlist)
        self.nprobe = nprobe
        self.search_mode = search_mode
        self.max_codes = max_codes
        self.seed = int(seed)
        self.niter = int(niter)
        self.centroids = torch.empty(0, self.d, device=self.device)
        self.invlists = InvertedLists(self.nlist, self._fields(), self.device)
        if quantizer is not None:
            self._take_quantizer(quantizer)

    # ---- validated settings --------------------------------------------------------------
    @property
    def nprobe(self) -> int:
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"nprobe must be a positive int, got {value!r}")
        self._nprobe = int(value)  # values above nlist are clamped at search time, as Faiss does

    @property
    def search_mode(self) -> str:
        return self._search_mode

    @search_mode.setter
    def search_mode(self, value) -> None:
        if value not in SEARCH_MODES:
            raise ValueError(f"search_mode must be one of {SEARCH_MODES}, got {value!r}")
        self._search_mode = "grouped" if value == "csr" else value

    @property
    def max_codes(self) -> int:
        return self._max_codes

    @max_codes.setter
    def max_codes(self, value) -> None:
        value = 0 if value is None else value
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"max_codes must be a non-negative int (0 = unlimited), got {value!r}")
        self._max_codes = int(value)

    @property
    def ntotal(self) -> int:
        return self.invlists.ntotal

    @property
    def is_trained(self) -> bool:
        return self.centroids.shape[0] == self.nlist

    @property
    def coarse_metric(self) -> str:
        return "l2" if self.metric == "l2" else "ip"

    @property
    def quantizer(self):
        """The coarse centroids as a flat index (Faiss's ``index.quantizer``)."""
        from .flat import IndexFlat
        q = IndexFlat(self.d, self.coarse_metric, device=self.device)
        if self.is_trained:
            q.add(self.centroids)
        return q

    def _take_quantizer(self, quantizer) -> None:
        ntotal = getattr(quantizer, "ntotal", None)
        if getattr(quantizer, "d", None) != self.d:
            raise ValueError(f"quantizer must have d={self.d}, got {getattr(quantizer, 'd', None)!r}")
        if ntotal == self.nlist:
            self.centroids = quantizer.reconstruct_batch(torch.arange(self.nlist)).float().to(self.device)
        elif ntotal not in (0, None):
            raise ValueError(f"quantizer holds {ntotal} centroids, expected 0 or nlist={self.nlist}")

    # ---- codec hooks (IVFFlat defaults; other types override) -----------------------------
    def _fields(self) -> dict:
        raise NotImplementedError

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-transform applied before the coarse quantizer (identity unless a subclass has one)."""
        return x

    def _train_codec(self, x: torch.Tensor, lists: torch.Tensor) -> None:
        """Train whatever the codec needs on the transformed training set (nothing for flat codes)."""

    def _encode(self, x: torch.Tensor, lists: torch.Tensor) -> dict:
        raise NotImplementedError

    def _decode(self, pos: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _untransform(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _codec_tensors(self) -> dict:
        return {}

    def _load_codec_tensors(self, tensors: dict) -> None:
        pass

    # ---- training and adding ------------------------------------------------------------
    def _assign(self, x: torch.Tensor) -> torch.Tensor:
        if self.nlist == 1:
            return torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
        return nearest_centroids(x, self.centroids, self.coarse_metric)

    def train(self, x) -> None:
        x, _ = self._vectors(x)
        if x.shape[0] < self.nlist:
            raise ValueError(f"x must have at least nlist={self.nlist} rows to train, got {x.shape[0]}")
        if self.ntotal and not self.lossless:
            raise ValueError(f"{type(self).__name__} holds {self.ntotal} encoded vectors that cannot be "
                             "re-assigned losslessly; call reset() before training again")
        keep = None
        if self.ntotal:  # re-training re-assigns what is stored instead of dropping it
            pos, lists = self.invlists.live_positions()
            keep = (self._untransform(self._decode(pos, lists)), self.invlists.data["labels"][pos].clone())
        self._fit(x)
        if keep is not None:
            self.invlists.reset()
            self._append(self._transform(keep[0]), keep[1])

    def _fit(self, x: torch.Tensor) -> None:
        """Train the pre-transform (if any), the coarse centroids and the codec."""
        xt = self._transform(x)
        if self.nlist == 1:
            self.centroids = xt.mean(0, keepdim=True) if self.metric == "l2" else torch.zeros(1, self.d, device=self.device)
        elif not self.is_trained:
            self.centroids = kmeans(xt, self.nlist, niter=self.niter, seed=self.seed,
                                    spherical=self.metric != "l2").to(self.device)
        self._train_codec(xt, self._assign(xt))

    def add(self, x) -> None:
        x, _ = self._vectors(x)
        self._require_trained()
        labels = torch.arange(self.next_label, self.next_label + x.shape[0], dtype=torch.int64, device=self.device)
        self._append(self._transform(x), labels)

    def add_with_ids(self, x, ids) -> None:
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
        """Remove by labels (array), a bool mask over labels or an IDSelector; returns how many were
        removed."""
        if self.ntotal == 0:
            return 0
        stored = self.invlists.labels()
        if _is_mask(ids) or isinstance(ids, IDSelector):
            drop = self._allowed_mask(ids)[stored]
        else:  # unknown or repeated ids are ignored, as in Faiss
            drop = torch.isin(stored, _as_label_tensor(ids, self.device))
        return self.invlists.remove(drop)

    def reset(self) -> None:
        """Drop every stored vector (training is kept; labels restart at 0 as in Faiss)."""
        self.invlists.reset()
        self.next_label = 0

    def _positions_of(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        found, pos, lists = self.invlists.locate(labels)
        if not bool(found.all()):
            raise ValueError(f"label {int(labels[~found][0])} is not in the index")
        return pos, lists

    # ---- standalone codes (Faiss's sa_encode / sa_decode) ---------------------------------
    def coarse_code_size(self) -> int:
        """Bytes of the list number at the head of a standalone code (little-endian), as in Faiss."""
        return ((self.nlist - 1).bit_length() + 7) // 8

    def sa_code_size(self) -> int:
        return self.coarse_code_size() + self._sa_bytes()

    def sa_encode(self, x):
        """(n, sa_code_size) uint8 codes: the nearest list's number, then the codec's code of x (Faiss's
        layout: raw float32 for IVFFlat, the bit-packed PQ code of the residual for IVFPQ)."""
        if not self.is_trained:
            raise ValueError("the index must be trained before sa_encode")
        x, was_numpy = self._vectors(x)
        xt = self._transform(x)
        lists = self._assign(xt)
        shifts = 8 * torch.arange(self.coarse_code_size(), device=self.device)
        head = ((lists[:, None] >> shifts) & 0xFF).to(torch.uint8)
        return back(torch.cat([head, self._sa_payload(xt, lists)], 1), was_numpy)

    def sa_decode(self, codes):
        """(n, d) float32 vectors from sa_encode's codes."""
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
        cs = self.coarse_code_size()
        lists = (c[:, :cs].long() << (8 * torch.arange(cs, device=self.device))).sum(1)
        if c.shape[0] and int(lists.max()) >= self.nlist:
            raise ValueError(f"codes hold list number {int(lists.max())}, but the index has nlist={self.nlist}")
        return back(self._untransform(self._sa_vectors(c[:, cs:], lists)), was_numpy)

    def _sa_bytes(self) -> int:
        """Bytes of the codec's part of a standalone code."""
        raise NotImplementedError

    def _sa_payload(self, x: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
        """(n, _sa_bytes) uint8 codes of transformed vectors x assigned to lists."""
        raise NotImplementedError

    def _sa_vectors(self, payload: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
        """Inverse of _sa_payload (transformed space)."""
        raise NotImplementedError

    def get_list_size(self, list_no: int) -> int:
        """Faiss's IndexIVF.get_list_size: vectors stored in inverted list ``list_no``."""
        if isinstance(list_no, bool) or not isinstance(list_no, (int, np.integer)) or not 0 <= list_no < self.nlist:
            raise ValueError(f"list_no must be an int in [0, {self.nlist}), got {list_no!r}")
        return self.invlists.list_size(int(list_no))

    def reconstruct_batch(self, labels) -> torch.Tensor:
        labels = _as_label_tensor(labels, self.device)
        pos, lists = self._positions_of(labels)
        return self._untransform(self._decode(pos, lists))

    def reconstruct(self, key) -> torch.Tensor:
        return self.reconstruct_batch([int(key)])[0]

    def make_direct_map(self, new_maintain: bool = True) -> None:
        """Kept so Faiss code runs: labels are always mapped here, reconstruct needs no direct map."""

    def reconstruct_n(self, i0: int, n: int) -> torch.Tensor:
        return self.reconstruct_batch(torch.arange(int(i0), int(i0) + int(n)))

    def labels(self) -> torch.Tensor:
        return self.invlists.labels()

    def merge_from(self, other: "IndexIVF", add_id: int = 0) -> None:
        """Move every vector of ``other`` (same type, same centroids) into this index; other is emptied."""
        if type(other) is not type(self) or other.d != self.d or other.nlist != self.nlist or other.metric != self.metric:
            raise ValueError("other must be the same index type with the same d, nlist and metric")
        if not torch.equal(other.centroids.cpu(), self.centroids.cpu()) or not self._same_codec(other):
            raise ValueError("other must share this index's trained centroids and codec")
        pos, lists = other.invlists.live_positions()
        fields = {n: t[pos].to(self.device) for n, t in other.invlists.data.items()}
        fields["labels"] = fields["labels"] + int(add_id)
        if self.ntotal and bool(torch.isin(fields["labels"], self.invlists.labels()).any()):
            raise ValueError("other holds labels already present here; pass add_id to shift them")
        self.invlists.append(lists.to(self.device), fields)
        if len(pos):
            self.next_label = max(self.next_label, int(fields["labels"].max()) + 1)
        other.reset()

    def _same_codec(self, other) -> bool:
        mine, theirs = self._codec_tensors(), other._codec_tensors()
        return mine.keys() == theirs.keys() and all(torch.equal(mine[k].cpu(), theirs[k].cpu()) for k in mine)

    def to(self, device) -> "IndexIVF":
        self.device = torch.device(device)
        self.centroids = self.centroids.to(self.device)
        self.invlists.to(self.device)
        self._load_codec_tensors({k: v.to(self.device) for k, v in self._codec_tensors().items()})
        return self

    def _range_plan(self, params) -> tuple[int, int]:
        # a query meets at most the nprobe largest lists (and max_codes rows); the grouped scan keeps
        # k candidates per (query, probed list)
        nprobe = min(params.nprobe or self.nprobe, self.nlist)
        k = int(self.invlists.sizes.topk(nprobe).values.sum())
        max_codes = self.max_codes if params.max_codes is None else int(params.max_codes)
        k = max(1, min(k, max_codes) if max_codes else k)
        return k, max(1, _RANGE_BUDGET // (k * nprobe))

    # ---- persistence (io.py writes these) ----------------------------------------------
    def config(self) -> dict:
        """Constructor keyword arguments that rebuild this index (JSON-serialisable)."""
        return {"d": self.d, "nlist": self.nlist, "metric": self.metric, "nprobe": self.nprobe,
                "dtype": str(self.dtype).removeprefix("torch."), "search_mode": self.search_mode,
                "max_codes": self.max_codes, "seed": self.seed, "niter": self.niter}

    def state_tensors(self) -> dict:
        return {"centroids": self.centroids, **self.invlists.packed(),
                **{f"codec.{k}": v for k, v in self._codec_tensors().items()}}

    def load_state_tensors(self, tensors: dict) -> None:
        centroids = tensors["centroids"]
        if centroids.numel() and tuple(centroids.shape) != (self.nlist, self.d):
            raise ValueError(f"stored centroids have shape {tuple(centroids.shape)}, expected ({self.nlist}, {self.d})")
        self.centroids = centroids.float().to(self.device)
        self._load_codec_tensors({k[6:]: v for k, v in tensors.items() if k.startswith("codec.")})
        self.invlists.load_packed(tensors)

def _is_mask(x) -> bool:
    return (isinstance(x, torch.Tensor) and x.dtype == torch.bool) or (isinstance(x, np.ndarray) and x.dtype == np.bool_)


def _as_label_tensor(ids, device) -> torch.Tensor:
    if isinstance(ids, torch.Tensor):
        if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
            raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
        return ids.reshape(-1).to(device=device, dtype=torch.int64)
    arr = np.asarray(ids)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"ids must be integers, got {arr.dtype}")
    return torch.as_tensor(arr.astype(np.int64).reshape(-1), device=device)
