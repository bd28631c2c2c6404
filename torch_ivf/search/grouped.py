"""The grouped path: (query, list) pairs sorted by list; each list scored against the queries that
probe it (one GEMM per contiguous list slice on CPUs; lists of similar size batched on GPUs)."""
from __future__ import annotations

import numpy as np
import torch

from .. import kernels
from ..topk import topk_first
from . import cost
from .common import SCORE_BUDGET, pad_k, scan_list
from .select import scan_select
from .workers import for_each as workers_for_each


class GroupedScan:
    lists_in_parallel = True  # lists scanned independently, so CPU list workers may share them out
    def _scan_grouped(self, ctx, probe, k, mask, max_codes):
        """Sort (query, list) pairs by list; score each list against the queries that probe it."""
        nq, P = probe.shape
        if self._select_across_lists(max_codes):
            workers = cost.cpu_workers(nq) if self.lists_in_parallel else 1
            return scan_select(self, ctx, probe, k, mask, workers)
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
        return pad_k(values, cand_p.gather(1, idx), k)

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
        s = self.scanner.score_gathered(ctx, qs, pos, lists[:, None].expand_as(pos)).masked_fill(~valid, float("-inf"))
        values, idx = topk_first(self._filter(s, pos, mask), min(k, s.shape[1]))
        rows = qs * probe.shape[1] + cs
        cand_s[rows, :values.shape[1]] = values
        cand_p[rows, :values.shape[1]] = pos.gather(1, idx)
        ctx.count_full_scan(valid.sum(), self.d)

    def _scan_each_list(self, ctx, qidx, order, counts, k, mask, cand_s, cand_p):
        """One GEMM per list on a contiguous slice: best on CPUs, where launches are cheap. On CPUs the
        lists are spread over list workers (search/workers.py), largest work first; each list writes
        only its own (query, list) rows of the candidate buffers."""
        starts, sizes = self.invlists.starts.tolist(), self.invlists.sizes.tolist()
        counts = counts.tolist()
        first = np.cumsum([0] + counts[:-1]).tolist()
        lists = [lst for lst, cnt in enumerate(counts) if cnt and sizes[lst]]
        nq = ctx.q.shape[0]
        workers = cost.cpu_workers(nq) if self.device.type == "cpu" and self.lists_in_parallel else 1
        if workers > 1:
            lists.sort(key=lambda lst: -counts[lst] * sizes[lst])

        def scan(lst):
            rows = order[first[lst] : first[lst] + counts[lst]]
            s, p = self._scan_list(ctx, qidx[rows], lst, starts[lst], sizes[lst], k, mask)
            cand_s[rows, : s.shape[1]] = s
            cand_p[rows, : s.shape[1]] = p

        workers_for_each(scan, lists, workers)

    def _select_across_lists(self, max_codes) -> bool:
        """CPUs: whole lists scored, then one selection per query over all of them (search/select.py)
        instead of a top-k per list; not for max_codes (lists cut short) nor for scans that prune each
        list against the ones before it (their own _scan_list)."""
        return (self.device.type == "cpu" and not max_codes
                and type(self)._scan_list is GroupedScan._scan_list)

    def _use_buckets(self) -> bool:
        return self.device.type != "cpu" and self.scanner.batched_lists

    def _scan_buckets(self, ctx, qidx, order, counts, k, mask, cand_s, cand_p):
        """Lists of similar size scored together in one padded batched GEMM: ~10 launches per bucket
        instead of ~6 per list, which is what bounds the per-list loop on a GPU."""
        sizes, counts_np = self.invlists.sizes.numpy(), counts.numpy()
        active = np.nonzero((counts_np > 0) & (sizes > 0))[0]
        active = active[np.argsort(-sizes[active], kind="stable")]
        starts_d, sizes_d = self.invlists.device_meta()
        first_d = (torch.cumsum(counts, 0) - counts).to(self.device)
        counts_d = counts.to(self.device)
        per_row = max(self.scanner.gather_cost(), 1)
        for lists_np, smax, cmax in _buckets(active, sizes, counts_np, per_row, 4 * SCORE_BUDGET):
            lists = torch.from_numpy(lists_np).to(self.device)
            ar_s = torch.arange(smax, device=self.device)
            ar_c = torch.arange(cmax, device=self.device)
            row_ok = ar_s < sizes_d[lists][:, None]
            pos = torch.where(row_ok, starts_d[lists][:, None] + ar_s, 0)  # (B, S)
            q_ok = ar_c < counts_d[lists][:, None]
            pair = order[torch.where(q_ok, first_d[lists][:, None] + ar_c, 0)]  # (B, C) pair rows
            if mask is not None:
                row_ok = row_ok & self._allowed_at(mask, pos)
            s, pair_term = self.scanner.score_lists(ctx, qidx[pair], pos, lists, row_ok)  # (B, C, S)
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
