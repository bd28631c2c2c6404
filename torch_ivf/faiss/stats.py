"""Faiss's process-wide statistics (``faiss.cvar.indexIVF_stats``, ``faiss.cvar.indexPanorama_stats``)."""
from __future__ import annotations

import torch

from ..index.base import SearchParams
from ..panorama import panorama_stats


class IndexIVFStats:
    """Faiss's indexIVF_stats: queries searched and codes scored (after the selector)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Zero every counter and timer."""
        self.nq = self.nlist = self.ndis = self.nheap_updates = 0
        self.quantization_time = self.search_time = 0.0

    def add_search(self, index, q: torch.Tensor, params) -> None:
        """Count what a search of transformed-space queries q scanned (recomputes the probes)."""
        params = params or SearchParams()
        nprobe = min(params.nprobe or index.nprobe, index.nlist)
        self.nq += q.shape[0]
        self.nlist += q.shape[0] * nprobe
        if index.ntotal == 0 or q.shape[0] == 0:
            return
        probe, _ = index._coarse(index._transform(q), nprobe)
        sel = params.sel if params.sel is not None else params.allowed
        if sel is None:
            per_list = index.invlists.sizes.to(probe.device)
        else:
            pos, lists = index.invlists.live_positions()
            keep = index._allowed_at(index._allowed_mask(sel), pos)
            per_list = torch.bincount(lists[keep], minlength=index.nlist)
        lens = per_list[probe]
        max_codes = index.max_codes if params.max_codes is None else int(params.max_codes)
        if max_codes:
            before = torch.cumsum(lens, 1) - lens
            lens = (max_codes - before).clamp(min=0).minimum(lens)
        self.ndis += int(lens.sum())


class _CVar:
    """Faiss's ``faiss.cvar``: the process-wide statistics objects."""

    def __init__(self):
        self.indexIVF_stats = IndexIVFStats()
        self.indexPanorama_stats = panorama_stats


cvar = _CVar()
