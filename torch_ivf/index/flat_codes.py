"""Scanner for rows stored as d values (flat vectors, scalar-quantized codes): GEMMs against decoded
rows, and the Triton list-GEMM kernel on GPUs.

``FlatScanner`` is the object IndexFlat, IndexIVFFlat and the scalar-quantizer indexes hold as
``index.scanner``; its methods (``FlatCodes``) read only ``codec``, ``invlists``, ``metric``,
``by_residual`` and ``device``, which FlatScanner takes from the codec and the lists, so
IndexIVFFlatPanorama, whose pruned scans are still methods of the index, mixes them in directly."""
from __future__ import annotations

import torch

from .. import kernels
from ..codecs import FlatCodec
from ..search import cost
from ..search.common import SCORE_BUDGET, pad_k
from ..search.scanner import CodecScanner, Scanner
from ..search.state import QueryState


class FlatCodes(Scanner):
    """Scan methods of rows a flat-style codec decodes to d floats (FlatCodec, SQCodec): IndexFlat, the
    IVF-Flat indexes and the scalar quantizers.

    Every score has one form, s = scale * q.v - bias[v] + pair[q, list] (larger is better):
    - plain storage (float32): v = x, bias = ||x||^2 (l2), pair = 0;
    - residual storage (float16 / bfloat16 IVF, scalar quantizers by default): v = x - c_list,
      bias = ||r||^2 + 2<c, r> (l2), pair = the coarse score (2q.c - ||c||^2 for l2, q.c for ip).
      A half-precision GEMM rounds its output relative to |q.v|; residuals are much shorter than
      vectors, so the rounding error shrinks with them (measured: recall 0.97 -> float32's within 0.005).
    """

    def _stored(self, pos) -> torch.Tensor:
        """float32 decoded rows (vectors or residuals) at slab rows pos (a slice or any-shape tensor)."""
        return self.codec.rows(self.invlists, pos)

    def gather_cost(self) -> int:
        return self.codec.gather_cost()

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
        out = torch.empty((qsel.shape[0], end - start), device=ctx.q.device)
        self.score_block_into(ctx, qsel, list_id, start, end, out)
        return out

    def score_block_into(self, ctx, qsel, list_id, start, end, out, q=None):
        """score_block's scores written to out (a (len(qsel), end - start) view with unit column stride),
        q: ctx.q[qsel] where the caller has it: the same ops on the same operands, without temporaries
        (the CPU scans of search/select.py and search/per_query.py, one call per list)."""
        q = ctx.q.index_select(0, qsel) if q is None else q
        views = ctx.cache.get("slab_views")
        if views is None:  # float32 rows are the slab itself: its transpose and bias row, sliced per list
            vectors = self.invlists.field("vectors") if type(self.codec).rows is FlatCodec.rows else None
            plain = vectors is not None and vectors.dtype == torch.float32
            views = ctx.cache["slab_views"] = (vectors.T, self._bias(slice(None))[None, :] if self.metric == "l2"
                                               else None) if plain else False
        if views:
            xT = views[0][:, start:end]
            bias = views[1][:, start:end] if views[1] is not None else None
        else:
            xT = self._stored(slice(start, end)).T
            bias = self._bias(slice(start, end))[None, :] if self.metric == "l2" else None
        if bias is not None:  # one addmm instead of GEMM + two passes (1.85x on a CPU at nq=19600)
            torch.addmm(bias, q, xT, beta=-1, alpha=self._scale, out=out)
        else:
            torch.mm(q, xT, out=out)
        if self.by_residual:
            out += ctx.coarse[qsel, list_id][:, None]

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

    @property
    def kernel_scan(self) -> bool:
        """True where the flat-scan Triton kernel can read the codec's rows (SQCodec: 8-bit and half codes)."""
        return self.codec.kernel_ready

    def scan_kernel(self, ctx, probe, k, mask, max_codes):
        """kernels.flat_scan: each probed list's (or row chunk's, cost.flat_chunk_rows) best rows per
        query, then one top-k per query; None for k above the kernel's (the matrix path's torch gather
        then scans: like the kernel, no host sync, so CUDA graphs capture it)."""
        from ..kernels import flat_scan
        if k > flat_scan.MAX_K:
            return None
        starts, sizes = self.invlists.device_meta()
        ct = ctx.coarse.gather(1, probe) if self.by_residual else None
        rows, q, const = self.codec.kernel_rows(self.invlists, ctx.q.contiguous())
        if const is not None:  # a per-query term of every score (scalar quantizers' offsets)
            const = self._scale * const[:, None]
            ct = const.expand(probe.shape) if ct is None else ct + const
        ct = None if ct is None else ct.contiguous()
        data, P, inv = self.invlists.fields(), probe.shape[1], self.invlists
        nq = q.shape[0]
        probe_rows = cost.flat_probe_rows(nq, q.shape[1], k, self.device)
        if probe_rows:  # small batches: query-major programs straight from the probe table
            s, at = flat_scan.flat_probe_scan(q, rows, data.get("bias"), ct, starts, sizes, probe.contiguous(),
                                              mask, max_codes, self._scale, k, probe_rows, inv.sizes)
            return pad_k(*kernels.topk_rows(s, at, min(k, s.shape[1])), k)
        lens = sizes[probe]
        before = torch.cumsum(lens, 1) - lens if max_codes else probe  # max_codes counts rows so far
        best_s, best_p = [], []
        step = max(1, SCORE_BUDGET // (P * k))  # bounds the (queries, P * KOUT) output
        for c in range(0, nq, step):
            b = slice(c, c + step)
            chunk = cost.flat_chunk_rows(q[b].shape[0], P, inv.nlist, inv.ntotal, inv.max_size, self.device)
            s, at = flat_scan.flat_scan(q[b], rows, data.get("bias"), None if ct is None else ct[b].contiguous(),
                                        starts, sizes, probe[b].contiguous(), before[b].contiguous(),
                                        data["labels"], mask, max_codes, self._scale, k, chunk, inv.sizes)
            values, pos = kernels.topk_rows(s, at, min(k, s.shape[1]))
            best_s.append(values)
            best_p.append(pos)
        return pad_k(torch.cat(best_s), torch.cat(best_p), k)

    def distances(self, ctx, scores):
        if self.metric == "l2":
            return (ctx.qnorm[:, None] - scores).clamp_min(0)
        return scores


class FlatScanner(FlatCodes, CodecScanner):
    """``FlatScanner(codec, invlists)``: the scanner object of IndexFlat, IndexIVFFlat and the
    scalar-quantizer indexes (``index.scanner``) over the index's own codec and inverted lists."""
