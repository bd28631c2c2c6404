"""IVF with uncompressed vectors: the scan is a GEMM against a contiguous list slice."""
from __future__ import annotations

import torch

from ..codecs import FlatCodec
from .flat_codes import FlatScanner
from .ivf import IndexIVF, faiss_form


class IndexIVFFlat(IndexIVF):
    """IVF over uncompressed vectors: exact distances inside the probed lists.

    ``IndexIVFFlat(d, nlist, metric="l2", nprobe=1, *, device=None, ...)``, or Faiss's form with a
    leading quantizer: ``IndexIVFFlat(quantizer, d, nlist, metric=METRIC_L2)``.

    Args:
        d: vector dimension; or (Faiss's form) a flat index holding, or to be trained to hold, the
            nlist centroids, followed by d, nlist, metric. The index uses that object (shared, not copied).
        nlist: number of inverted lists.
        metric: "l2", "ip", "cosine" or METRIC_L2 / METRIC_INNER_PRODUCT.
        nprobe: lists scanned per query (settable later; ``search`` also takes it per call).
        device: torch device (default CPU).
        dtype: storage dtype: float32, or float16 / bfloat16 (then residuals are stored).
        search_mode: "auto", "grouped" ("csr") or "matrix".
        max_codes: rows visited per query in coarse order (0: unlimited).
        seed: k-means seed.
        niter: k-means iterations.
        quantizer: the Faiss form's quantizer, as a keyword.
        verbose: progress bars: True always, False never, None (default) for long work on a terminal.

    Raises:
        ValueError: a bad d, nlist, metric, nprobe, dtype, search_mode or max_codes.
        TypeError: a quantizer given twice, or a verbose other than True, False or None.
    """

    @faiss_form
    def __init__(self, d: int, nlist: int, metric="l2", nprobe: int = 1, *, device=None,
                 dtype=torch.float32, search_mode: str = "auto", max_codes: int = 0, seed: int = 1234,
                 niter: int = 20, quantizer=None, verbose: bool | None = None):
        super().__init__(d, nlist, metric, nprobe, device=device, dtype=dtype, search_mode=search_mode,
                         max_codes=max_codes, seed=seed, niter=niter, quantizer=quantizer, verbose=verbose)

    def _make_codec(self) -> FlatCodec:
        # half-precision storage keeps residuals: their rounding error is relative to short vectors
        return FlatCodec(self.d, self.metric, self.dtype, by_residual=self.dtype != torch.float32)

    def _make_scanner(self) -> FlatScanner:
        return FlatScanner(self.codec, self.invlists)
