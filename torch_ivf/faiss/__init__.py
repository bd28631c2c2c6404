"""Faiss's Python API over torch_ivf: ``import torch_ivf.faiss as faiss`` and Faiss code runs unchanged
for what torch_ivf implements (Flat, IVFFlat, IVFPQ, PQ, the Panorama indexes, refine, IDMap, the factory,
I/O in torch_ivf's safe format, ParameterSpace, selectors, search parameters). See docs/faiss.md for
what differs."""
from types import ModuleType as _ModuleType

from ..index.base import METRIC_INNER_PRODUCT, METRIC_L2
from ..kmeans import ClusteringParameters
from ..pq import ProductQuantizer
from ..sq import ScalarQuantizer
from .errors import FaissTypeError, FaissValueError
from .factory import index_factory
from .idmap import IndexIDMap, IndexIDMap2
from .shards import IndexReplicas, IndexShards
from .indexes import (DirectMap, IndexFlat, IndexFlat1D, IndexFlatIP, IndexFlatIPPanorama, IndexFlatL2, IndexFlatL2Panorama,
                      IndexFlatPanorama, IndexIVFFlat, IndexIVFFlatPanorama, IndexIVFPQ,
                      IndexIVFPQPanorama, IndexIVFScalarQuantizer, IndexPQ, Panorama, IndexRefine, IndexRefineFlat,
                      IndexScalarQuantizer)
from .utils import (IO_FLAG_ONDISK_SAME_DIR, IO_FLAG_PQ_SKIP_SDC_TABLE, IO_FLAG_READ_ONLY, IO_FLAG_SKIP_IVF_DATA,
                    IO_FLAG_SKIP_PRECOMPUTE_TABLE, IO_FLAG_SKIP_STORAGE, IDSelectorTranslated, PyCallbackIDSelector, read_ProductQuantizer,
                    swig_ptr, write_ProductQuantizer)
from .utils import (IDSelectorAll, IDSelectorBitmap, IDSelectorRange, IDSelectorXOr, IndexIVFStats, IVFSearchParameters,
                    Kmeans, ParameterSpace, SearchParameters, SearchParametersIVF, SIMDConfig, SIMDLevel_ARM_NEON,
                    SIMDLevel_ARM_SVE, SIMDLevel_AVX2, SIMDLevel_AVX512, SIMDLevel_AVX512_SPR, SIMDLevel_NONE,
                    SIMDLevel_RISCV_RVV, clone_index, cvar, deserialize_index, downcast_index, eval_intersection,
                    extract_index_ivf, knn, lrand, normalize_L2, omp_get_max_threads, omp_set_num_threads, rand,
                    rand_smooth_vectors, randint, randn, read_index, serialize_index, try_extract_index_ivf,
                    vector_to_array, write_index)
from ..selectors import IDSelector, IDSelectorAnd, IDSelectorArray, IDSelectorBatch, IDSelectorNot, IDSelectorOr
from ..index import Index, IndexIVF, IndexRefineSearchParameters

from .. import __version__  # torch-ivf's version (Faiss code reads faiss.__version__)

__all__ = sorted(n for n, v in globals().items() if not n.startswith("_") and not isinstance(v, _ModuleType))
