"""IVFPQ with Panorama pruning: identical results to IndexIVFPQ (same centroids and codebooks), but
most candidates are dropped after a few levels of look-ups.

Levels group the M sub-quantizers (M/L each, i.e. d/L dimensions). Per vector we keep the init term
and the L suffix norms of the decoded residual. The threshold is the running k-th best per query:
seeded by fully scoring each query's nearest list (grouped scan); in the batched ("matrix") torch scan
by processing probes in waves ordered by coarse distance (1, 1, 2, 4, ... lists per wave) so every wave
after the first starts from a finite threshold; on GPUs by a Triton kernel in which each query walks
its lists in coarse order and keeps its own running top-k (kernels/pq_scan.py).
"""
from __future__ import annotations

import numpy as np
import torch

from .. import kernels
from ..arrays import positive_int, take_rows
from ..codecs.panorama import NORM_DTYPES, PanoramaPQCodec
from ..panorama import (WAVE_PAIRS, PanoramaStats, bound_slack, merge_ragged, panorama_stats, pruned_scores,
                        level_width, ragged_kth, suffix_norms)
from ..search.common import SCORE_BUDGET, scanned_rows
from ..search.state import PanoramaPQState
from ..topk import running_topk, topk_first
from ..transforms import PanoramaTransform
from .ivf import faiss_form
from .ivf_pq import IndexIVFPQ, PQScan

_SEED_LEVEL = 2  # level at which the first wave turns its own lower bounds into a threshold
_WAVE_GROWTH = 4  # the kernel waves (k > 32): 1, 4, 16, ... lists (each a launch + a top-k; x4 beat x2 on the H100)


class PanoramaScan:
    """Scanner mixin: running top-k threshold, pruned grouped scan, wave-ordered batched scan.

    The index supplies ``_pairs_ctx(ctx) -> (level_part, exact)`` closures, ``_base(ctx, qi, pos, ct)``
    and the fields ``tails`` (suffix norms) in its inverted lists.
    """

    lists_in_parallel = False  # the grouped scan prunes each list against the lists scanned before it
    graph_safe_kernels = True

    def _make_scanner(self):
        # the pruned scans replace the search paths' list loops, so the index is its own scanner,
        # over its base codec's scan methods (FlatCodes, PQScan) mixed into the class
        return self

    # ---- where the torch scans prune ------------------------------------------------------
    # On accelerators without Triton (DirectML, MPS, ROCm without it) every path scores every row
    # with the base index's own scans: the pruned torch scans wait for the host at every wave and
    # level (sizes of the survivors) and launch ~10 ops per level per wave, so on the H200 they took
    # 27-47 ms at nq <= 64 where IVFPQ's padded gather took 0.43-4.6 ms (benchmarks/latency).
    def _dense_here(self) -> bool:
        """True where this device scans every row (an accelerator without Triton): same results."""
        return self.device.type != "cpu" and not kernels.available(self.device)

    @property
    def wave_scan(self) -> bool:
        """"auto" takes the wave-ordered matrix scan, unless this device scans every row."""
        return not self._dense_here()

    @property
    def batched_lists(self) -> bool:
        """True where the grouped path may take the bucketed GPU scan (it scores every row): only
        where this device scans every row anyway."""
        return self._dense_here() and super().batched_lists

    @property
    def graph_safe(self) -> bool:
        """True where CUDA graphs may capture the torch scans: the dense paths never wait for the host,
        the torch wave scan does (sizes of each wave)."""
        return self._dense_here()

    def _scan_grouped(self, ctx, probe, k, mask, max_codes):
        if self._dense_here():
            self._count_dense(ctx, probe, max_codes)
        return super()._scan_grouped(ctx, probe, k, mask, max_codes)

    def _count_dense(self, ctx, probe, max_codes):
        """Every dimension of every row counted scanned (no host sync)."""
        rows = scanned_rows(self.invlists.device_meta()[1][probe], max_codes).sum()
        ctx.stats.add_counts(torch.stack([rows, rows]), self.d)

    # ---- levels, transform and tail norms (shared by both Panorama indexes) ------------------
    def _init_levels(self, n_levels, transform, cap, norm_dtype, divided: tuple[str, object] | None) -> None:
        positive_int(n_levels, "n_levels")
        name, value = divided or ("", None)
        if isinstance(value, (int, np.integer)) and value > 0 and value % n_levels:
            raise ValueError(f"n_levels must divide {name}={value}, got n_levels={n_levels}")
        if not isinstance(transform, bool):
            raise TypeError(f"transform must be a bool, got {type(transform).__name__}")
        if norm_dtype not in NORM_DTYPES:
            raise ValueError(f"norm_dtype must be one of {sorted(NORM_DTYPES)}, got {norm_dtype!r}")
        self.n_levels, self.use_transform, self.cap, self.norm_dtype = int(n_levels), transform, float(cap), norm_dtype
        self.panorama_stats = PanoramaStats()

    def _make_transform(self) -> None:
        self.ptransform = PanoramaTransform(self.d, self.n_levels, cap=self.cap, seed=self.seed + 3,
                                            device=self.device) if self.use_transform else None

    def config(self) -> dict:
        """Constructor keyword arguments that rebuild this index (JSON-serialisable)."""
        return {**super().config(), "n_levels": self.n_levels, "transform": self.use_transform,
                "cap": self.cap, "norm_dtype": self.norm_dtype}

    def _transform(self, x):
        # x is checked already (float32 rows on the device); apply() would check it again, and its
        # magnitude check waits for the device, which a CUDA-graph capture of the search cannot do
        t = self.ptransform
        return x @ t.matrix if t is not None and t.is_trained else x

    def _untransform(self, x):
        return self.ptransform.reverse(x) if self.ptransform is not None and self.ptransform.is_trained else x

    def _fit(self, x) -> None:
        if self.ptransform is not None and not self.ptransform.is_trained:
            self.ptransform.train(x)
        super()._fit(x)

    @property
    def is_trained(self) -> bool:
        """True once the centroids, the codec and the level transform (if any) are trained."""
        return super().is_trained and (self.ptransform is None or self.ptransform.is_trained)

    def _codec_tensors(self) -> dict:
        out = super()._codec_tensors()
        if self.ptransform is not None:
            out["panorama_matrix"] = self.ptransform.matrix
        return out

    def _load_codec_tensors(self, tensors) -> None:
        super()._load_codec_tensors(tensors)
        if self.ptransform is not None:
            if "panorama_matrix" in tensors and tensors["panorama_matrix"].numel():
                self.ptransform.set_matrix(tensors["panorama_matrix"])
            self.ptransform.to(self.device)

    def _pruning_kernel(self) -> bool:
        """True where the codec scans with its pruning Triton kernel."""
        return False

    def _search(self, q, k, params):
        out = super()._search(q, k, params)
        panorama_stats.add(self.panorama_stats)  # the process-wide counters, like Faiss's global stats
        return out

    def _coef(self) -> float:
        return 2.0 if self.metric == "l2" else 1.0

    def _pano_ctx(self, ctx, q):
        ctx.stats = self.panorama_stats = PanoramaStats()
        return ctx

    def _qtails(self, ctx):
        """(nq, L) query suffix norms, computed on first use (the small-batch kernel computes its own)."""
        if ctx.qtail is None:
            ctx.qtail = suffix_norms(ctx.q, self.n_levels)
        return ctx.qtail

    def _dense_scan(self, ctx, qsel, pos, ct, thr, valid=None):
        """Scores (b, R) of queries qsel (b,) against rows pos ((1, R) or (b, R)); ct broadcastable to
        (b, R); thr (b, R) (+inf where a row must not be scored). Level 0 and the first bound run
        dense (no index bookkeeping); the few survivors continue pairwise."""
        level_part, exact = self._pairs_fns(ctx)
        ytail, qtail, coef = self.invlists.field("tails"), self._qtails(ctx), self._coef()
        stats, dl = ctx.stats, level_width(self.d, self.n_levels)
        qb = qsel[:, None]
        base = self._base(ctx, pos, ct)
        partial = base + level_part(qb, pos, 0)
        slack = bound_slack(base, coef * qtail[qsel, 0][:, None] * ytail[pos, 0].float(), thr)
        b, R = partial.shape
        n_valid = b * R if valid is None else int(valid.sum())
        stats.total_dims += n_valid * self.d
        stats.total_dims_scanned += n_valid * dl
        keep = partial + slack >= thr if self.n_levels == 1 else \
            partial + coef * qtail[qsel, 1][:, None] * ytail[pos, 1].float() + slack >= thr
        if valid is not None:
            keep &= valid
        bi, ri = torch.nonzero(keep, as_tuple=True)
        posx = pos.expand(b, R)
        ctx_ = ct.expand(b, R)
        pp = posx[bi, ri]
        ctp = ctx_[bi, ri]
        s = pruned_scores(qsel[bi], pp, partial[bi, ri], slack[bi, ri], thr[bi, ri], first_level=1,
                          level_part=level_part, exact=self._survivor_exact(exact, ctp), qtail=qtail,
                          ytail=ytail, coef=coef, stats=stats, dims_per_level=dl)
        out = torch.full((b, R), float("-inf"), device=self.device)
        out[bi, ri] = s
        return out

    def _survivor_exact(self, exact, ctp):
        """Exact scores of the survivors; None lets the fully summed partial stand as the score."""
        if exact is None:
            return None
        return lambda a, p, i: exact(a, p, ctp[i])

    def _exact_dense(self, ctx, qsel, pos, ct):
        """Unpruned scores of queries qsel (b, 1) against rows pos (b, R)."""
        return self._pairs_fns(ctx)[1](qsel, pos, ct)

    def _merge_best(self, ctx, qsel, values, k):
        cur = ctx.best[qsel]
        new = torch.cat([cur, values], 1).topk(k, dim=1).values
        ctx.best[qsel] = new
        ctx.thr[qsel] = new[:, -1]

    def _seed(self, ctx, k, mask):
        """Exact top-k of each query's nearest probed list: the first finite threshold."""
        probe = ctx.probe
        nq = probe.shape[0]
        ctx.best = torch.full((nq, k), float("-inf"), device=self.device)
        ctx.thr = torch.full((nq,), float("-inf"), device=self.device)
        ctx.seed_s = ctx.best.clone()  # the seed list's exact top-k: not scanned a second time
        ctx.seed_p = torch.zeros((nq, k), dtype=torch.int64, device=self.device)
        starts, sizes = self.invlists.device_meta()
        lens = sizes[probe[:, 0]]
        maxlen = int(lens.max()) if nq else 0
        if maxlen == 0:
            return
        ar = torch.arange(maxlen, device=self.device)
        chunk = max(1, SCORE_BUDGET // (maxlen * self.gather_cost()))
        for c in range(0, nq, chunk):
            qsel = torch.arange(c, min(nq, c + chunk), device=self.device)
            valid = ar < lens[qsel, None]
            pos = torch.where(valid, starts[probe[qsel, 0]][:, None] + ar, 0)
            s = self._exact_dense(ctx, qsel[:, None], pos, ctx.ct[qsel, 0][:, None]).masked_fill(~valid, float("-inf"))
            s = self._filter(s, pos, mask)
            n_valid = int(valid.sum()) * self.d  # the seed list is scanned once, fully
            ctx.stats.total_dims_scanned += n_valid
            ctx.stats.total_dims += n_valid
            values, idx = topk_first(s, min(k, maxlen))
            self._merge_best(ctx, qsel, values, k)
            ctx.seed_s[qsel, :values.shape[1]] = values
            ctx.seed_p[qsel, :values.shape[1]] = pos.gather(1, idx)

    def _scan_list(self, ctx, qsel, lst, start, size, k, mask):
        if self._dense_here():
            return super()._scan_list(ctx, qsel, lst, start, size, k, mask)
        if ctx.best is None:
            self._seed(ctx, k, mask)
        seeded = ctx.probe[qsel, 0] == lst
        if bool(seeded.any()):
            width = min(k, size)
            out_s = torch.empty((qsel.shape[0], width), device=self.device)
            out_p = torch.empty((qsel.shape[0], width), dtype=torch.int64, device=self.device)
            out_s[seeded], out_p[seeded] = ctx.seed_s[qsel[seeded], :width], ctx.seed_p[qsel[seeded], :width]
            if not bool(seeded.all()):
                fresh = ~seeded
                out_s[fresh], out_p[fresh] = self._scan_fresh(ctx, qsel[fresh], lst, start, size, k, mask)
            return out_s, out_p
        return self._scan_fresh(ctx, qsel, lst, start, size, k, mask)

    def _scan_fresh(self, ctx, qsel, lst, start, size, k, mask):
        b = qsel.shape[0]
        col = (ctx.probe[qsel] == lst).int().argmax(1)
        ctq = ctx.ct[qsel, col]
        rows = max(1, SCORE_BUDGET // max(1, b * self.gather_cost()))
        best = None
        for a in range(start, start + size, rows):
            e = min(a + rows, start + size)
            R = e - a
            pos = torch.arange(a, e, device=self.device)[None, :]
            thr = ctx.thr[qsel][:, None].expand(b, R)
            if mask is not None:  # filtered-out rows never count, not even for the threshold
                thr = thr.masked_fill(~self._allowed_at(mask, pos), float("inf"))
            best = running_topk(best, self._dense_scan(ctx, qsel, pos, ctq[:, None], thr), a, k)
        self._merge_best(ctx, qsel, best[0], k)
        return best

    def _scan_matrix(self, ctx, probe, k, mask, max_codes):
        """Batched scan in waves of probes by coarse rank; each wave is one parallel pruned pass."""
        if self._pruning_kernel():
            return self._scan_kernel(ctx, probe, k, mask, max_codes)
        if self._dense_here():
            self._count_dense(ctx, probe, max_codes)
            return self._scan_padded(ctx, probe, k, mask, max_codes)
        nq, P = probe.shape
        starts, sizes = self.invlists.device_meta()
        lens = scanned_rows(sizes[probe], max_codes)  # rows past max_codes are not scanned
        # level-major (L, n) copies: the bound reads one level of every pair at once
        sc = {"qt": (self._coef() * self._qtails(ctx)).t().contiguous(),
              "yt": self.invlists.field("tails").t().float().contiguous(), "level": self._pairs_fns(ctx)[0], "k": k}
        best_s = torch.full((nq, k), float("-inf"), device=self.device)
        best_p = torch.zeros((nq, k), dtype=torch.int64, device=self.device)
        c0 = 0
        while c0 < P:  # waves of 1, 1, 2, 4, ... lists per query: the first one seeds the threshold
            c1 = min(P, 2 * c0) if c0 else 1
            qi, s, p = self._wave(ctx, sc, probe[:, c0:c1], lens[:, c0:c1], ctx.ct[:, c0:c1],
                                  best_s[:, -1], mask, starts)
            best_s, best_p = merge_ragged(best_s, best_p, qi, s, p, k)
            c0 = c1
        return best_s, best_p

    def _wave(self, ctx, sc, ls, lens, ct, thr, mask, starts):
        """One wave as a flat batch of (query, row) pairs, in chunks of about WAVE_PAIRS pairs.
        Returns the survivors' (query, exact score, slab row), grouped by query."""
        W = ls.shape[1]
        per_q = torch.cumsum(lens.sum(1), 0)
        total = int(per_q[-1]) if per_q.numel() else 0
        if total == 0:
            e = torch.empty(0, dtype=torch.int64, device=self.device)
            return e, e.float(), e
        # query boundaries close to multiples of WAVE_PAIRS pairs
        cuts = torch.searchsorted(per_q, WAVE_PAIRS * torch.arange(1, -(-total // WAVE_PAIRS), device=self.device))
        bounds = [0, *sorted(set((cuts + 1).tolist()) - {0, ls.shape[0]}), ls.shape[0]]
        prune = bool(torch.isfinite(thr).any())
        out = []
        for a, e in zip(bounds[:-1], bounds[1:]):
            lw = lens[a:e].reshape(-1)
            n = int(lw.sum())
            if n == 0:
                continue
            seg = torch.repeat_interleave(torch.arange(lw.numel(), device=self.device), lw, output_size=n)
            first = starts[ls[a:e]].reshape(-1) - (torch.cumsum(lw, 0) - lw)  # row of pair 0 of each segment
            pos = first[seg] + torch.arange(n, device=self.device)
            out.append(self._wave_chunk(ctx, sc, a + seg // W, pos, ct[a:e].reshape(-1)[seg], thr, mask, prune))
        if not out:
            e = torch.empty(0, dtype=torch.int64, device=self.device)
            return e, e.float(), e
        return tuple(torch.cat(t) for t in zip(*out))

    def _wave_chunk(self, ctx, sc, qi, pos, ct, thr, mask, prune):
        """Pruned level-wise scan of flat pairs. A pair is carried as its margin (partial score + slack
        - threshold), so the bound at level j is margin + ||q_tail_j|| ||y_tail_j|| >= 0; survivors
        are compacted at every level. The partial score (base, then each level's part added in level
        order) is carried beside it for _wave_exact."""
        level_fn = sc["level"]
        qt, yt, stats = sc["qt"], sc["yt"], ctx.stats
        L, dl = self.n_levels, level_width(self.d, self.n_levels)
        stats.total_dims += qi.shape[0] * self.d
        if mask is not None:  # filtered-out rows are never scanned and never set the threshold
            sel = torch.nonzero(self._allowed_at(mask, pos)).squeeze(1)
            qi, pos, ct = qi[sel], pos[sel], ct[sel]
        base = self._base(ctx, pos, ct)
        n = qi.shape[0]
        idx = torch.arange(n, device=self.device)
        tail0 = qt[0][qi] * yt[0][pos]
        if prune:
            th = thr[qi]
            margin = base - th + bound_slack(base, tail0, th)
        else:  # first wave: margin is the partial score until a threshold exists
            margin = base
        partial = base
        for j in range(L):
            if not prune and j == min(_SEED_LEVEL, L - 1) and n:
                # Seed from this wave itself: every pair's score is >= partial - tail bound, so the k-th
                # largest such lower bound per query is a valid threshold before any score is exact.
                q0 = int(qi[0])
                lb = margin - qt[j][qi] * yt[j][pos] - bound_slack(base, tail0, torch.zeros_like(base))
                th = ragged_kth(qi - q0, lb, sc["k"], int(qi[-1]) - q0 + 1)[qi - q0]
                margin = margin - th + bound_slack(base, tail0, th)
                prune = True
            if prune:
                sel = torch.nonzero(margin + qt[j].index_select(0, qi) * yt[j].index_select(0, pos) >= 0).squeeze(1)
                if sel.numel() < idx.numel():  # index_select: several times cheaper than t[sel] on CPUs
                    idx, qi, pos, margin, partial = (t.index_select(0, sel)
                                                     for t in (idx, qi, pos, margin, partial))
                if idx.numel() == 0:
                    return qi, base[:0], pos
            stats.total_dims_scanned += idx.numel() * dl
            t = level_fn(qi, pos, j)
            margin = margin + t
            partial = partial + t
        if prune:
            sel = torch.nonzero(margin >= 0).squeeze(1)
            idx, qi, pos, partial = (t.index_select(0, sel) for t in (idx, qi, pos, partial))
        return qi, self._wave_exact(ctx, base[idx], partial, qi, pos), pos

    def _wave_exact(self, ctx, base, partial, qi, pos):
        """Exact scores of a wave's final survivors: the summed partial (the unpruned scorer's order)."""
        return partial


class IndexIVFPQPanorama(PanoramaScan, PQScan, IndexIVFPQ):
    """IndexIVFPQ's results (same codebooks: identical ids) with most candidates dropped after a few
    levels of look-ups.

    ``IndexIVFPQPanorama(d, nlist, M, nbits=8, n_levels=8, metric="l2", nprobe=1, *, transform=True,
    ...)``, or with Faiss's leading quantizer: ``IndexIVFPQPanorama(quantizer, d, nlist, M, nbits,
    n_levels, metric)``.

    Args:
        d, nlist, M, nbits, metric, nprobe: as for IndexIVFPQ (d may be Faiss's leading quantizer).
        n_levels: levels the M sub-quantizers are split into (must divide M).
        transform: learn a PanoramaTransform (front-loads energy; without it pruning is weak unless
            the data already is).
        cap: the transform's cap on one level's energy, in multiples of the mean.
        norm_dtype: "float32" or "float16" suffix norms (half the storage, rounded up so the bound
            stays valid).
        by_residual, pq_niter, pq_max_train, device, dtype, search_mode, max_codes, seed, niter,
            quantizer, verbose: as for IndexIVFPQ.

    Raises:
        ValueError: n_levels not dividing M, a bad norm_dtype, or a bad IndexIVFPQ argument.
        TypeError: a non-bool transform.
    """

    @faiss_form
    def __init__(self, d: int, nlist: int, M: int, nbits: int = 8, n_levels: int = 8, metric="l2",
                 nprobe: int = 1, *, transform: bool = True, cap: float = 8.0, norm_dtype: str = "float32",
                 by_residual: bool = True, pq_niter: int = 25, pq_max_train: int = 65536, device=None,
                 dtype=torch.float32, search_mode: str = "auto", max_codes: int = 0, seed: int = 1234,
                 niter: int = 20, quantizer=None, verbose: bool | None = None):
        self._init_levels(n_levels, transform, cap, norm_dtype, ("M", M))
        self._init_pq(d, nlist, M, nbits, metric, by_residual=by_residual, pq_niter=pq_niter,
                      pq_max_train=pq_max_train, nprobe=nprobe, device=device, dtype=dtype,
                      search_mode=search_mode, max_codes=max_codes, seed=seed, niter=niter,
                      quantizer=quantizer, verbose=verbose)
        self._make_transform()

    def _make_codec(self) -> PanoramaPQCodec:
        return PanoramaPQCodec(self._new_pq(), self.metric, self._by_residual, self.pq_max_train, self._pq_seed + 2,
                               self.n_levels, self.norm_dtype)

    # ---- scanner --------------------------------------------------------------------------
    state_type = PanoramaPQState

    def prepare(self, q, probe, coarse) -> PanoramaPQState:
        return self._pano_ctx(super().prepare(q, probe, coarse), q)

    def _pruning_kernel(self) -> bool:
        return kernels.available(self.device)

    def _scan_kernel(self, ctx, probe, k, mask, max_codes):
        ctx.kernel_stats = torch.zeros(2, dtype=torch.int64, device=self.device)  # [levels scanned, levels]
        out = self.scan_kernel(ctx, probe, k, mask, max_codes)
        ctx.stats.add_counts(ctx.kernel_stats, self.d // self.n_levels)  # levels -> dims, read lazily
        return out

    def _scan_rest(self, ctx, out, part, k, mask, max_codes) -> None:
        """IndexIVFPQ's kernel layout, the lists pq_lists did not serve scanned pruned (kernels/pq_panorama.py):
        small batches ((query, span) programs) in one launch seeded by each query's nearest list; larger
        ones by the running scan (k <= 32: one launch in which each query walks its lists with a running
        top-k) or, for larger k, waves of 1, 4, 16, ... lists, each pruned against the k-th best of the
        waves before it (on the H200 the waves beat the running scan 1.7x at k 80, which waits for 80
        scores before it prunes; the running scan wins up to 1.25x at k 10). The busy lists' k-th best
        (when pq_lists served some) is a threshold from the start."""
        from ..kernels.pq_lists import MIN_QUERIES
        from ..kernels.pq_panorama import RUNNING_MAX_K, SEED_MAX_K, pq_scan_pruned
        from ..kernels.pq_scan import pq_scan
        stats, L, P, q, data = ctx.kernel_stats, self.n_levels, part.probe.shape[1], part.q, part.data
        b, width = out.shape
        def rows():  # rows scanned per probed list (only where counted here: each op is a launch)
            return scanned_rows(self.invlists.device_meta()[1][part.probe], max_codes)
        thr = None
        if part.served is not None:  # busy lists are scanned in full
            stats.add_(rows().mul(part.served[part.probe]).sum() * L)
            if width >= k:
                thr = kernels.topk(out, k)[0][:, -1].contiguous()  # the kernels read it densely
        args = (out, ctx.tables[:, q], data["codes"], data["init"], ctx.ct[q], part.starts, part.sizes, part.probe,
                part.off)
        kw = dict(before=part.before, max_codes=max_codes, labels=data["labels"], mask=mask)
        prune = dict(tails=data["tails"], coef=self._coef(), stats=stats, **kw)
        if part.span and k <= SEED_MAX_K:
            pq_scan_pruned(*args, cols=(0, P), q=ctx.q[q], k=k, thr=thr, span=part.span, **prune)
            return
        if part.span:  # k too large for the seed tile: the nearest list first, unpruned, then its k-th best
            pq_scan(*args, cols=(0, 1), span=part.span, **kw)
            stats.add_(rows()[:, 0].mul(part.sizes[part.probe[:, 0]] > 0).sum() * L)
            if width >= k:
                thr = kernels.topk(out, k)[0][:, -1].contiguous()  # the kernels read it densely
            if P > 1:
                pq_scan_pruned(*args, cols=(1, P), q=ctx.q[q], thr=thr, span=part.span, **prune)
            return
        surv = torch.empty((2, b, width), dtype=torch.int32, device=self.device)
        qtail = self._qtails(ctx)[q]
        if k <= RUNNING_MAX_K:
            pq_scan_pruned(*args, cols=(0, P), qtail=qtail, k=k, surv=surv, **prune)
            return
        waves, c0, w = [], 0, 1
        while c0 < P:
            waves.append((c0, min(P, c0 + w)))
            c0, w = waves[-1][1], _WAVE_GROWTH * w
        if b * P >= MIN_QUERIES * self.nlist:  # most lists are busy: thresholds would prune the few left
            waves = [(0, P)]
        if thr is None:
            thr = torch.full((b,), float("-inf"), device=self.device)
        for c0, c1 in waves:
            pq_scan_pruned(*args, cols=(c0, c1), qtail=qtail, thr=thr, surv=surv, **prune)
            if c1 < P and width >= k:  # the k-th best so far: -inf while fewer exist
                thr = kernels.topk(out, k)[0][:, -1].contiguous()  # the kernels read it densely

    def _base(self, ctx, pos, ct):
        return ct - self.invlists.field("init")[pos]

    def _lut(self, ctx):
        # The waves read a few entries per (query, row) pair: the GEMM's own (M, nq, ksub) layout, no copy.
        t = ctx.tables
        return t.view(-1), t.stride(1), t.stride(0)

    def _pairs_fns(self, ctx):
        ml = self.M // self.n_levels
        codes = self.invlists.field("codes")

        def level_part(qi, pos, j):  # qi, pos broadcastable
            return self._table_sums(ctx, qi, take_rows(codes[:, j], pos), j * ml)

        def exact(qi, pos, ct):
            return self.pair_scores(ctx, qi, pos, ct)
        return level_part, exact

    def _wave_exact(self, ctx, base, partial, qi, pos):
        # The survivors' exact score is looked up again over all M entries (IndexIVFPQ's pair_scores,
        # so bitwise its score): cheaper than keeping every pair's terms until the end (MiniLM, CPU: 1.35x).
        return base + self._table_sums(ctx, qi, self._code_rows(pos))
