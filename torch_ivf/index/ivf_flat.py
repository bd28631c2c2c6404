"""IVF with uncompressed vectors: the scan is a GEMM against a contiguous list slice."""
from __future__ import annotations

import torch

from .ivf import IndexIVF


class FlatCodes:
    """Codec + scanner for uncompressed vectors (shared by IndexIVFFlat and IndexFlat)."""

    def _fields(self) -> dict:
        return {"vectors": ((self.d,), self.dtype), "sqnorms": ((), torch.float32)}

    def _encode(self, x, lists) -> dict:
        stored = x.to(self.dtype)
        # The norm of the *stored* (possibly rounded) vector keeps l2 = ||q||^2 + ||x||^2 - 2q.x exact.
        return {"vectors": stored, "sqnorms": stored.float().pow(2).sum(1)}

    def _decode(self, pos, lists) -> torch.Tensor:
        return self.invlists.data["vectors"][pos].float()

    def _compute_dtype(self) -> torch.dtype:
        # Half-precision GEMM is fast on accelerators but very slow on CPUs.
        return torch.float32 if self.device.type == "cpu" else self.dtype

    def _query_context(self, q, probe) -> dict:
        return {"q": q.to(self._compute_dtype()), "qnorm": q.pow(2).sum(1)}

    def _score_block(self, ctx, qsel, list_id, start, end):
        x = self.invlists.data["vectors"][start:end].to(self._compute_dtype())
        s = (ctx["q"][qsel] @ x.T).float()
        if self.metric == "l2":
            s = 2 * s - self.invlists.data["sqnorms"][start:end][None, :]
        return s

    _batched_lists = True

    def _score_lists(self, ctx, qsel, pos, lists):
        x = self.invlists.data["vectors"][pos].to(self._compute_dtype())  # (B, S, d)
        s = torch.bmm(ctx["q"][qsel], x.transpose(1, 2)).float()  # (B, C, S)
        if self.metric == "l2":
            s = 2 * s - self.invlists.data["sqnorms"][pos][:, None, :]
        return s

    def _score_gathered(self, ctx, qsel, pos, lists):
        x = self.invlists.data["vectors"][pos].to(self._compute_dtype())  # (b, R, d)
        s = torch.bmm(x, ctx["q"][qsel][:, :, None]).squeeze(2).float()
        if self.metric == "l2":
            s = 2 * s - self.invlists.data["sqnorms"][pos]
        return s

    def _distances(self, ctx, scores):
        if self.metric == "l2":
            return (ctx["qnorm"][:, None] - scores).clamp_min(0)
        return scores


class IndexIVFFlat(FlatCodes, IndexIVF):
    """``IndexIVFFlat(d, nlist, metric="l2", *, nprobe=1, ...)`` or Faiss's
    ``IndexIVFFlat(quantizer, d, nlist, metric)``."""

    def __init__(self, *args, **kwargs):
        if args and hasattr(args[0], "d") and hasattr(args[0], "ntotal"):
            kwargs["quantizer"], args = args[0], args[1:]
        super().__init__(*args, **kwargs)
