"""IVF with product-quantized residuals, scanned with Faiss's precomputed-table decomposition.

Scores are "larger is better". For l2 (r = decoded residual, c = list centroid):
    ||q - c - r||^2 = ||q||^2 - [ (2<q,c> - ||c||^2)  -  (||r||^2 + 2<c,r>)  +  sum_m 2<q_m, C_m[code_m]> ]
                                  coarse term (per query, list)   init (per vector)   look-up tables (per query)
For ip: <q, c + r> = <q,c> + sum_m <q_m, C_m[code_m]> (init 0). Without by_residual, c = 0.

Every score goes through ``lut_sum``, which adds the M table entries left to right in float32, so a
(query, vector) score is bitwise the same whatever batch it is computed in: this is what lets
IndexIVFPQPanorama return *identical* results while it scores only the survivors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import kernels
from ..search import cost
from ..arrays import positive_int
from ..codecs import PQCodec
from ..pq import ProductQuantizer
from ..search.common import SCORE_BUDGET
from ..search.scanner import CodecScanner, Scanner
from ..search.state import PQState
from .ivf import IndexIVF, faiss_form

_BAG_DEVICES = ("cpu", "cuda")  # device types whose embedding_bag sums a bag left to right (see lut_sum)


@dataclass
class KernelPart:
    """One query chunk of scan_kernel: rows q of the batch, their probed lists (b, P), the offsets of
    the lists in a query's score row (b, P) and the list sizes the scan sees (busy lists: 0), the
    busy lists (or None), earlier candidates (max_codes), the slab meta and fields, the row span."""
    q: slice
    probe: torch.Tensor
    off: torch.Tensor
    sizes: torch.Tensor
    before: torch.Tensor | None
    served: torch.Tensor | None
    starts: torch.Tensor
    data: dict
    span: int


def lut_sum(lut: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """sum_m lut[idx[..., m]], bitwise the same whatever batch or layout computes it (tests compare
    it bitwise). CPU and CUDA: embedding_bag, which adds a bag's entries left to right in float32
    (per output lane on CPUs, one thread per bag on CUDA) and gathers and sums in one pass, 1.7x
    faster on the CPU than torch.take and a tree of halving adds. Other devices (DirectML, MPS):
    that tree, elementwise adds only, so just as batch-invariant."""
    if lut.device.type in _BAG_DEVICES:
        M = idx.shape[-1]
        return F.embedding_bag(idx.reshape(-1, M), lut[:, None], mode="sum").view(idx.shape[:-1])
    g = torch.take(lut, idx.long())
    while g.shape[-1] > 1:
        n, h = g.shape[-1], g.shape[-1] // 2
        s = g[..., :h] + g[..., h:2 * h]
        g = torch.cat([s, g[..., 2 * h:]], -1) if n % 2 else s
    return g[..., 0]


class PQScan(Scanner):
    """Scan methods of product-quantized rows: look-up tables (prepare), ADC sums (lut_sum) and the
    Triton scans. They read ``codec``, ``invlists``, ``pq``, ``M``, ``nlist``, ``metric``,
    ``by_residual``, ``device`` and ``_code_rows``: PQScanner (the object IndexIVFPQ holds as
    ``index.scanner``) takes them from the codec and the lists; IndexIVFPQPanorama, whose pruned
    scans are still methods of the index, mixes these methods in."""

    state_type = PQState

    def prepare(self, q, probe, coarse) -> PQState:
        l2 = self.metric == "l2"
        # scaling q by 2 is exact, so this equals 2 * tables bitwise without a pass over the tables
        qs = q * 2.0 if l2 else q
        tables = self.pq.inner_tables(qs)  # (M, nq, ksub)
        # the coarse term: the probe scores the search computed, one value per (query, list)
        ct = coarse.gather(1, probe) if self.by_residual else torch.zeros(probe.shape, device=q.device)
        # (each op here is a launch in a small search's graph: what only some paths read waits for them)
        return self.state_type(q=q, probe=probe, coarse=coarse, qnorm=q.pow(2).sum(1) if l2 else None,
                               tables=tables, q_scaled=qs, ct=ct)

    def _lut(self, ctx) -> tuple[torch.Tensor, int, int]:
        """(flat tables, query stride, sub-quantizer stride) for torch.take: entry (q, m, c) sits at
        q * q_stride + m * m_stride + c. Here a per-query contiguous copy, built on first use: the
        grouped scan reads many rows of a few queries, and in the GEMM's (M, nq, ksub) layout a
        query's M tables lie nq KB apart and alias in the L1 cache (5-10% slower on the CPU)."""
        if ctx.lut is None:
            t = ctx.tables
            ctx.lut = t.transpose(0, 1).reshape(-1)
        return ctx.lut, self.M * self.pq.ksub, self.pq.ksub

    def _coarse_term(self, ctx, qsel, lists):
        """ct for queries qsel (b,) and probed lists (b, R)."""
        if ctx.probe_sorted is None:
            ctx.probe_sorted, ctx.probe_order = ctx.probe.sort(1)
        col = torch.searchsorted(ctx.probe_sorted[qsel], lists.contiguous())
        return ctx.ct[qsel].gather(1, ctx.probe_order[qsel].gather(1, col))

    def _table_sums(self, ctx, qi, codes, first: int = 0) -> torch.Tensor:
        """lut_sum of the table entries of codes (..., w) of sub-quantizers first .. first+w-1 for
        broadcastable queries qi. A dense block of many rows (qi (b, 1), codes (1, R, w)) reads the
        b queries' tables as one (w * ksub, b) weight, so a row's codes are one bag for all b queries
        (5-7x faster at 850 rows, the same sums); otherwise one linear index per term into the flat
        tables, int32 where they allow (half the bytes to write and read)."""
        lut, q_stride, m_stride = self._lut(ctx)
        w, ksub = codes.shape[-1], self.pq.ksub
        if (qi.dim() == 2 and qi.shape[1] == 1 and codes.dim() == 3 and codes.shape[0] == 1
                and codes.shape[1] >= 2 * ksub and lut.device.type in _BAG_DEVICES):
            tables = lut.as_strided((lut.numel() // (self.M * ksub), self.M, ksub), (q_stride, m_stride, 1))
            weight = tables[:, first:first + w].index_select(0, qi[:, 0]).permute(1, 2, 0)
            weight = weight.reshape(w * ksub, -1).contiguous()
            bags = codes[0].long() + torch.arange(0, w * ksub, ksub, device=self.device)
            return F.embedding_bag(bags, weight, mode="sum").t()
        dtype = torch.int32 if lut.numel() < 2**31 else torch.int64
        off = torch.arange(first, first + w, device=self.device, dtype=dtype) * m_stride
        q_off = (qi * q_stride).to(dtype)[..., None]
        idx = codes.to(dtype, copy=True).add_(off)
        # in place unless the queries widen the batch (a dense block of rows for several queries)
        return lut_sum(lut, idx.add_(q_off) if torch.broadcast_shapes(idx.shape, q_off.shape) == idx.shape
                       else idx + q_off)

    def pair_scores(self, ctx, qi, pos, ct):
        """Exact ADC scores for broadcastable (query, slab row) index tensors; ct the coarse terms."""
        return (ct - self.invlists.field("init")[pos]) + self._table_sums(ctx, qi, self._code_rows(pos))

    def score_block(self, ctx, qsel, list_id, start, end):
        col = (ctx.probe[qsel] == list_id).int().argmax(1)
        ct = ctx.ct[qsel, col][:, None]
        b = qsel.shape[0]
        # long lists take _table_sums' (ksub x M, b) weight, no (b, rows, M) index tensor to bound
        rows = end - start if end - start >= 2 * self.pq.ksub else max(1, SCORE_BUDGET // max(1, b * self.M))
        out = []
        for a in range(start, end, rows):
            pos = torch.arange(a, min(a + rows, end), device=self.device)
            out.append(self.pair_scores(ctx, qsel[:, None], pos[None, :], ct))
        return torch.cat(out, 1)

    def score_gathered(self, ctx, qsel, pos, lists):
        return self.pair_scores(ctx, qsel[:, None], pos, self._coarse_term(ctx, qsel, lists))

    def gather_cost(self) -> int:
        return self.M

    kernel_scan = True
    graph_safe = True  # neither the torch gather nor the kernels wait for the host
    graph_safe_kernels = True

    def scan_kernel(self, ctx, probe, k, mask, max_codes):
        """kernels.pq_scan over a compact (query, candidate) layout: a query's probed lists back to back,
        so the score matrix is as wide as the most candidates any query has, not nprobe x the longest
        list (bounded on the host by the nprobe largest lists: no wait for the device). Lists that many
        queries of the batch probe go to kernels.pq_lists instead (decoded once per query block, GEMM)
        and sit first in a query's row. ``_scan_rest`` scores the other lists (Panorama: pruned)."""
        from ..kernels.pq_lists import MIN_QUERIES, busy_lists, pq_lists
        nq, P = probe.shape
        starts, sizes = self.invlists.device_meta()
        data = self.invlists.fields()
        lens = sizes[probe]
        before = torch.cumsum(lens, 1) - lens if max_codes else None  # max_codes counts in coarse order
        width = max(1, int(self.invlists.sizes.topk(P).values.sum()))  # host bound: a query's P largest lists
        chunk = cost.pq_chunk_queries(nq, P, width, SCORE_BUDGET, self.device)
        span = cost.pq_span(chunk, P, width, self.device)  # > 0: (query, row span) programs (small launches)
        best_s = torch.empty((nq, k), device=self.device)
        best_p = torch.empty((nq, k), dtype=torch.int64, device=self.device)
        for c in range(0, nq, chunk):
            q = slice(c, min(nq, c + chunk))
            b = q.stop - q.start
            probe_q, lens_q = probe[q], lens[q]
            # busy lists: >= MIN_QUERIES queries of this launch probe them (counted over the whole batch,
            # a launch of ~1/6 of it met 1-3 of a list's queries: each GEMM block decoded rows for one or two)
            served = busy_lists(self.nlist, probe_q) if b >= MIN_QUERIES else None
            if served is None:  # a query's row: its lists in coarse order
                ends = torch.cumsum(lens_q, 1)
                off = off_rest = ends - lens_q
                sizes_rest = sizes
            else:  # (b, 2P): a query's row holds its busy lists, then the rest
                lens_busy = torch.where(served[probe_q], lens_q, 0)
                lens_row = torch.cat([lens_busy, lens_q - lens_busy], 1)
                ends = torch.cumsum(lens_row, 1)
                off = ends - lens_row
                off_rest = off[:, P:]
                sizes_rest = torch.where(served, 0, sizes)
            out = torch.full((b, width), float("-inf"), device=self.device)
            bq = None if before is None else before[q]
            if served is not None:
                pq_lists(out, ctx.q_scaled[q], self.pq.centroids, data["codes"], data["init"], ctx.ct[q], starts,
                         sizes, probe_q, served, off[:, :P], before=bq, max_codes=max_codes,
                         labels=data["labels"], mask=mask)
            part = KernelPart(q=q, probe=probe_q, off=off_rest, sizes=sizes_rest, before=bq, served=served,
                              starts=starts, data=data, span=span)
            self._scan_rest(ctx, out, part, k, mask, max_codes)
            values, idx = kernels.topk(out, min(k, width))
            col = torch.searchsorted(ends, idx, right=True).clamp_max(ends.shape[1] - 1)
            row = idx - off.gather(1, col)
            pos = torch.where(torch.isneginf(values), 0, starts[probe_q.gather(1, col % P)] + row)
            best_s[q, :values.shape[1]], best_p[q, :values.shape[1]] = values, pos
            if values.shape[1] < k:
                best_s[q, values.shape[1]:], best_p[q, values.shape[1]:] = float("-inf"), 0
        return best_s, best_p

    def _scan_rest(self, ctx, out, part: "KernelPart", k, mask, max_codes) -> None:
        """Scores of the lists pq_lists did not serve into out: every row (kernels.pq_scan)."""
        from ..kernels.pq_scan import pq_scan
        data = part.data
        pq_scan(out, ctx.tables[:, part.q], data["codes"], data["init"], ctx.ct[part.q], part.starts, part.sizes,
                part.probe, part.off, cols=(0, part.probe.shape[1]), before=part.before, max_codes=max_codes,
                labels=data["labels"], mask=mask, span=part.span)

    def distances(self, ctx, scores):
        if self.metric == "l2":
            return (ctx.qnorm[:, None] - scores).clamp_min(0)
        return scores


class IndexIVFPQ(IndexIVF):
    """IVF over product-quantized residuals: M bytes per vector, scanned with look-up tables.

    ``IndexIVFPQ(d, nlist, M, nbits=8, metric="l2", nprobe=1, *, by_residual=True, ...)``, or Faiss's
    form with a leading quantizer: ``IndexIVFPQ(quantizer, d, nlist, M, nbits, metric=METRIC_L2)``.

    Args:
        d: vector dimension (M must divide it); or (Faiss's form) a flat index of the nlist centroids
            (shared, not copied), followed by d, nlist, M, nbits, metric.
        nlist: number of inverted lists.
        M: sub-quantizers (bytes per code at nbits=8).
        nbits: bits per sub-quantizer code, 1..8.
        metric: "l2", "ip", "cosine" or METRIC_L2 / METRIC_INNER_PRODUCT.
        nprobe: lists scanned per query.
        by_residual: encode x - centroid (Faiss's default) or x.
        pq_niter: PQ k-means iterations.
        pq_max_train: cap on the rows the PQ codebooks are trained on.
        device, dtype, search_mode, max_codes, seed, niter, quantizer, verbose: as for IndexIVFFlat.

    Raises:
        ValueError: M not dividing d, nbits outside 1..8, or a bad IVF argument.
        TypeError: a non-bool by_residual.
    """

    @faiss_form
    def __init__(self, d: int, nlist: int, M: int, nbits: int = 8, metric="l2", nprobe: int = 1, *,
                 by_residual: bool = True, pq_niter: int = 25, pq_max_train: int = 65536, device=None,
                 dtype=torch.float32, search_mode: str = "auto", max_codes: int = 0, seed: int = 1234,
                 niter: int = 20, quantizer=None, verbose: bool | None = None):
        self._init_pq(d, nlist, M, nbits, metric, by_residual=by_residual, pq_niter=pq_niter,
                      pq_max_train=pq_max_train, nprobe=nprobe, device=device, dtype=dtype,
                      search_mode=search_mode, max_codes=max_codes, seed=seed, niter=niter,
                      quantizer=quantizer, verbose=verbose)

    def _init_pq(self, d, nlist, M, nbits=8, metric="l2", *, by_residual=True, pq_niter=25,
                 pq_max_train=65536, **kwargs):
        positive_int(M, "M")
        if isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 and d % M:
            raise ValueError(f"M must divide d={d}, got M={M}")
        if isinstance(nbits, bool) or not isinstance(nbits, (int, np.integer)) or not 1 <= nbits <= 8:
            raise ValueError(f"nbits must be an int in 1..8, got {nbits!r}")
        if not isinstance(by_residual, bool):
            raise TypeError(f"by_residual must be a bool, got {type(by_residual).__name__}")
        self.M, self.nbits, self._by_residual = int(M), int(nbits), by_residual
        self._pq_niter, self.pq_max_train = int(pq_niter), int(pq_max_train)
        self._pq_seed = int(kwargs.get("seed", 1234))
        super().__init__(d, nlist, metric, **kwargs)

    @property
    def pq_niter(self) -> int:
        """PQ k-means iterations (``pq.cp.niter``)."""
        return self.pq.cp.niter if "codec" in self.__dict__ else self._pq_niter

    @pq_niter.setter
    def pq_niter(self, value) -> None:
        self.pq.cp.niter = value

    # ---- codec -------------------------------------------------------------------------
    def _make_codec(self) -> PQCodec:
        return PQCodec(self._new_pq(), self.metric, self._by_residual, self.pq_max_train, seed=self._pq_seed + 2)

    def _new_pq(self) -> ProductQuantizer:
        return ProductQuantizer(self.d, self.M, self.nbits, device=self.device, seed=self._pq_seed + 1,
                                niter=self.pq_niter)

    @property
    def pq(self) -> ProductQuantizer:
        """The trained ProductQuantizer (Faiss's ``index.pq``)."""
        return self.codec.pq

    @property
    def by_residual(self) -> bool:
        """True when the codes encode x - centroid (Faiss's default), False for x itself."""
        return self.codec.by_residual

    @by_residual.setter
    def by_residual(self, value: bool) -> None:  # Faiss lets it be set before training
        if not isinstance(value, bool):
            raise TypeError(f"by_residual must be a bool, got {type(value).__name__}")
        self.codec.by_residual = value

    @property
    def is_trained(self) -> bool:
        """True once the coarse centroids and the product quantizer are trained."""
        return super().is_trained and self.pq.is_trained

    @property
    def code_size(self) -> int:
        """Faiss's code_size: bytes of one bit-packed PQ code (stored here one byte per sub-quantizer)."""
        return self.pq.code_size

    def _code_rows(self, pos) -> torch.Tensor:
        """uint8 codes (..., M) of slab rows pos, whatever the stored layout."""
        return self.codec.code_rows(self.invlists, pos)

    def config(self) -> dict:
        return {**super().config(), "M": self.M, "nbits": self.nbits, "by_residual": self.by_residual,
                "pq_niter": self.pq_niter, "pq_max_train": self.pq_max_train}

    def _make_scanner(self) -> "PQScanner":
        return PQScanner(self.codec, self.invlists)


class PQScanner(PQScan, CodecScanner):
    """``PQScanner(codec, invlists)``: the scanner object of IndexIVFPQ (``index.scanner``) over the
    index's own PQCodec and inverted lists (a by_residual set before training included)."""

    @property
    def pq(self) -> ProductQuantizer:
        """The codec's ProductQuantizer."""
        return self.codec.pq

    @property
    def M(self) -> int:
        """Sub-quantizers per code."""
        return self.codec.pq.M

    @property
    def nlist(self) -> int:
        """Inverted lists of the index."""
        return self.invlists.nlist

    def _code_rows(self, pos) -> torch.Tensor:
        return self.codec.code_rows(self.invlists, pos)
