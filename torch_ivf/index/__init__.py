"""Faiss-like indexes. ``from torch_ivf.index import IndexFlatL2, IndexFlatIP, IndexIVFFlat`` (the
earlier torch-ivf's import path) keeps working."""
from .. import io as _io
from .base import METRIC_INNER_PRODUCT, METRIC_L2, Index, SearchParametersIVF, SearchParams
from .flat import IndexFlat, IndexFlatIP, IndexFlatL2
from .ivf import IndexIVF
from .ivf_flat import IndexIVFFlat
from .ivf_flat_panorama import IndexIVFFlatPanorama
from .ivf_pq import IndexIVFPQ
from .ivf_pq_panorama import IndexIVFPQPanorama
from .ivf_sq import IndexIVFScalarQuantizer, IndexScalarQuantizer
from .refine import IndexRefine, IndexRefineFlat, IndexRefineSearchParameters, extract_index_ivf

for _cls in (IndexFlat, IndexFlatL2, IndexFlatIP, IndexIVFFlat, IndexIVFPQ, IndexIVFPQPanorama, IndexIVFFlatPanorama, IndexRefine,
             IndexScalarQuantizer, IndexIVFScalarQuantizer,
             IndexRefineFlat):
    _io.register(_cls)

__all__ = ["Index", "IndexIVF", "IndexFlat", "IndexFlatL2", "IndexFlatIP", "IndexIVFFlat", "IndexIVFPQ", "IndexIVFPQPanorama", "IndexIVFFlatPanorama", "IndexRefine", "IndexRefineFlat",
           "IndexScalarQuantizer", "IndexIVFScalarQuantizer",
           "SearchParams", "SearchParametersIVF", "IndexRefineSearchParameters", "METRIC_L2", "METRIC_INNER_PRODUCT", "extract_index_ivf"]
