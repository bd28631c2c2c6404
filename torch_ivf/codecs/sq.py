"""Scalar-quantized rows: one code of 4 to 16 bits per dimension (torch_ivf.sq, Faiss's layout)."""
from __future__ import annotations

import torch

from ..sq import DIRECT_OFFSET, QT_8bit, QT_8bit_uniform, QT_bf16, QT_fp16, ScalarQuantizer
from .flat import FlatCodec

# one byte or one half per dimension
_KERNEL_QTYPES = (QT_8bit, QT_8bit_uniform, QT_fp16, QT_bf16, *DIRECT_OFFSET)


class SQCodec(FlatCodec):
    """Fields ``codes`` (code_size bytes) and, for l2, ``bias`` of the decoded row, as for flat codes."""

    lossless = False

    def __init__(self, sq: ScalarQuantizer, metric: str, by_residual: bool):
        super().__init__(sq.d, metric, torch.float32, by_residual)
        self.sq = sq

    @property
    def is_trained(self) -> bool:
        return self.sq.is_trained

    def train(self, r, verbose=False) -> None:
        self.sq.train(r)

    def fields(self) -> dict:
        fields = {"codes": ((self.sq.code_size,), torch.uint8)}
        if self.metric == "l2":
            fields["bias"] = ((), torch.float32)
        return fields

    def quantize(self, r):
        codes = self.sq.encode(r)
        return {"codes": codes}, self.sq.decode_codes(codes)

    def from_codes(self, codes: torch.Tensor, c) -> dict:
        """Stored fields of given codes (from_faiss)."""
        return self.with_bias({"codes": codes}, self.sq.decode_codes(codes), c)

    def code_rows(self, invlists, pos) -> torch.Tensor:
        """uint8 codes (..., code_size) of slab rows pos."""
        return invlists.gather("codes", pos)

    def rows(self, invlists, pos):
        return self.sq.decode_codes(invlists.field("codes")[pos])

    def sa_bytes(self) -> int:
        return self.sq.code_size

    def payload(self, fields):
        return fields["codes"]

    def sa_decode(self, payload):
        return self.sq.decode_codes(payload)

    def gather_cost(self) -> int:
        return 2 * self.d  # the gathered codes and the decoded rows

    def tensors(self) -> dict:
        return {"sq_trained": self.sq.trained}

    def load_tensors(self, tensors) -> None:
        if "sq_trained" in tensors and tensors["sq_trained"].numel():
            self.sq.set_trained(tensors["sq_trained"])

    def to(self, device):
        self.sq.to(device)
        return self

    @property
    def kernel_ready(self) -> bool:
        """True where the flat-scan kernel reads the codes as they are (see kernel_rows)."""
        return self.sq.qtype in _KERNEL_QTYPES

    def kernel_rows(self, invlists, q):
        """8-bit codes decode affinely, x_i = vmin_i + (code_i + 0.5) * vdiff_i / 255, so
        q.x = (q * vdiff / 255).code + (q.vmin + 0.5 * sum(q * vdiff / 255)): the kernel reads the
        uint8 codes themselves (4x fewer bytes than float32 rows) against rescaled queries. The direct
        types decode to code + offset: q.x = q.code + offset * sum(q). fp16 / bf16 codes are read as
        half-precision rows."""
        codes = invlists.field("codes")
        if self.sq.qtype in DIRECT_OFFSET:
            offset = DIRECT_OFFSET[self.sq.qtype]
            return codes, q, (offset * q.sum(1) if offset else None)
        if self.sq.qtype == QT_fp16:
            return codes.view(torch.float16), q, None
        if self.sq.qtype == QT_bf16:
            return codes.view(torch.bfloat16), q, None
        vmin, vdiff = self.sq._range()
        qs = q * (vdiff / 255.0)
        return codes, qs.contiguous(), q @ vmin.expand(self.d) + 0.5 * qs.sum(1)
