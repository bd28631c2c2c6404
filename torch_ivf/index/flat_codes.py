"""Codec + scanner for uncompressed vectors, shared by IndexFlat and the IVF-Flat indexes."""
from __future__ import annotations

import torch

from .. import kernels
from ..search import cost
from ..search.common import SCORE_BUDGET, pad_k
from ..search.scanner import Scanner
from ..search.state import QueryState


class FlatCodes(Scanner):
    """Codec + scanner for uncompressed vectors (shared by IndexIVFFlat and IndexFlat).

    Every score has one form, s = scale * q.v - bias[v] + pair[q, list] (larger is better):
    - plain storage (float32): v = x, bias = ||x||^2 (l2), pair = 0;
    - residual storage (float16 / bfloat16 IVF): v = x - c_list, bias = ||r||^2 + 2<c, r> (l2),
      pair = the coarse score (2q.c - ||c||^2 for l2, q.c for ip). A half-precision GEMM rounds its
      output relative to |q.v|; residuals are much shorter than vectors, so the rounding error shrinks
      with them (measured: recall 0.97 -> float32's within 0.005).
    """

    @property
    def by_residual(self) -> bool:
        """True when vectors are stored as residuals to their centroid (float16 / bfloat16 storage)."""
        return self.dtype != torch.float32

    def _fields(self) -> dict:
        fields = {"vectors": ((self.d,), self.dtype)}
        if self.metric == "l2":
            fields["bias"] = ((), torch.float32)
        return fields

    # ---- what a subclass with other codes (scalar quantizers) replaces ---------------------
    def _quantize(self, r: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """(stored fields, float32 values they decode to) of vectors or residuals r."""
        stored = r.to(self.dtype)
        return {"vectors": stored}, stored.float()

    def _stored(self, pos) -> torch.Tensor:
        """float32 decoded rows (vectors or residuals) at slab rows pos (a slice or any-shape tensor)."""
        return self.invlists.field("vectors")[pos].float()

    def _sa_bytes(self) -> int:
        return self.d * torch.finfo(self.dtype).bits // 8

    def _payload(self, fields: dict) -> torch.Tensor:
        """The standalone code bytes (n, _sa_bytes) of quantized fields."""
        return fields["vectors"].contiguous().view(torch.uint8)

    def _unpayload(self, payload: torch.Tensor) -> torch.Tensor:
        return payload.contiguous().view(self.dtype).float()

    # ---- codec ----------------------------------------------------------------------------
    def _encode(self, x, lists) -> dict:
        c = self.centroids[lists] if self.by_residual else None
        out, v = self._quantize(x - c if c is not None else x)
        return self._with_bias(out, v, c)

    def _with_bias(self, fields: dict, v: torch.Tensor, c) -> dict:
        if self.metric == "l2":  # the bias of the *stored* (rounded) values keeps distances consistent
            fields["bias"] = v.pow(2).sum(1) + (2 * (c * v).sum(1) if c is not None else 0)
        return fields

    def _sa_payload(self, x, lists):
        return self._payload(self._quantize(x - self.centroids[lists] if self.by_residual else x)[0])

    def _sa_vectors(self, payload, lists):
        v = self._unpayload(payload)
        return v + self.centroids[lists] if self.by_residual else v

    def _decode(self, pos, lists) -> torch.Tensor:
        v = self._stored(pos)
        return v + self.centroids[lists] if self.by_residual else v

    @property
    def _scale(self) -> float:
        return 2.0 if self.metric == "l2" else 1.0

    state_type = QueryState

    def prepare(self, q, probe, coarse) -> QueryState:
        # Scores are computed in float32 even for half storage: a half GEMM rounds (and on GPUs may
        # accumulate) in half precision, which cost 0.03 recall@10 on the H100; the scan is
        # bandwidth- and launch-bound, so the float32 GEMM costs little.
        return self.state_type(q=q, probe=probe, coarse=coarse, qnorm=q.pow(2).sum(1))

    def _finish(self, ctx, dots, bias, qsel, lists):
        """scale * dots - bias + pair term; qsel/lists broadcast against dots."""
        s = self._scale * dots.float()
        if bias is not None:
            s = s - bias
        if self.by_residual:
            s = s + ctx.coarse[qsel, lists]
        return s

    def _bias(self, rows):
        return self.invlists.field("bias")[rows] if self.metric == "l2" else None

    def score_block(self, ctx, qsel, list_id, start, end):
        x = self._stored(slice(start, end))
        q = ctx.q[qsel]
        if self.metric == "l2":  # one addmm instead of GEMM + two passes (1.85x on a CPU at nq=19600)
            s = torch.addmm(self._bias(slice(start, end))[None, :], q, x.T, beta=-1, alpha=self._scale)
        else:
            s = q @ x.T
        return s + ctx.coarse[qsel, list_id][:, None] if self.by_residual else s

    batched_lists = True
    graph_safe = True
    graph_safe_kernels = True

    def score_lists(self, ctx, qsel, pos, lists, row_ok):
        x = self._stored(pos)  # (B, S, d)
        # One fused kernel: scale * Q X^T - bias, with bias = +inf on padding rows so they score -inf.
        bias = self._bias(pos) if self.metric == "l2" else torch.zeros(pos.shape, device=pos.device)
        bias = bias.masked_fill(~row_ok, float("inf"))
        s = torch.baddbmm(-bias[:, None, :], ctx.q[qsel], x.transpose(1, 2), alpha=self._scale)
        pair = ctx.coarse[qsel, lists[:, None]][..., None] if self.by_residual else None
        return s, pair

    def score_gathered(self, ctx, qsel, pos, lists):
        x = self._stored(pos)  # (b, R, d)
        dots = torch.bmm(x, ctx.q[qsel][:, :, None]).squeeze(2)
        return self._finish(ctx, dots, self._bias(pos), qsel[:, None], lists)

    kernel_scan = True

    def scan_kernel(self, ctx, probe, k, mask, max_codes):
        """kernels.flat_scan: each probed list's (or row chunk's, cost.flat_chunk_rows) best rows per
        query, then one top-k per query."""
        from ..kernels import flat_scan
        if k > flat_scan.MAX_K:  # the torch gather: like the kernel, no host sync (CUDA graphs capture it)
            return self._scan_padded(ctx, probe, k, mask, max_codes)
        starts, sizes = self.invlists.device_meta()
        lens = sizes[probe]
        before = torch.cumsum(lens, 1) - lens if max_codes else probe  # max_codes counts rows so far
        ct = ctx.coarse.gather(1, probe).contiguous() if self.by_residual else None
        data, q, P, inv = self.invlists.fields(), ctx.q.contiguous(), probe.shape[1], self.invlists
        best_s, best_p = [], []
        step = max(1, SCORE_BUDGET // (P * k))  # bounds the (queries, P * KOUT) output
        for c in range(0, q.shape[0], step):
            b = slice(c, c + step)
            chunk = cost.flat_chunk_rows(q[b].shape[0], P, self.nlist, inv.ntotal, inv.max_size, self.device)
            s, rows = flat_scan.flat_scan(q[b], data["vectors"], data.get("bias"), None if ct is None else ct[b],
                                          starts, sizes, probe[b].contiguous(), before[b].contiguous(),
                                          data["labels"], mask, max_codes, self._scale, k, chunk, inv.sizes)
            values, idx = kernels.topk(s, min(k, s.shape[1]))
            best_s.append(values)
            best_p.append(torch.where(torch.isneginf(values), 0, rows.gather(1, idx).long()))
        return pad_k(torch.cat(best_s), torch.cat(best_p), k)

    def distances(self, ctx, scores):
        if self.metric == "l2":
            return (ctx.qnorm[:, None] - scores).clamp_min(0)
        return scores
