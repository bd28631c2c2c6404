"""The per-query path (CPUs, small batches): each query scores its probed lists, one scanner call per
list on the list's contiguous slice, into one row of scores, and takes one top-k over all of them.

The grouped path spends ~6 torch ops per (list, query group) on bookkeeping (pair sorting, candidate
buffers, per-list top-k, scatter) and ~40 more per search; for one query that is ~130 ops, which on
a CPU costs more than scoring the rows. Here a query costs one op per probed list plus ~10.
The scores are the grouped path's own (the same scanner call for a single query) and ties keep the
first stored row: lists are laid out in slab order, so the row of scores is in slab order too.
A query's lists may be shared out to list workers (search/workers.py): each writes its own columns.
"""
from __future__ import annotations

import torch

from ..topk import topk_first
from . import cost
from .common import pad_k
from .workers import for_each


class PerQueryScan:
    def _scan_per_query(self, ctx, probe, k, mask):
        starts, sizes = self.invlists.starts.tolist(), self.invlists.sizes.tolist()
        into = getattr(self.scanner, "score_block_into", None) if mask is None else None
        out_s, out_p = [], []
        for i, lists in enumerate(probe.tolist()):
            qsel = torch.tensor([i], device=self.device)
            q = ctx.q[i:i + 1]
            jobs, ends, shift, end = [], [], [], 0
            for lst in sorted(lists, key=starts.__getitem__):
                a, n = starts[lst], sizes[lst]
                if n == 0:
                    continue
                jobs.append((lst, a, n, end))
                shift.append(a - end)  # slab position = column + shift of the column's list
                end += n
                ends.append(end)
            if not jobs:
                out_s.append(torch.full((1, 0), float("-inf"), device=self.device))
                out_p.append(torch.zeros((1, 0), dtype=torch.int64, device=self.device))
                continue
            row = torch.empty((1, end), device=self.device)

            def scan(job):
                lst, a, n, col = job
                if into is not None:
                    into(ctx, qsel, lst, a, a + n, row[:, col:col + n], q)
                    return
                s = self.scanner.score_block(ctx, qsel, lst, a, a + n)
                if mask is not None:
                    s = s.masked_fill(~self._allowed_at(mask, slice(a, a + n))[None, :], float("-inf"))
                row[:, col:col + n] = s

            workers = cost.query_workers(end * self.scanner.gather_cost()) if self.lists_in_parallel else 1
            if workers > 1:
                jobs.sort(key=lambda job: -job[2])  # largest first: the last lists taken are short
            for_each(scan, jobs, workers)
            values, idx = topk_first(row, min(k, end))
            at = torch.searchsorted(torch.tensor(ends, device=self.device), idx, right=True)
            out_s.append(values)
            out_p.append(idx + torch.tensor(shift, device=self.device)[at])
        if len(out_s) == 1:
            return pad_k(out_s[0], out_p[0], k)
        padded = [pad_k(s, p, k) for s, p in zip(out_s, out_p)]
        return torch.cat([s for s, _ in padded]), torch.cat([p for _, p in padded])
