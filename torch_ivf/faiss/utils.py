"""Faiss's module-level functions over torch_ivf: brute-force knn, normalisation, random arrays,
thread count, (de)serialisation in torch_ivf's safe format, selectors, search parameters and the
global statistics Faiss exposes as ``faiss.cvar``."""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from .. import io as _io
from .. import parameters as _params
from .. import selectors as _sel
from ..index import IndexIVF, IndexRefine
from ..index.base import METRIC_INNER_PRODUCT, METRIC_L2, SearchParams
from ..kmeans import kmeans as _kmeans
from ..pq import ProductQuantizer
from .errors import FaissTypeError, FaissValueError, faiss_errors
from .idmap import IndexIDMap
from .params import SearchParametersIVF
from .indexes import IndexFlat, _IVF, adopt
from .stats import IndexIVFStats, cvar  # noqa: F401  (faiss.cvar)


# ---- arrays -----------------------------------------------------------------------------------
def _float_rows(x, name="x") -> np.ndarray:
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if x.ndim != 2:
        raise FaissValueError(f"{name} must be a 2-D array (n, d), got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def vector_to_array(v):
    """Faiss's vector_to_array: a flat numpy copy (torch_ivf keeps tensors and arrays, not std::vector)."""
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy().reshape(-1).copy()
    return np.asarray(v).reshape(-1).copy()


def normalize_L2(x) -> None:
    """Scale each row of a float32 array to unit L2 norm, in place (zero rows stay zero)."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2:
        raise FaissTypeError(f"x must be a 2-D float32 numpy array, got {getattr(x, 'dtype', type(x).__name__)}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)


def knn(xq, xb, k, metric=METRIC_L2, metric_arg=0.0, *, D=None, I=None):
    """Exact k nearest neighbours of xq among xb: (D, I), Faiss's conventions (squared L2 ascending,
    inner product descending, -1 where fewer than k)."""
    xq, xb = _float_rows(xq, "xq"), _float_rows(xb, "xb")
    if xq.shape[1] != xb.shape[1]:
        raise FaissValueError(f"xq and xb must have the same dimension, got {xq.shape[1]} and {xb.shape[1]}")
    index = IndexFlat(xb.shape[1], metric)
    index.add(xb)
    return index.search(xq, k, D=D, I=I)


def eval_intersection(I1, I2) -> int:
    """Sum over rows of the number of ids the two result rows share."""
    I1, I2 = np.asarray(I1), np.asarray(I2)
    return int(sum(len(np.intersect1d(a[a >= 0], b[b >= 0])) for a, b in zip(I1, I2)))


def _generator(seed):
    return np.random.default_rng(None if seed is None or seed < 0 else seed)


def rand(n, seed=12345):
    """Uniform [0, 1) float32 values, n values or an array of shape n (not Faiss's generator's values)."""
    return _generator(seed).random(n, dtype=np.float32)


def randn(n, seed=12345):
    """Standard normal float32 values (not Faiss's generator's values)."""
    return _generator(seed).standard_normal(n, dtype=np.float32)


def randint(n, seed=12345, vmax=None):
    """Non-negative int64 values below vmax (2**31 if not given)."""
    return _generator(seed).integers(0, 2**31 if vmax is None else vmax, n, dtype=np.int64)


def lrand(n, seed=12345):
    """n pseudo-random non-negative int64 values from ``seed`` (Faiss's lrand; numpy out)."""
    return randint(n, seed)


def rand_smooth_vectors(n, d, seed=1234):
    """n vectors in d dimensions whose energy falls off with the dimension, float32."""
    rs = np.random.RandomState(seed)
    x = rs.normal(size=(n, d)) * (0.8 ** np.arange(d))[None, :]
    return x.astype(np.float32)


# ---- threads --------------------------------------------------------------------------------
def omp_get_max_threads() -> int:
    """torch's intra-op thread count (Faiss's omp_get_max_threads)."""
    return torch.get_num_threads()


def omp_set_num_threads(n) -> None:
    """Set torch's intra-op thread count to max(1, n) (Faiss's omp_set_num_threads)."""
    torch.set_num_threads(max(1, int(n)))


# ---- persistence ----------------------------------------------------------------------------
@faiss_errors
def serialize_index(index) -> np.ndarray:
    """The index as a uint8 array, in torch_ivf's safe file format (safetensors; no pickle)."""
    return np.frombuffer(_io.index_to_bytes(_writable(index)), dtype=np.uint8).copy()


@faiss_errors
def deserialize_index(data, io_flags=0):
    """The index in ``data`` (serialize_index's uint8 array, or bytes), Faiss-shaped; io_flags is ignored.

    Raises:
        CorruptFileError: (a ValueError) not a torch-ivf index, damaged, or failing its checksums.
    """
    payload = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    return adopt(_io.index_from_bytes(payload, source="deserialize_index"))


def _writable(index):
    """Faiss-shaped classes are written under their torch_ivf twin's name (read back by either API)."""
    if not hasattr(index, "state_tensors"):
        raise FaissTypeError(f"index must be a torch_ivf index, got {type(index).__name__}")
    return index


@faiss_errors
def write_index(index, f, io_flags=0) -> None:
    """Write to a path, or to a file object with write()."""
    if hasattr(f, "write"):
        f.write(_io.index_to_bytes(_writable(index)))
    else:
        _io.write_index(_writable(index), os.fspath(f))


@faiss_errors
def read_index(f, io_flags=0):
    """Read from a path, or from a file object with read()."""
    if hasattr(f, "read"):
        return adopt(_io.index_from_bytes(f.read(), source="read_index"))
    return adopt(_io.read_index(os.fspath(f)))


# Faiss's read flags: torch-ivf files have no precomputed tables or mmap modes, so they change nothing
IO_FLAG_READ_ONLY, IO_FLAG_ONDISK_SAME_DIR, IO_FLAG_SKIP_IVF_DATA, IO_FLAG_SKIP_PRECOMPUTE_TABLE = 2, 4, 8, 16
IO_FLAG_PQ_SKIP_SDC_TABLE, IO_FLAG_SKIP_STORAGE = 32, 1


@faiss_errors
def write_ProductQuantizer(pq, f) -> None:
    """Write a ProductQuantizer (d, M, nbits and its centroids) to a path or a file object, as a
    safetensors file (no pickle)."""
    if not isinstance(pq, ProductQuantizer):
        raise FaissTypeError(f"pq must be a ProductQuantizer, got {type(pq).__name__}")
    meta = {"torch_ivf": "ProductQuantizer", "d": str(pq.d), "M": str(pq.M), "nbits": str(pq.nbits)}
    payload = _st_save({"centroids": pq.centroids.detach().cpu().contiguous()}, metadata=meta)
    if hasattr(f, "write"):
        f.write(payload)
    else:
        with open(os.fspath(f), "wb") as out:
            out.write(payload)


@faiss_errors
def read_ProductQuantizer(f) -> ProductQuantizer:
    """The ProductQuantizer written by write_ProductQuantizer (path or file object)."""
    if hasattr(f, "read"):
        payload = f.read()
    else:
        with open(os.fspath(f), "rb") as inp:
            payload = inp.read()
    try:
        meta = _header_metadata(payload)
        tensors = _st_load(payload)
        pq = ProductQuantizer(int(meta["d"]), int(meta["M"]), int(meta["nbits"]))
    except (KeyError, TypeError, ValueError, SafetensorError) as e:
        raise FaissValueError(f"not a ProductQuantizer written by write_ProductQuantizer ({e})") from None
    if meta.get("torch_ivf") != "ProductQuantizer" or set(tensors) != {"centroids"}:
        raise FaissValueError("not a ProductQuantizer written by write_ProductQuantizer")
    if tensors["centroids"].numel():
        pq.set_centroids(tensors["centroids"])
    return pq


def _header_metadata(payload: bytes) -> dict:
    """The string metadata of a safetensors payload (its JSON header's __metadata__)."""
    if len(payload) < 8:
        raise ValueError("payload too short for a safetensors header")
    n = int.from_bytes(payload[:8], "little")
    if n > len(payload) - 8:
        raise ValueError("safetensors header longer than the payload")
    header = json.loads(payload[8:8 + n])
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise ValueError("safetensors metadata is not a mapping")
    return meta


@faiss_errors
def clone_index(index):
    """An independent deep copy of ``index`` (same tensors and device), Faiss-shaped."""
    return adopt(_io.clone_index(index))


def swig_ptr(array):
    """Faiss's pointer to an array's data: here the array itself (numpy), which every function of this
    module that Faiss gives a pointer takes (writes through it land in the caller's array)."""
    if not isinstance(array, np.ndarray):
        raise FaissTypeError(f"swig_ptr takes a numpy array, got {type(array).__name__}")
    return array


def downcast_index(index):
    """Faiss needs it to see a SWIG pointer's real class; Python objects already have theirs."""
    return index


@faiss_errors
def extract_index_ivf(index):
    """The IVF index inside IndexIDMap / refine wrappers (or the index itself)."""
    while isinstance(index, (IndexIDMap, IndexRefine)):
        index = index.index if isinstance(index, IndexIDMap) else index.base
    if not isinstance(index, IndexIVF) or index.nlist == 1 and not isinstance(index, _IVF):
        raise FaissValueError(f"index must be an IVF index or wrap one, got {type(index).__name__}")
    return index


def try_extract_index_ivf(index):
    """The IVF index inside ``index`` (itself, or a refine wrapper's base), or None."""
    try:
        return extract_index_ivf(index)
    except (ValueError, TypeError):
        return None


class ParameterSpace(_params.ParameterSpace):
    """Faiss's ParameterSpace setters (nprobe, max_codes, k_factor_rf), through IndexIDMap too."""

    @faiss_errors
    def set_index_parameter(self, index, name, value) -> None:
        """Set ``name`` (nprobe, max_codes, k_factor_rf; k_factor on a refine index) on ``index``,
        through IndexIDMap wrappers."""
        while isinstance(index, IndexIDMap):
            index = index.index
        if name == "k_factor" and isinstance(index, IndexRefine):
            name = "k_factor_rf"
        super().set_index_parameter(index, name, value)

    @faiss_errors
    def set_index_parameters(self, index, description) -> None:
        """Comma-separated ``name=value`` pairs, applied left to right (all parsed first)."""
        super().set_index_parameters(index, description)


# ---- selectors and search parameters --------------------------------------------------------
class IDSelectorRange(_sel.IDSelectorRange):
    """imin <= id < imax. ``assume_sorted``: Faiss's variant for indexes whose ids are sorted (flat
    storage); the selection is the same."""

    def __init__(self, imin, imax, assume_sorted=False):
        super().__init__(int(imin), int(imax))
        self.assume_sorted = bool(assume_sorted)

    def find_sorted_ids_bounds(self, list_size, ids, jmin, jmax) -> None:
        """Faiss's bounds of the range in sorted ids[:list_size]: writes jmin[0] (first index with
        id >= imin) and jmax[0] (first with id >= imax) into the arrays given; both 0 when no id
        is in the range's span, as in Faiss."""
        ids = np.asarray(ids)[: int(list_size)]
        if len(ids) == 0 or ids[0] >= self.imax or ids[-1] < self.imin:
            jmin[0] = jmax[0] = 0
            return
        lo = int(np.searchsorted(ids, self.imin, side="left"))
        hi = max(lo, int(np.searchsorted(ids, self.imax, side="left")))
        jmin[0], jmax[0] = lo, hi


class IDSelectorBitmap(_sel.IDSelector):
    """Ids whose bit is set in a little-endian bitmap of n bits (Faiss's IDSelectorBitmap(n, bitmap))."""

    def __init__(self, n_or_bitmap, bitmap=None):
        n, bitmap = (None, n_or_bitmap) if bitmap is None else (int(n_or_bitmap), bitmap)
        bitmap = np.asarray(bitmap, dtype=np.uint8).reshape(-1)
        n = bitmap.size * 8 if n is None else n
        self.bits = np.unpackbits(bitmap, bitorder="little")[:n].astype(bool)

    def mask(self, size, device):
        m = torch.zeros(size, dtype=torch.bool, device=device)
        n = min(size, self.bits.size)
        m[:n] = torch.from_numpy(self.bits[:n]).to(device)
        return m

    def is_member(self, label):
        return 0 <= int(label) < self.bits.size and bool(self.bits[int(label)])


class IDSelectorXOr(_sel.IDSelector):
    """The labels exactly one of ``lhs`` and ``rhs`` selects (Faiss's IDSelectorXOr)."""

    def __init__(self, lhs, rhs):
        self.lhs, self.rhs = _sel._check(lhs), _sel._check(rhs)

    def mask(self, size, device):
        return self.lhs.mask(size, device) ^ self.rhs.mask(size, device)

    def is_member(self, label):
        return self.lhs.is_member(label) != self.rhs.is_member(label)


class IDSelectorTranslated(_sel.IDSelector):
    """Faiss's ``IDSelectorTranslated(index_idmap or id_map, sel)``: sel applied to an IndexIDMap's own
    ids. torch_ivf indexes inside an IDMap store those ids already, so this is ``sel`` itself."""

    def __init__(self, index_or_id_map, sel):
        self.sel = _sel._check(sel)

    def mask(self, size, device):
        return self.sel.mask(size, device)

    def is_member(self, label):
        return self.sel.is_member(label)


class PyCallbackIDSelector(_sel.IDSelector):
    """Faiss's ``PyCallbackIDSelector(is_member)``: ids for which the Python function returns true.
    The function is called once per id the index has handed out, per search (slow for large indexes:
    an IDSelectorBatch of the ids is the fast form)."""

    def __init__(self, callback):
        if not callable(callback):
            raise FaissTypeError(f"callback must be callable, got {type(callback).__name__}")
        self.callback = callback

    def mask(self, size, device):
        return torch.tensor([bool(self.callback(i)) for i in range(size)], dtype=torch.bool, device=device)

    def is_member(self, label):
        return bool(self.callback(int(label)))


class IDSelectorAll(_sel.IDSelector):
    """Every label (Faiss's IDSelectorAll)."""

    def mask(self, size, device):
        return torch.ones(size, dtype=torch.bool, device=device)

    def is_member(self, label):
        return True


SearchParameters = SearchParams
IVFSearchParameters = SearchParametersIVF


# ---- clustering -----------------------------------------------------------------------------
class Kmeans:
    """Faiss's ``Kmeans(d, k, niter=25, seed=1234, spherical=False, ...)``: train(x) sets centroids
    (k, d) float32, obj (the final sum of squared distances) and index (a flat index of the centroids)."""

    def __init__(self, d, k, **kwargs):
        self.d, self.k = int(d), int(k)
        self.niter, self.seed = int(kwargs.pop("niter", 25)), int(kwargs.pop("seed", 1234))
        self.max_points_per_centroid = int(kwargs.pop("max_points_per_centroid", 256))
        self.spherical = bool(kwargs.pop("spherical", False))
        kwargs.pop("min_points_per_centroid", None)
        self.centroids, self.obj, self.index = None, [], None
        self.verbose = kwargs.pop("verbose", False)
        kwargs.pop("gpu", None), kwargs.pop("nredo", None), kwargs.pop("update_index", None)
        if kwargs:
            raise FaissValueError(f"unknown Kmeans parameters {sorted(kwargs)}")

    @faiss_errors
    def train(self, x, weights=None, init_centroids=None):
        """Cluster x (n, d) into k centroids; sets centroids, obj and index; returns the final objective.

        Raises:
            FaissValueError: weights or init_centroids given (not supported), or x of the wrong shape.
        """
        if weights is not None or init_centroids is not None:
            raise FaissValueError("weights and init_centroids are not supported")
        x = _float_rows(x)
        c = _kmeans(torch.from_numpy(x), self.k, niter=self.niter, seed=self.seed,
                    max_points_per_centroid=self.max_points_per_centroid, spherical=self.spherical,
                    verbose=bool(self.verbose))
        self.centroids = c.cpu().numpy().astype(np.float32)
        self.index = IndexFlat(self.d, METRIC_INNER_PRODUCT if self.spherical else METRIC_L2)
        self.index.add(self.centroids)
        D, _ = knn(x, self.centroids, 1)
        self.obj = [float(D.sum())]
        return self.obj[-1]

    def assign(self, x):
        """(D, I), each (n, 1): the nearest centroid of each row of x and its distance."""
        return self.index.search(_float_rows(x), 1)


# ---- SIMD levels: torch picks its kernels itself, so one level, "NONE", is reported -----------
(SIMDLevel_NONE, SIMDLevel_AVX2, SIMDLevel_AVX512, SIMDLevel_AVX512_SPR, SIMDLevel_ARM_NEON, SIMDLevel_ARM_SVE,
 SIMDLevel_RISCV_RVV) = range(7)


class SIMDConfig:
    """Faiss's SIMD level switches: torch picks its own kernels, so the only level is SIMDLevel_NONE."""

    @staticmethod
    def is_simd_level_available(level) -> bool:
        """True only for SIMDLevel_NONE."""
        return level == SIMDLevel_NONE

    @staticmethod
    def get_level():
        """SIMDLevel_NONE."""
        return SIMDLevel_NONE

    @staticmethod
    def get_dispatched_level():
        """SIMDLevel_NONE."""
        return SIMDLevel_NONE

    @staticmethod
    def set_level(level) -> None:
        """Accept SIMDLevel_NONE; any other level raises FaissValueError."""
        if level != SIMDLevel_NONE:
            raise FaissValueError(f"SIMD level {level} is not available (torch chooses its own kernels)")
