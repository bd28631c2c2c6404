"""The matrix path: every (query, probed list, row) at once, by the codec's Triton scan or a padded torch
gather; few launches and no host sync, so CUDA graphs can capture it."""
from __future__ import annotations

import torch

from .. import kernels
from ..topk import topk_first
from .common import SCORE_BUDGET, pad_k


class MatrixScan:
    def _scan_matrix(self, ctx, probe, k, mask, max_codes):
        if self.scanner.kernel_scan and kernels.available(self.device):
            out = self.scanner.scan_kernel(ctx, probe, k, mask, max_codes)
            if out is not None:  # None: the kernel does not take this k
                return out
        return self._scan_padded(ctx, probe, k, mask, max_codes)

    def _scan_padded(self, ctx, probe, k, mask, max_codes):
        """Padded layout over (query, probed list, row), gathered by torch (GPUs without Triton, CPUs in
        matrix mode, k beyond a kernel's limit): few launches and no host sync."""
        nq, P = probe.shape
        starts, sizes = self.invlists.device_meta()
        maxlen = max(self.invlists.max_size, 1)
        chunk = max(1, SCORE_BUDGET // (P * maxlen * self.scanner.gather_cost()))
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
            s = self.scanner.score_gathered(ctx, qsel, pos, lists).masked_fill(~valid.reshape(b, -1), float("-inf"))
            s = self._filter(s, pos, mask)
            values, idx = topk_first(s, min(k, s.shape[1]), pos)  # ties: first in the slab, as "grouped"
            probe_col, row = idx // maxlen, idx % maxlen
            out_s.append(values)
            # -inf entries (fewer candidates than k) may point past the slab: park them at row 0
            out_p.append(torch.where(torch.isneginf(values), 0, starts[ls.gather(1, probe_col)] + row))
        return pad_k(torch.cat(out_s), torch.cat(out_p), k)
