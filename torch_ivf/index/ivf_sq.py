"""Scalar-quantizer indexes (Faiss's IndexScalarQuantizer and IndexIVFScalarQuantizer): the codec
torch_ivf.codecs.SQCodec (4- to 16-bit codes, torch_ivf.sq) under flat codes' scanner (FlatScanner),
so every search path, filter and tie rule of IndexFlat / IndexIVFFlat applies unchanged."""
from __future__ import annotations

import torch

from ..codecs import SQCodec
from ..sq import QT_8bit, ScalarQuantizer, check_qtype
from .flat import FlatSearch
from .flat_codes import FlatScanner
from .ivf import IndexIVF, faiss_form


class SQCodes:
    """What both scalar-quantizer indexes share: the ScalarQuantizer and the flat codes' scanner (GEMM
    forms over decoded rows; on GPUs the flat-scan kernel reads 8-bit, direct, fp16 and bf16 codes as
    they are, SQCodec.kernel_rows; 4- and 6-bit codes take the torch scans)."""

    @property
    def sq(self) -> ScalarQuantizer:
        """The trained ScalarQuantizer (Faiss's ``index.sq``)."""
        return self.codec.sq

    @property
    def qtype(self) -> int:
        """The ScalarQuantizer code type (QT_8bit, QT_4bit, QT_fp16, ...)."""
        return self.sq.qtype

    @property
    def code_size(self) -> int:
        """Bytes per stored code (Faiss's code_size)."""
        return self.sq.code_size

    def _make_codec(self) -> SQCodec:
        return SQCodec(ScalarQuantizer(self.d, self._qtype, device=self.device), self.metric, self._by_residual)

    def _make_scanner(self) -> FlatScanner:
        return FlatScanner(self.codec, self.invlists)

    def _train_sq(self, x: torch.Tensor) -> None:
        if self.ntotal:
            raise ValueError(f"{type(self).__name__} holds {self.ntotal} encoded vectors that cannot be "
                             "re-encoded; call reset() before training again")
        self.sq.train(x)


class IndexScalarQuantizer(SQCodes, FlatSearch):
    """``IndexScalarQuantizer(d, qtype=QT_8bit, metric="l2", *, device=None)``: exhaustive search over
    scalar-quantized vectors (Faiss's IndexScalarQuantizer).

    Args:
        d: vector dimension.
        qtype: ScalarQuantizer.QT_8bit, QT_6bit, QT_4bit, QT_8bit_uniform, QT_4bit_uniform, QT_fp16,
            QT_bf16, QT_8bit_direct or QT_8bit_direct_signed (Faiss's constants; their names as strings
            work too).
        metric: "l2", "ip", "cosine" or METRIC_L2 / METRIC_INNER_PRODUCT.
        device: torch device of the codes (default CPU).
    """

    def __init__(self, d, qtype=QT_8bit, metric="l2", *, device=None):
        self._qtype, self._by_residual = check_qtype(qtype), False
        super().__init__(d, metric, device=device)

    @property
    def is_trained(self) -> bool:
        """True once the quantizer's ranges are learnt (always for fp16, bf16 and the direct types)."""
        return self.sq.is_trained

    def train(self, x) -> None:
        """Learn the quantizer's ranges from x (n, d) (nothing to learn for fp16, bf16, direct)."""
        x, _ = self._vectors(x)
        self._train_sq(x)

    def config(self) -> dict:
        """Constructor keyword arguments that rebuild this index (JSON-serialisable)."""
        return {"d": self.d, "qtype": self.qtype, "metric": self.metric}


class IndexIVFScalarQuantizer(SQCodes, IndexIVF):
    """IVF over scalar-quantized vectors (or residuals): one code of 4 to 16 bits per dimension.

    ``IndexIVFScalarQuantizer(d, nlist, qtype=QT_8bit, metric="l2", by_residual=True, nprobe=1, *,
    ...)``, or Faiss's form with a leading quantizer: ``IndexIVFScalarQuantizer(quantizer, d, nlist,
    qtype, metric, by_residual)``.

    Args:
        d: vector dimension; or (Faiss's form) a flat index holding, or to be trained to hold, the
            nlist centroids (shared, not copied), followed by d, nlist, qtype, metric, by_residual.
        nlist: number of inverted lists.
        qtype: ScalarQuantizer.QT_8bit, QT_6bit, QT_4bit, QT_8bit_uniform, QT_4bit_uniform, QT_fp16,
            QT_bf16, QT_8bit_direct or QT_8bit_direct_signed.
        metric: "l2", "ip", "cosine" or METRIC_L2 / METRIC_INNER_PRODUCT.
        by_residual: encode x - centroid (True, Faiss's default) or x itself.
        nprobe: lists scanned per query.
        dtype: float32 only (the codes set the precision).
        device, search_mode, max_codes, seed, niter, quantizer, verbose: as for IndexIVFFlat.

    Raises:
        ValueError: an unknown qtype, a dtype other than float32, or a bad IVF argument.
        TypeError: a non-bool by_residual.
    """

    @faiss_form
    def __init__(self, d: int, nlist: int, qtype=QT_8bit, metric="l2", by_residual: bool = True,
                 nprobe: int = 1, *, device=None, dtype=torch.float32, search_mode: str = "auto",
                 max_codes: int = 0, seed: int = 1234, niter: int = 20, quantizer=None, verbose: bool | None = None):
        if not isinstance(by_residual, bool):
            raise TypeError(f"by_residual must be a bool, got {type(by_residual).__name__}")
        if dtype not in (torch.float32, "float32"):
            raise ValueError("dtype must be float32 for IndexIVFScalarQuantizer (the codes set the precision)")
        self._qtype, self._by_residual = check_qtype(qtype), by_residual
        super().__init__(d, nlist, metric, nprobe, device=device, search_mode=search_mode,
                         max_codes=max_codes, seed=seed, niter=niter, quantizer=quantizer, verbose=verbose)

    @property
    def is_trained(self) -> bool:
        """True once the coarse centroids and the quantizer's ranges are trained."""
        return self.coarse.is_trained and self.sq.is_trained

    def config(self) -> dict:
        """Constructor keyword arguments that rebuild this index (JSON-serialisable)."""
        cfg = {k: v for k, v in super().config().items() if k != "dtype"}
        return {**cfg, "qtype": self.qtype, "by_residual": self.by_residual}
