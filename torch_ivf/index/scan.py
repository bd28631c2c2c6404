"""How an IVF index searches: coarse probe selection, the choice of path, and the three scans.

- matrix: the codec's Triton scan (``_scan_triton``; GPUs), else a padded (query, probed list, row)
  torch gather; few launches, no host sync, CUDA-graph replay for small batches;
- grouped, per list: one GEMM per list slice against the queries probing it (CPUs);
- grouped, bucketed: lists of similar size in one batched GEMM + a small-k top-k kernel (GPUs).
Every path returns per-query top-k (scores, slab positions); the index maps them to labels.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import kernels
from ..topk import running_topk, topk_first
from .base import SearchParams

SEARCH_MODES = ("auto", "grouped", "csr", "matrix")
_SCORE_BUDGET = 1 << 25  # elements of a temporary score / gather buffer per chunk (~128 MB fp32)
# Threshold of "auto" without kernels (see _pick_mode): fitted on the H100 runs in benchmarks/results
_MATRIX_GATHER = 1 << 26  # elements


class IVFScan:
    """Search half of IndexIVF; relies on its invlists, centroids and codec/scanner hooks."""

    # ---- scanner hooks ------------------------------------------------------------------
    def _query_context(self, q: torch.Tensor, probe: torch.Tensor) -> dict:
        raise NotImplementedError

    def _score_block(self, ctx: dict, qsel: torch.Tensor, list_id: int, start: int, end: int) -> torch.Tensor:
        """Scores (len(qsel), end - start) of queries qsel against slab rows [start, end) of one list."""
        raise NotImplementedError

    def _score_lists(self, ctx: dict, qsel: torch.Tensor, pos: torch.Tensor, lists: torch.Tensor, row_ok: torch.Tensor):
        """Optional: (scores (B, C, S), pair term (B, C, 1) or None) of queries qsel (B, C) against slab
        rows pos (B, S) of lists (B,); rows where row_ok is False must score -inf. The pair term is
        constant along S, so it is added after the top-k. Codecs that implement this set
        ``_batched_lists = True`` to get the bucketed GPU scan."""
        raise NotImplementedError

    def _score_gathered(self, ctx: dict, qsel: torch.Tensor, pos: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
        """Scores (b, R) of queries qsel (b,) against slab rows pos (b, R) of lists ``lists`` (b, R)."""
        raise NotImplementedError

    def _distances(self, ctx: dict, scores: torch.Tensor) -> torch.Tensor:
        """Faiss distances from scan scores (identity for ip/cosine)."""
        return scores

    # ---- search -------------------------------------------------------------------------
    def _coarse(self, q: torch.Tensor, nprobe: int):
        """(probed lists (nq, nprobe), coarse scores of every list (nq, nlist)).

        The l2 score 2q.c - ||c||^2 ranks lists like -||q - c||^2; residual codecs reuse it."""
        s = q @ self.centroids.T
        if self.coarse_metric == "l2":
            s = 2 * s - (self.centroids * self.centroids).sum(1)[None, :]
        return s.topk(nprobe, dim=1).indices, s

    def _pick_mode(self, nq: int, nprobe: int) -> str:
        """"auto": the cheaper path by measurements (benchmarks/results).

        CPUs: always grouped (per-list GEMMs beat the gather at every nq measured). GPUs with Triton:
        the codec's Triton scan (matrix; for IVFFlat it beat torch's bucketed GEMMs at every nq timed
        on the H200, benchmarks/pq/README.md). GPUs without it (DirectML, no Triton): matrix while the
        gathered rows stay small, else grouped; codecs without a batched list scan (PQ) always take
        matrix on GPUs (H100: 6.8k -> 17-400k QPS)."""
        if self.search_mode != "auto":
            return self.search_mode
        if self.device.type == "cpu":
            return "grouped"
        if not self._batched_lists or (self._kernel_scan and kernels.available(self.device)):
            return "matrix"
        gathered = nq * nprobe * self.invlists.max_size * self._gather_cost()
        return "matrix" if gathered <= _MATRIX_GATHER else "grouped"

    def _search(self, q: torch.Tensor, k: int, params: SearchParams):
        nq = q.shape[0]
        mask = self._allowed_mask(params.allowed)
        if self.ntotal == 0 or nq == 0:
            return (torch.full((nq, k), self.missing_distance, device=self.device),
                    torch.full((nq, k), -1, dtype=torch.int64, device=self.device))
        nprobe = min(params.nprobe if params.nprobe is not None else self.nprobe, self.nlist)
        if nprobe <= 0:
            raise ValueError(f"params.nprobe must be a positive int, got {params.nprobe!r}")
        max_codes = self.max_codes if params.max_codes is None else int(params.max_codes)
        mode = self._pick_mode(nq, nprobe)
        if mode == "matrix" and mask is None and self._graph_ok(nq):
            return self._search_graphed(q, k, nprobe, max_codes, mode)
        return self._search_core(q, k, nprobe, max_codes, mask, mode)

    def _search_core(self, q, k, nprobe, max_codes, mask, mode):
        qt = self._transform(q)
        probe, coarse = self._coarse(qt, nprobe)
        ctx = self._query_context(qt, probe)
        ctx["coarse_all"] = coarse
        if mode == "matrix":
            scores, pos = self._scan_matrix(ctx, probe, k, mask, max_codes)
        else:
            scores, pos = self._scan_grouped(ctx, probe, k, mask, max_codes)
        return faiss_results(self, ctx, scores, pos)

    # ---- CUDA graphs for small batches ---------------------------------------------------
    _graph_safe = False  # codecs whose matrix scan never syncs with the host set this

    def _graph_ok(self, nq: int) -> bool:
        return self._graph_safe and self.device.type == "cuda" and nq <= GRAPH_MAX_NQ

    def _search_graphed(self, q, k, nprobe, max_codes, mode):
        key = (q.shape[0], k, nprobe, max_codes, mode, self.invlists.version, self.centroids.data_ptr(), kernels.enabled)
        return replay_graph(self, key, q, lambda x: self._search_core(x, k, nprobe, max_codes, None, mode))

    def _filter(self, scores: torch.Tensor, pos: torch.Tensor, mask) -> torch.Tensor:
        if mask is None:
            return scores
        return scores.masked_fill(~self._allowed_at(mask, pos), float("-inf"))

    _kernel_scan = False

    def _scan_matrix(self, ctx, probe, k, mask, max_codes):
        if self._kernel_scan and kernels.available(self.device):
            return self._scan_triton(ctx, probe, k, mask, max_codes)
        return self._scan_padded(ctx, probe, k, mask, max_codes)

    def _scan_padded(self, ctx, probe, k, mask, max_codes):
        """Padded layout over (query, probed list, row), gathered by torch (GPUs without Triton, CPUs in
        matrix mode, k beyond a kernel's limit): few launches and no host sync."""
        nq, P = probe.shape
        starts, sizes = self.invlists.device_meta()
        maxlen = max(self.invlists.max_size, 1)
        chunk = max(1, _SCORE_BUDGET // (P * maxlen * self._gather_cost()))
        ar = torch.arange(maxlen, device=self.device)
        out_s, out_p = [], []
        for c in range(0, nq, chunk):
            ls = probe[c : c + chunk]
            b = ls.shape[0]
            qsel = torch.arange(c, c + b, device=self.device)
            lens = sizes[ls]
            before = torch.cumsum(lens, 1) - lens if max_codes else None
            valid = ar < lens[..., None]
            if before is not None:
                valid &= (before[..., None] + ar) < max_codes
            pos = torch.where(valid, starts[ls][..., None] + ar, 0).reshape(b, -1)
            lists = ls[..., None].expand(-1, -1, maxlen).reshape(b, -1)
            s = self._score_gathered(ctx, qsel, pos, lists).masked_fill(~valid.reshape(b, -1), float("-inf"))
            s = self._filter(s, pos, mask)
            values, idx = topk_first(s, min(k, s.shape[1]), pos)  # ties: first in the slab, as "grouped"
            probe_col, row = idx // maxlen, idx % maxlen
            out_s.append(values)
            # -inf entries (fewer candidates than k) may point past the slab: park them at row 0
            out_p.append(torch.where(torch.isneginf(values), 0, starts[ls.gather(1, probe_col)] + row))
        return _pad_k(torch.cat(out_s), torch.cat(out_p), k)

    def _scan_triton(self, ctx, probe, k, mask, max_codes):
        """The codec's Triton matrix scan (codecs that have one set ``_kernel_scan``)."""
        raise NotImplementedError

    def _gather_cost(self) -> int:
        """Elements materialised per gathered row (d for flat codes)."""
        return self.d

    def _scan_grouped(self, ctx, probe, k, mask, max_codes):
        """Sort (query, list) pairs by list; score each list against the queries that probe it."""
        nq, P = probe.shape
        qidx = torch.arange(nq, device=self.device).repeat_interleave(P)
        lidx = probe.reshape(-1)
        cand_s = torch.full((nq * P, k), float("-inf"), device=self.device)
        cand_p = torch.zeros((nq * P, k), dtype=torch.int64, device=self.device)
        if max_codes:  # as Faiss: rows in coarse order up to max_codes, so the last list may be cut short
            lens = self.invlists.device_meta()[1][probe]
            before = torch.cumsum(lens, 1) - lens
            whole = before + lens <= max_codes
            self._scan_cut_lists(ctx, probe, (before < max_codes) & ~whole, max_codes - before, k, mask,
                                 cand_s, cand_p)
            pair_ids = torch.nonzero(whole.reshape(-1)).flatten()
        else:
            pair_ids = torch.arange(nq * P, device=self.device)
        order = pair_ids[torch.argsort(lidx[pair_ids], stable=True)]
        counts = torch.bincount(lidx[pair_ids], minlength=self.nlist).cpu()
        if self._use_buckets():
            self._scan_buckets(ctx, qidx, order, counts, k, mask, cand_s, cand_p)
        else:
            self._scan_each_list(ctx, qidx, order, counts, k, mask, cand_s, cand_p)
        cand_p = cand_p.reshape(nq, P * k)
        values, idx = topk_first(cand_s.reshape(nq, P * k), min(k, P * k), cand_p)
        return _pad_k(values, cand_p.gather(1, idx), k)

    def _scan_cut_lists(self, ctx, probe, cut, limit, k, mask, cand_s, cand_p):
        """Top-k of the (query, probe column) pairs in cut (at most one per query: the list where
        max_codes runs out), over the first limit[q, c] rows of the list, scored exactly (no pruning)."""
        qs, cs = torch.nonzero(cut, as_tuple=True)
        if qs.numel() == 0:
            return
        lists, lim = probe[qs, cs], limit[qs, cs]
        ar = torch.arange(int(lim.max()), device=self.device)
        valid = ar < lim[:, None]
        pos = torch.where(valid, self.invlists.device_meta()[0][lists][:, None] + ar, 0)
        s = self._score_gathered(ctx, qs, pos, lists[:, None].expand_as(pos)).masked_fill(~valid, float("-inf"))
        values, idx = topk_first(self._filter(s, pos, mask), min(k, s.shape[1]))
        rows = qs * probe.shape[1] + cs
        cand_s[rows, :values.shape[1]] = values
        cand_p[rows, :values.shape[1]] = pos.gather(1, idx)
        if "stats" in ctx:  # Panorama: these rows are scanned in full
            ctx["stats"].add_counts(valid.sum().repeat(2), self.d)

    def _scan_each_list(self, ctx, qidx, order, counts, k, mask, cand_s, cand_p):
        """One GEMM per list on a contiguous slice: best on CPUs, where launches are cheap."""
        starts, sizes = self.invlists.starts.tolist(), self.invlists.sizes.tolist()
        off = 0
        for lst, cnt in enumerate(counts.tolist()):
            if cnt == 0:
                continue
            rows = order[off : off + cnt]
            off += cnt
            if sizes[lst] == 0:
                continue
            s, p = self._scan_list(ctx, qidx[rows], lst, starts[lst], sizes[lst], k, mask)
            cand_s[rows, : s.shape[1]] = s
            cand_p[rows, : s.shape[1]] = p

    _batched_lists = False  # True where the codec implements _score_lists

    def _use_buckets(self) -> bool:
        return self.device.type != "cpu" and self._batched_lists

    def _scan_buckets(self, ctx, qidx, order, counts, k, mask, cand_s, cand_p):
        """Lists of similar size scored together in one padded batched GEMM: ~10 launches per bucket
        instead of ~6 per list, which is what bounds the per-list loop on a GPU."""
        sizes, counts_np = self.invlists.sizes.numpy(), counts.numpy()
        active = np.nonzero((counts_np > 0) & (sizes > 0))[0]
        active = active[np.argsort(-sizes[active], kind="stable")]
        starts_d, sizes_d = self.invlists.device_meta()
        first_d = (torch.cumsum(counts, 0) - counts).to(self.device)
        counts_d = counts.to(self.device)
        per_row = max(self._gather_cost(), 1)
        for lists_np, smax, cmax in _buckets(active, sizes, counts_np, per_row, 4 * _SCORE_BUDGET):
            lists = torch.from_numpy(lists_np).to(self.device)
            ar_s = torch.arange(smax, device=self.device)
            ar_c = torch.arange(cmax, device=self.device)
            row_ok = ar_s < sizes_d[lists][:, None]
            pos = torch.where(row_ok, starts_d[lists][:, None] + ar_s, 0)  # (B, S)
            q_ok = ar_c < counts_d[lists][:, None]
            pair = order[torch.where(q_ok, first_d[lists][:, None] + ar_c, 0)]  # (B, C) pair rows
            if mask is not None:
                row_ok = row_ok & self._allowed_at(mask, pos)
            s, pair_term = self._score_lists(ctx, qidx[pair], pos, lists, row_ok)  # (B, C, S)
            values, idx = kernels.topk(s, min(k, smax))
            if pair_term is not None:
                values = values + pair_term
            kk = values.shape[2]
            p = pos[:, None, :].expand(-1, cmax, -1).gather(2, idx)
            rows = pair[q_ok]
            cand_s[rows, :kk] = values[q_ok]
            cand_p[rows, :kk] = p[q_ok]

    def _scan_list(self, ctx, qsel, lst, start, size, k, mask):
        return scan_list(self, ctx, qsel, lst, start, size, k, mask)


def scan_list(scanner, ctx, qsel, lst, start, size, k, mask):
    """Top-k (scores, slab positions) of one list for a query group, in row chunks so huge lists (Flat)
    fit in memory; ``scanner`` supplies _score_block and _allowed_at."""
    rows = max(1024, _SCORE_BUDGET // max(1, qsel.shape[0]))
    best = None
    for a in range(start, start + size, rows):
        b = min(a + rows, start + size)
        s = scanner._score_block(ctx, qsel, lst, a, b)
        if mask is not None:
            s = s.masked_fill(~scanner._allowed_at(mask, slice(a, b))[None, :], float("-inf"))
        best = running_topk(best, s, a, k)
    return best


def faiss_results(index, ctx, scores, pos):
    """(D, I) as Faiss returns them from scan scores and slab positions (-inf: missing)."""
    missing = torch.isneginf(scores)
    labels = torch.where(missing, -1, index.invlists.labels_at(pos.clamp_min(0)))
    D = torch.where(missing, index.missing_distance, index._distances(ctx, scores))
    return D, labels


# A small search is ~30 small kernels whose launch cost (~1 ms of Python + driver time on an H100 for
# nq=1) dwarfs their work; replaying a captured graph launches them all at once.
GRAPH_MAX_NQ = 256
_GRAPH_CACHE = 8


def replay_graph(owner, key, q, run):
    """run(q) through a CUDA graph captured for ``key`` (owner keeps the last few graphs)."""
    cache = owner.__dict__.setdefault("_graphs", {})
    entry = cache.pop(key, None)
    if entry is None:
        static_q = q.clone()
        side = torch.cuda.Stream(device=q.device)
        side.wait_stream(torch.cuda.current_stream(q.device))
        with torch.cuda.stream(side):  # warm-up: compiles kernels, fills caches outside the capture
            run(static_q)
        torch.cuda.current_stream(q.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = run(static_q)
        entry = (graph, static_q, out)
        while len(cache) >= _GRAPH_CACHE:
            cache.pop(next(iter(cache)))
    cache[key] = entry  # most recently used last
    graph, static_q, out = entry
    static_q.copy_(q)
    graph.replay()
    return out[0].clone(), out[1].clone()


def _buckets(active, sizes, counts, per_row: int, budget: int):
    """Greedy split of lists (sorted by size, descending) into (lists, max size, max queries) groups
    whose padded buffers stay within budget elements."""
    i = 0
    while i < len(active):
        smax, cmax, j = int(sizes[active[i]]), 0, i
        while j < len(active):
            c = max(cmax, int(counts[active[j]]))
            if j > i and (j - i + 1) * smax * max(c, per_row) > budget:
                break
            cmax, j = c, j + 1
        yield active[i:j], smax, cmax
        i = j


def scanned_rows(lens: torch.Tensor, max_codes: int) -> torch.Tensor:
    """Rows scanned per probed list (lens (nq, nprobe) in coarse order): all of them, or as Faiss's
    max_codes allows, counted in coarse order (the list where it runs out is cut short)."""
    if not max_codes:
        return lens
    return (max_codes - (torch.cumsum(lens, 1) - lens)).clamp_min(0).minimum(lens)


def _pad_k(scores: torch.Tensor, pos: torch.Tensor, k: int):
    if scores.shape[1] < k:
        pad = k - scores.shape[1]
        scores = torch.nn.functional.pad(scores, (0, pad), value=float("-inf"))
        pos = torch.nn.functional.pad(pos, (0, pad), value=0)
    return scores, pos
