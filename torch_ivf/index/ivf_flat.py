"""IVF with uncompressed vectors: the scan is a GEMM against a contiguous list slice."""
from __future__ import annotations

from .flat_codes import FlatCodes
from .ivf import IndexIVF, split_quantizer_args


class IndexIVFFlat(FlatCodes, IndexIVF):
    """``IndexIVFFlat(d, nlist, metric="l2", *, nprobe=1, ...)`` or Faiss's
    ``IndexIVFFlat(quantizer, d, nlist, metric)``."""

    def __init__(self, *args, **kwargs):
        args, kwargs = split_quantizer_args(args, kwargs)
        super().__init__(*args, **kwargs)
