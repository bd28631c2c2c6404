"""IVF with uncompressed vectors: the scan is a GEMM against a contiguous list slice."""
from __future__ import annotations

from .flat_codes import FlatCodes
from .ivf import IndexIVF, split_quantizer_args


class IndexIVFFlat(FlatCodes, IndexIVF):
    """``IndexIVFFlat(d, nlist, metric="l2", *, nprobe=1, device=None, dtype=torch.float32,
    search_mode="auto", max_codes=0, seed=1234, niter=20)`` or Faiss's
    ``IndexIVFFlat(quantizer, d, nlist, metric)``: IVF over uncompressed vectors.

    Args:
        quantizer: (Faiss form) a flat index holding, or to be trained to hold, the nlist centroids;
            the index uses that object (shared, not copied).
        d: vector dimension.
        nlist: number of inverted lists.
        metric: "l2", "ip", "cosine" or METRIC_L2 / METRIC_INNER_PRODUCT.
        nprobe: lists scanned per query.
        device: torch device (default CPU).
        dtype: storage dtype: float32, or float16 / bfloat16 (then residuals are stored).
        search_mode: "auto", "grouped" ("csr") or "matrix".
        max_codes: rows visited per query in coarse order (0: unlimited).
        seed, niter: k-means seed and iterations.
    """

    def __init__(self, *args, **kwargs):
        args, kwargs = split_quantizer_args(args, kwargs)
        super().__init__(*args, **kwargs)
