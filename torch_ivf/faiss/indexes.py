"""Faiss-shaped index classes over torch_ivf's: Faiss's constructor forms, numpy results, a shared
quantizer object, the direct-map API and Faiss's numbering of flat indexes. Each class is a subclass of
the torch_ivf index of the same name, so everything torch_ivf offers still works on it."""
from __future__ import annotations

import functools

import numpy as np
import torch

from .. import index as core
from .. import io as _io
from ..index.base import METRIC_INNER_PRODUCT, METRIC_L2
from ..index.ivf import faiss_form
from ..index.stored import StoredIndex
from ..sq import QT_8bit
from .errors import FaissValueError, wrap_methods
from .params import checked, fill_topk, stop_after_empty
from .stats import cvar

_PUBLIC = ("__init__", "train", "add", "add_with_ids", "search", "range_search", "remove_ids", "reconstruct",
           "reconstruct_n", "reconstruct_batch", "merge_from", "assign", "sa_encode", "sa_decode",
           "search_and_reconstruct", "set_direct_map_type", "make_direct_map", "get_list_size",
           "search_preassigned", "range_search_preassigned", "update_vectors")


def _numpy(t):
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _rows(x):
    """Faiss's wrappers take any array-like of numbers (float64 too) and pass float32 rows on."""
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return x
    return np.asarray(x, dtype=np.float32)


class DirectMap:
    """Faiss's DirectMap types (``index.set_direct_map_type(faiss.DirectMap.Hashtable)``)."""
    NoMap, Array, Hashtable = 0, 1, 2

    def __init__(self, type_: int = 0):
        self.type = type_


class Panorama:
    """Faiss's Panorama constants (the scan block sizes Panorama indexes take as batch_size)."""
    kDefaultBatchSize = 1024
    kLegacyBatchSize = 128


class FaissIndex:
    """Faiss's Python calling conventions on top of a torch_ivf index."""

    _positional = False  # flat indexes number vectors by position, as Faiss does

    def _faiss_setup(self) -> None:
        """Faiss-side state; also run on indexes built by torch_ivf (read_index, the factory)."""

    def train(self, x) -> None:
        super().train(_rows(x))

    def add(self, x) -> None:
        super().add(_rows(x))

    def add_with_ids(self, x, ids) -> None:
        super().add_with_ids(_rows(x), ids)

    def search(self, x, k, *, params=None, D=None, I=None):
        return super().search(_rows(x), k, params=params, D=D, I=I)

    def range_search(self, x, thresh, *, params=None):
        lims, D, I = super().range_search(_rows(x), thresh, params=params, order="storage")
        if isinstance(lims, np.ndarray):
            lims = lims.astype(np.uint64)  # Faiss's size_t offsets
        return lims, D, I

    def assign(self, x, k, labels=None):
        """Labels (n, k) of the k nearest stored vectors of x; written into ``labels`` when given."""
        I = self.search(x, k)[1]
        if labels is not None:
            labels[...] = I
            return labels
        return I

    def reconstruct(self, key, x=None):
        """(d,) float32 numpy vector of label ``key``, written into ``x`` when given."""
        out = self.reconstruct_batch(np.array([int(key)]))[0]
        if x is not None:
            x[...] = out
            return x
        return out

    def reconstruct_batch(self, key, x=None):
        """(n, d) float32 numpy vectors of the labels ``key``, written into ``x`` when given."""
        out = _numpy(super().reconstruct_batch(np.asarray(key, dtype=np.int64).reshape(-1))).astype(np.float32)
        if x is not None:
            x[...] = out
            return x
        return out

    def reconstruct_n(self, n0=0, ni=-1, x=None):
        """Vectors of labels n0 .. n0 + ni - 1 (ni = -1: up to ntotal), numpy."""
        ni = self.ntotal - n0 if ni == -1 else ni
        return self.reconstruct_batch(np.arange(n0, n0 + ni), x)

    def search_and_reconstruct(self, x, k, *, params=None, D=None, I=None, R=None):
        """(D, I, R): search's results and the (nq, k, d) float32 vectors of I (zeros where I is -1)."""
        D, I = self.search(x, k, params=params, D=D, I=I)
        rec = np.zeros((I.shape[0], k, self.d), dtype=np.float32)
        ok = I >= 0
        if ok.any():
            rec[ok] = self._found_vectors(I[ok])
        if R is not None:
            R[...] = rec
            return D, I, R
        return D, I, rec

    def _found_vectors(self, ids) -> np.ndarray:
        """float32 vectors of ids a search returned (search_and_reconstruct)."""
        return self.reconstruct_batch(ids)

    def is_faiss(self) -> bool:
        """True: a Faiss-shaped class (torch_ivf.faiss), numpy out."""
        return True


class _Positional(FaissIndex):
    """Faiss's flat-code indexes (IndexFlat, IndexPQ, IndexScalarQuantizer) number vectors by position:
    remove_ids renumbers the ones after, merge_from numbers the merged vectors after this index's,
    add_with_ids is refused (wrap the index in IndexIDMap for your own ids). Inside an IDMap or a
    refine index, the labels are the caller's again (``_positional`` False)."""

    _positional = True

    def add_with_ids(self, x, ids) -> None:
        """Refused (FaissValueError) on a positional flat index, as in Faiss; wrap it in IndexIDMap."""
        if self._positional:
            raise FaissValueError(f"add_with_ids is not supported by {type(self).__name__}: "
                                  "wrap it in IndexIDMap for your own ids")
        super().add_with_ids(x, ids)

    def remove_ids(self, sel) -> int:
        """Remove by ids or IDSelector; the vectors after a removed one are renumbered (Faiss's flat
        numbering by position). Returns how many were removed.
        """
        n = StoredIndex.remove_ids(self, _selection(sel))
        if self._positional and n:
            pos, _ = self.invlists.live_positions()
            self.invlists.relabel(pos, torch.arange(len(pos)))
            self.next_label = len(pos)
        return n

    def merge_from(self, other, add_id=0) -> None:
        if not self._positional:
            return super().merge_from(other, add_id)
        if add_id:
            raise FaissValueError(f"add_id must be 0 for {type(self).__name__}: its vectors are numbered "
                                  "by position (the merged ones come after this index's)")
        return super().merge_from(other, self.ntotal)


class _Flat(_Positional):

    def get_xb(self):
        """The stored vectors (ntotal, d), in storage order."""
        return self.reconstruct_batch(_numpy(self.labels()))

    @property
    def xb(self):
        """The stored vectors flattened to (ntotal * d,) float32 (Faiss's xb)."""
        return self.get_xb().reshape(-1)

    @property
    def codes(self):
        """The stored vectors as raw bytes (ntotal * code_size,) uint8 (Faiss's codes)."""
        return self.get_xb().view(np.uint8).reshape(-1)

    @property
    def code_size(self) -> int:
        """Bytes per vector: 4 * d."""
        return self.d * 4


class IndexFlat(_Flat, core.IndexFlat):
    """Faiss's ``IndexFlat(d, metric=METRIC_L2)``: exact search, vectors numbered by position."""

    def __init__(self, d=None, metric=METRIC_L2, *, device=None, dtype=torch.float32):
        core.IndexFlat.__init__(self, d, metric, device=device, dtype=dtype)


class IndexFlatL2(_Flat, core.IndexFlatL2):
    pass


class IndexFlatIP(_Flat, core.IndexFlatIP):
    pass


class IndexFlat1D(IndexFlatL2):
    """Faiss's ``IndexFlat1D(continuous_update=True)``: exact search of 1-D vectors; D is the absolute
    difference |x - q|, not its square (Faiss searches a sorted copy; the results are the same)."""

    def __init__(self, continuous_update=True, *, device=None):
        core.IndexFlatL2.__init__(self, 1, device=device)
        self.continuous_update = bool(continuous_update)

    def update_permutation(self) -> None:
        """Faiss re-sorts its copy here; nothing is kept sorted in torch_ivf."""

    def search(self, x, k, *, params=None, D=None, I=None):
        """As IndexFlatL2.search, with D the absolute differences."""
        Dn, In = super().search(x, k, params=params)
        Dn, In = np.array(_numpy(Dn)), _numpy(In)
        hit = In >= 0
        if hit.any():  # |q - x| from the vectors: the GEMM's squared distance loses small differences
            q = np.asarray(_numpy(x), dtype=np.float32).reshape(-1, 1)
            Dn[hit] = np.abs(np.broadcast_to(q, In.shape)[hit] - self.reconstruct_batch(In[hit])[:, 0])
        for buf, res in ((D, Dn), (I, In)):
            if buf is not None:
                buf[...] = res
        return (Dn if D is None else D), (In if I is None else I)

    def config(self) -> dict:
        return {"continuous_update": self.continuous_update}


def _selection(sel):
    """remove_ids' argument: an IDSelector, or ids (any integer array-like)."""
    from ..selectors import IDSelector
    if isinstance(sel, IDSelector) or isinstance(sel, torch.Tensor):
        return sel
    return np.asarray(sel, dtype=np.int64).reshape(-1)


class _IVF(FaissIndex):
    """The coarse quantizer is an object shared with the caller (training fills it, a trained one is
    used as given), and reconstruct needs a direct map, as in Faiss."""

    def _faiss_setup(self, quantizer=None) -> None:
        self._shared_q = quantizer
        self.direct_map = DirectMap(DirectMap.NoMap)
        self.parallel_mode = 0
        self.own_fields = quantizer is None

    @property
    def quantizer(self):
        """The flat index of the coarse centroids, shared with the caller (filled by training)."""
        q = getattr(self, "_shared_q", None)
        if q is None:
            q = self._shared_q = (IndexFlatL2(self.d) if self.coarse_metric == "l2" else IndexFlatIP(self.d))
        if self.centroids.shape[0] == self.nlist and q.ntotal != self.nlist:
            q.reset()
            q.add(self.centroids.float().cpu().numpy())
        return q

    @quantizer.setter
    def quantizer(self, q) -> None:
        self._shared_q = q

    @property
    def quantizer_trains_alone(self) -> int:
        """0, as Faiss reports for a flat quantizer trained by the IVF index."""
        return 0

    def _take_shared(self) -> None:
        q = getattr(self, "_shared_q", None)
        if q is not None and self.centroids.shape[0] != self.nlist and q.ntotal == self.nlist:
            self._take_quantizer(q)

    def train(self, x) -> None:
        """Train on x (n, d); a quantizer trained after this index was made is used as it is (Faiss)."""
        self._take_shared()  # a quantizer trained after this index was made is used as it is (Faiss)
        super().train(x)
        self.quantizer  # noqa: B018  (fills the shared object)

    def add(self, x) -> None:
        """Add x (n, d) under labels next_label, ...; takes a quantizer trained meanwhile, as train does."""
        self._take_shared()
        super().add(x)

    def search(self, x, k, *, params=None, D=None, I=None):
        """As torch_ivf's search (numpy in, numpy out), counting into cvar.indexIVF_stats."""
        params = checked(params)
        out = super().search(x, k, params=params, D=D, I=I)
        if self.nlist > 1:
            cvar.indexIVF_stats.add_search(self, self._vectors(_rows(x))[0], params)
        if isinstance(out[1], np.ndarray):
            out = fill_topk(self, _rows(x), k, params, *out)
        return out

    def range_search(self, x, thresh, *, params=None):
        """As torch_ivf's range_search in Faiss's order; honours max_empty_result_buckets of
        SearchParametersIVF."""
        m = int(getattr(params, "max_empty_result_buckets", 0) or 0)
        if m and self.parallel_mode != 0:
            raise FaissValueError("max_empty_result_buckets needs parallel_mode 0 (queries scanned one by one), "
                                  f"got parallel_mode {self.parallel_mode}")
        params = checked(params)
        lims, D, I = super().range_search(x, thresh, params=params)
        if m and isinstance(lims, np.ndarray):
            lims, D, I = stop_after_empty(self, self._vectors(_rows(x))[0], params or core.SearchParams(), lims, D, I, m)
        return lims, D, I

    def add_with_ids(self, x, ids) -> None:
        """Add x (n, d) under ids (n,) int64; refused with an Array direct map (use Hashtable)."""
        if self.direct_map.type == DirectMap.Array:
            raise FaissValueError("add_with_ids is not supported with an Array direct map (use Hashtable)")
        self._take_shared()
        super().add_with_ids(x, ids)

    def remove_ids(self, sel) -> int:
        """Remove by ids or IDSelector, returning how many; refused with an Array direct map."""
        if self.direct_map.type == DirectMap.Array:
            raise FaissValueError("remove_ids is not supported with an Array direct map (use Hashtable)")
        return super().remove_ids(_selection(sel))

    def update_vectors(self, ids, x) -> None:
        """Faiss's update_vectors: replace the stored vectors of ``ids`` (each stored once) by x (n, d),
        in the lists they now fall into; needs a direct map, as in Faiss."""
        if self.direct_map.type == DirectMap.NoMap:
            raise FaissValueError("update_vectors needs a direct map: call make_direct_map() or "
                                  "set_direct_map_type() first")
        xv, _ = self._vectors(_rows(x))
        ids = self._ids(np.asarray(_numpy(ids), dtype=np.int64).reshape(-1), xv.shape[0])
        self._positions_of(ids)  # every id must be stored (raises before anything changes)
        StoredIndex.remove_ids(self, ids)
        StoredIndex.add_with_ids(self, xv, ids)

    def set_direct_map_type(self, type_) -> None:
        """DirectMap.NoMap, Array (ids 0..ntotal-1 only) or Hashtable; reconstruct needs one set."""
        type_ = int(type_)
        if type_ not in (DirectMap.NoMap, DirectMap.Array, DirectMap.Hashtable):
            raise FaissValueError(f"direct map type must be NoMap, Array or Hashtable, got {type_}")
        if type_ == DirectMap.Array and self.ntotal:
            labels = np.sort(_numpy(self.labels()))
            if not np.array_equal(labels, np.arange(self.ntotal)):
                raise FaissValueError("an Array direct map needs ids 0..ntotal-1 (use Hashtable)")
        self.direct_map.type = type_

    def make_direct_map(self, new_maintain=True) -> None:
        """set_direct_map_type(Array) (new_maintain) or NoMap, as in Faiss."""
        self.set_direct_map_type(DirectMap.Array if new_maintain else DirectMap.NoMap)

    def reconstruct_batch(self, key, x=None):
        """(n, d) float32 vectors of the labels ``key`` (FaissValueError without a direct map)."""
        if self.direct_map.type == DirectMap.NoMap:
            raise FaissValueError("direct map not initialized: call make_direct_map() or "
                                  "set_direct_map_type() before reconstruct")
        return super().reconstruct_batch(key, x)

    def _found_vectors(self, ids) -> np.ndarray:
        # Faiss reads the search's hits from the lists: no direct map needed
        return _numpy(core.IndexIVF.reconstruct_batch(self, torch.as_tensor(ids))).astype(np.float32)

    @property
    def nprobe(self) -> int:
        """Lists scanned per query. Faiss accepts 0 here and refuses it at search time; so does this."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value) -> None:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value == 0:
            self._nprobe = 0
        else:
            core.IndexIVF.nprobe.fset(self, value)

    def search_preassigned(self, x, k, assign, centroid_dis=None, *, params=None, D=None, I=None):
        """search() over the lists assign (nq, nprobe) names, e.g. index.quantizer.search(x, nprobe)[1]."""
        Dn, In = super().search_preassigned(_rows(x), k, assign, centroid_dis, params=params)
        for buf, res in ((D, Dn), (I, In)):
            if buf is not None:
                buf[...] = res
        return (Dn if D is None else D), (In if I is None else I)

    def range_search_preassigned(self, x, thresh, assign, centroid_dis=None, *, params=None):
        """range_search() over the lists assign names, in Faiss's order (lists as given, each as stored)."""
        lims, D, I = super().range_search_preassigned(_rows(x), thresh, assign, centroid_dis, params=params,
                                                      order="storage")
        return (lims.astype(np.uint64) if isinstance(lims, np.ndarray) else lims), D, I

    def reconstruct_n(self, n0=0, ni=-1, x=None):
        """Vectors with ids n0 .. n0+ni-1 (Faiss reads them from the lists: no direct map needed)."""
        ni = self.ntotal - n0 if ni == -1 else ni
        out = _numpy(core.IndexIVF.reconstruct_batch(self, torch.arange(n0, n0 + ni))).astype(np.float32)
        if x is not None:
            x[...] = out
            return x
        return out

    def merge_from(self, other, add_id=0) -> None:
        """Move every vector of ``other`` (same type and training) here, labels shifted by add_id."""
        super().merge_from(other, add_id)


def _faiss_init(base):
    """A constructor that builds ``base`` on the given (shared) quantizer, with base's signature."""
    @faiss_form
    @functools.wraps(base.__init__)
    def __init__(self, *args, quantizer=None, **kwargs):
        base.__init__(self, *args, quantizer=quantizer, **kwargs)
        self._faiss_setup(quantizer)
    return __init__


class IndexIVFFlat(_IVF, core.IndexIVFFlat):
    __init__ = _faiss_init(core.IndexIVFFlat)


class _PQFlags:
    """Faiss's polysemous-training flag, kept so Faiss code runs: torch_ivf trains no polysemous code
    order and searches without Hamming filtering, so it changes nothing."""

    do_polysemous_training = False


class IndexIVFPQ(_PQFlags, _IVF, core.IndexIVFPQ):
    __init__ = _faiss_init(core.IndexIVFPQ)


class IndexIVFPQPanorama(_IVF, core.IndexIVFPQPanorama):
    __init__ = _faiss_init(core.IndexIVFPQPanorama)


class IndexIVFFlatPanorama(_IVF, core.IndexIVFFlatPanorama):
    """Faiss's ``IndexIVFFlatPanorama(quantizer, d, nlist, n_levels, metric, own_invlists, batch_size)``;
    own_invlists and batch_size (Faiss's scan block) change nothing here."""

    @faiss_form
    def __init__(self, d, nlist, n_levels=8, metric=METRIC_L2, own_invlists=True, batch_size=None, *,
                 quantizer=None, nprobe=1, transform=False, cap=1e9, norm_dtype="float32", device=None,
                 dtype=torch.float32, search_mode="auto", max_codes=0, seed=1234, niter=20, verbose=None):
        self.batch_size = Panorama.kDefaultBatchSize if batch_size is None else int(batch_size)
        core.IndexIVFFlatPanorama.__init__(self, d, nlist, n_levels, metric, nprobe, transform=transform, cap=cap,
                                           norm_dtype=norm_dtype, device=device, dtype=dtype,
                                           search_mode=search_mode, max_codes=max_codes, seed=seed, niter=niter,
                                           quantizer=quantizer, verbose=verbose)
        self._faiss_setup(quantizer)


class IndexPQ(_PQFlags, _Positional, _IVF, core.IndexIVFPQ):
    """Faiss's ``IndexPQ(d, M, nbits, metric)``: a PQ code per vector, no coarse lists (one list,
    codes of the vectors themselves), numbered by position. Reconstruct needs no direct map."""

    def __init__(self, d=None, M=None, nbits=8, metric=METRIC_L2, *, nprobe=1, pq_niter=25, pq_max_train=65536,
                 device=None, dtype=torch.float32, search_mode="auto", max_codes=0, seed=1234, niter=20,
                 verbose=None):
        core.IndexIVFPQ.__init__(self, d, 1, M, nbits, metric, nprobe, by_residual=False, pq_niter=pq_niter,
                                 pq_max_train=pq_max_train, device=device, dtype=dtype, search_mode=search_mode,
                                 max_codes=max_codes, seed=seed, niter=niter, verbose=verbose)
        self._faiss_setup(None)

    def _faiss_setup(self, quantizer=None) -> None:
        super()._faiss_setup(quantizer)
        self.direct_map.type = DirectMap.Hashtable  # labels are always mapped; Faiss's IndexPQ has no map

    def config(self) -> dict:
        """Constructor keyword arguments that rebuild this index (JSON-serialisable)."""
        cfg = super().config()
        del cfg["nlist"], cfg["by_residual"]
        return cfg


class IndexFlatPanorama(_Positional, core.IndexIVFFlatPanorama):
    """Faiss's ``IndexFlatPanorama(d, metric, n_levels, batch_size)``: exact search, candidates pruned
    level by level (IndexIVFFlatPanorama with one list whose centroid is 0, so it needs no training),
    numbered by position. batch_size (Faiss's scan block) changes nothing here."""

    def __init__(self, d=None, metric=METRIC_L2, n_levels=8, batch_size=Panorama.kDefaultBatchSize, *,
                 device=None):
        core.IndexIVFFlatPanorama.__init__(self, d, 1, n_levels, metric, device=device)
        self.batch_size = int(batch_size)
        self.centroids = torch.zeros(1, self.d)  # one list: every vector, every query

    def reconstruct_batch(self, key, x=None):
        """float32 vectors of ids ``key`` (numpy)."""
        out = _numpy(core.IndexIVF.reconstruct_batch(self, torch.as_tensor(np.asarray(key, dtype=np.int64)).reshape(-1)))
        if x is not None:
            x[...] = out
            return x
        return out.astype(np.float32)

    def config(self) -> dict:
        return {"d": self.d, "metric": self.metric, "n_levels": self.n_levels, "batch_size": self.batch_size}


class IndexFlatL2Panorama(IndexFlatPanorama):
    """Faiss's ``IndexFlatL2Panorama(d, n_levels, batch_size)``."""

    def __init__(self, d=None, n_levels=8, batch_size=Panorama.kDefaultBatchSize, *, device=None):
        super().__init__(d, METRIC_L2, n_levels, batch_size, device=device)

    def config(self) -> dict:
        return {k: v for k, v in super().config().items() if k != "metric"}


class IndexFlatIPPanorama(IndexFlatPanorama):
    """Faiss's ``IndexFlatIPPanorama(d, n_levels, batch_size)``."""

    def __init__(self, d=None, n_levels=8, batch_size=Panorama.kDefaultBatchSize, *, device=None):
        super().__init__(d, METRIC_INNER_PRODUCT, n_levels, batch_size, device=device)

    def config(self) -> dict:
        return {k: v for k, v in super().config().items() if k != "metric"}


class IndexScalarQuantizer(_Positional, core.IndexScalarQuantizer):
    """Faiss's ``IndexScalarQuantizer(d, qtype, metric)``, numbered by position."""

    def __init__(self, d=None, qtype=QT_8bit, metric=METRIC_L2, *, device=None):
        core.IndexScalarQuantizer.__init__(self, d, qtype, metric, device=device)


class IndexIVFScalarQuantizer(_IVF, core.IndexIVFScalarQuantizer):
    __init__ = _faiss_init(core.IndexIVFScalarQuantizer)


class IndexRefine(FaissIndex, core.IndexRefine):
    """Faiss's ``IndexRefine(base_index, refine_index)``: refine_index, a flat index holding the base's vectors
    under the same ids (both may be empty), is used as it is."""

    def __init__(self, base=None, refine=None, refine_dtype=None, *, refine_device=None, base_class=None,
                 base_config=None, device=None):
        if isinstance(base, _Positional):
            base._positional = False
        if refine_dtype is None:  # Faiss's float32 store; torch_ivf's float16 default after a k_factor
            refine_dtype = torch.float32 if refine is None else torch.float16
        core.IndexRefine.__init__(self, base, 1.0 if refine is None else refine, refine_dtype,
                                  refine_device=refine_device, base_class=base_class, base_config=base_config,
                                  device=device)
        self._faiss_setup()

    def _faiss_setup(self) -> None:
        for part in (self.base, self.refine):
            adopt(part)
            if isinstance(part, _Positional):
                part._positional = False


class IndexRefineFlat(FaissIndex, core.IndexRefineFlat):
    """Faiss's ``IndexRefineFlat(base_index)`` (float32 vectors re-score the candidates)."""

    def __init__(self, base=None, k_factor=1.0, refine_dtype=torch.float32, *, refine_device=None,
                 base_class=None, base_config=None, device=None):
        if isinstance(base, _Positional):
            base._positional = False
        core.IndexRefineFlat.__init__(self, base, k_factor, refine_dtype, refine_device=refine_device,
                                      base_class=base_class, base_config=base_config, device=device)
        self._faiss_setup()

    _faiss_setup = IndexRefine._faiss_setup


_TWINS = {core.IndexFlat: IndexFlat, core.IndexFlatL2: IndexFlatL2, core.IndexFlatIP: IndexFlatIP,
          core.IndexIVFFlat: IndexIVFFlat, core.IndexIVFPQ: IndexIVFPQ, core.IndexIVFPQPanorama: IndexIVFPQPanorama,
          core.IndexIVFFlatPanorama: IndexIVFFlatPanorama, core.IndexRefine: IndexRefine,
          core.IndexRefineFlat: IndexRefineFlat, core.IndexScalarQuantizer: IndexScalarQuantizer,
          core.IndexIVFScalarQuantizer: IndexIVFScalarQuantizer}


def adopt(index):
    """Give a torch_ivf index (from read_index, the factory, a refine wrapper) its Faiss-shaped class."""
    if isinstance(index, FaissIndex) or not isinstance(index, core.Index):
        return index
    twin = _TWINS.get(type(index))
    if twin is None:
        return index
    if twin is IndexIVFPQ and index.nlist == 1 and not index.by_residual:
        twin = IndexPQ
    index.__class__ = twin
    index._faiss_setup()
    return index


for _cls in (IndexFlat, IndexFlatL2, IndexFlatIP, IndexIVFFlat, IndexIVFPQ, IndexIVFPQPanorama, IndexIVFFlatPanorama,
             IndexPQ, IndexRefine, IndexRefineFlat, IndexScalarQuantizer, IndexIVFScalarQuantizer, IndexFlatPanorama,
             IndexFlatL2Panorama, IndexFlatIPPanorama, IndexFlat1D):
    wrap_methods(_cls, _PUBLIC)
for _cls in (IndexPQ, IndexFlatPanorama, IndexFlatL2Panorama, IndexFlatIPPanorama, IndexFlat1D):
    _io.register(_cls)  # its own class on disk: Faiss's constructor, not IndexIVFPQ's

__all__ = ["DirectMap", "Panorama", "IndexFlat", "IndexFlatL2", "IndexFlatIP", "IndexIVFFlat", "IndexIVFPQ", "IndexIVFPQPanorama",
           "IndexIVFFlatPanorama", "IndexPQ", "IndexRefine", "IndexRefineFlat", "IndexScalarQuantizer",
           "IndexIVFScalarQuantizer", "IndexFlatPanorama", "IndexFlatL2Panorama", "IndexFlatIPPanorama", "IndexFlat1D", "adopt", "METRIC_L2",
           "METRIC_INNER_PRODUCT"]
