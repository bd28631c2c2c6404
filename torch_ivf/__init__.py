"""torch-ivf: PyTorch-native vector search with a Faiss-like API, on any torch device."""
from .factory import index_factory
from .index import (METRIC_INNER_PRODUCT, METRIC_L2, Index, IndexFlat, IndexFlatIP, IndexFlatL2, IndexIVF,
                    IndexIVFFlat, IndexIVFPQ, IndexIVFPQPanorama, IndexIVFFlatPanorama, IndexRefine, IndexRefineFlat,
                    IndexRefineSearchParameters, IndexIVFScalarQuantizer, IndexScalarQuantizer, SearchParametersIVF,
                    SearchParams, extract_index_ivf)
from .integrity import CorruptFileError
from .io import clone_index, read_index, write_index
from . import kernels  # noqa: F401  (torch_ivf.kernels.enabled toggles the Triton paths)
from .kmeans import kmeans
from .shards import IndexReplicas, IndexShards
from .parameters import ParameterError, ParameterSpace
from .pq import ProductQuantizer
from .sq import ScalarQuantizer
from .selectors import IDSelector, IDSelectorAnd, IDSelectorArray, IDSelectorBatch, IDSelectorNot, IDSelectorOr, IDSelectorRange
from .transforms import PanoramaTransform

__version__ = "0.2.0"
__all__ = ["Index", "IndexIVF", "IndexFlat", "IndexFlatL2", "IndexFlatIP", "IndexIVFFlat", "IndexIVFPQ", "IndexIVFPQPanorama", "IndexIVFFlatPanorama", "IndexRefine", "IndexRefineFlat", "SearchParams", "SearchParametersIVF",
           "IndexRefineSearchParameters", "clone_index",
           "IDSelector", "IDSelectorRange", "IDSelectorBatch", "IDSelectorArray", "IDSelectorNot", "IDSelectorAnd", "IDSelectorOr",
           "METRIC_L2", "METRIC_INNER_PRODUCT", "extract_index_ivf", "index_factory", "read_index", "write_index", "kmeans",
           "ProductQuantizer", "PanoramaTransform", "CorruptFileError", "ScalarQuantizer", "IndexScalarQuantizer",
           "IndexIVFScalarQuantizer", "ParameterSpace", "ParameterError",
           "IndexShards", "IndexReplicas"]
