"""Uncompressed vectors (float32, or float16 / bfloat16 residuals in IVF)."""
from __future__ import annotations

import torch

from .base import Codec


class FlatCodec(Codec):
    """Fields ``vectors`` (d values of ``dtype``) and, for l2, ``bias``: ||v||^2 + 2<c, v> of the stored
    (rounded) row v, so distances stay consistent with what is stored."""

    def __init__(self, d: int, metric: str, dtype=torch.float32, by_residual: bool = False):
        self.d, self.metric, self.dtype, self.by_residual = d, metric, dtype, by_residual

    lossless = True  # (half-precision residuals round, but re-assigning them is allowed)
    kernel_ready = True  # the flat-scan Triton kernel reads these rows (kernel_rows)

    def fields(self) -> dict:
        fields = {"vectors": ((self.d,), self.dtype)}
        if self.metric == "l2":
            fields["bias"] = ((), torch.float32)
        return fields

    def quantize(self, r: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """(stored fields, float32 values they decode to) of rows r."""
        stored = r.to(self.dtype)
        return {"vectors": stored}, stored.float()

    def encode(self, r, c, verbose=False) -> dict:
        fields, v = self.quantize(r)
        return self.with_bias(fields, v, c)

    def with_bias(self, fields: dict, v: torch.Tensor, c) -> dict:
        if self.metric == "l2":
            fields["bias"] = v.pow(2).sum(1) + (2 * (c * v).sum(1) if c is not None else 0)
        return fields

    def rows(self, invlists, pos):
        return invlists.field("vectors")[pos].float()

    def sa_bytes(self) -> int:
        return self.d * torch.finfo(self.dtype).bits // 8

    def payload(self, fields: dict) -> torch.Tensor:
        """The standalone code bytes (n, sa_bytes) of quantized fields."""
        return fields["vectors"].contiguous().view(torch.uint8)

    def sa_encode(self, r):
        return self.payload(self.quantize(r)[0])

    def sa_decode(self, payload):
        return payload.contiguous().view(self.dtype).float()

    def gather_cost(self) -> int:
        return self.d

    def kernel_rows(self, invlists, q: torch.Tensor):
        """(slab the flat-scan kernel reads as rows, queries it scores them with, per-query constant
        added to every score or None): here the stored vectors and q itself."""
        return invlists.field("vectors"), q, None
