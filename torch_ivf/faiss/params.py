"""Faiss's SearchParametersIVF: torch_ivf's SearchParams plus Faiss's early-stop fields."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..index.base import SearchParams


@dataclass
class SearchParametersIVF(SearchParams):
    """``SearchParametersIVF(nprobe=..., max_codes=..., sel=..., max_lists_num=0, ensure_topk_full=False,
    max_empty_result_buckets=0)``. max_empty_result_buckets (> 0) ends a query's range_search after that
    many probed lists in a row without a result, as Faiss does. ensure_topk_full (with a max_codes
    budget): a query that ends with fewer than k results is searched again without the budget (Faiss
    keeps scanning until it has k instead: the same guarantee, possibly more rows scanned here).
    max_lists_num (Faiss's early stop once enough results are found) is checked and kept, not applied:
    all nprobe lists are scanned."""
    max_lists_num: int = 0
    ensure_topk_full: bool = False
    max_empty_result_buckets: int = 0

    def check(self) -> None:
        for name in ("max_lists_num", "max_empty_result_buckets"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"params.{name} must be a non-negative int, got {v!r}")
        if not isinstance(self.ensure_topk_full, (bool, np.bool_)):
            raise TypeError(f"params.ensure_topk_full must be a bool, got {type(self.ensure_topk_full).__name__}")


def checked(params):
    """params, its Faiss fields checked (the core search checks the rest)."""
    if isinstance(params, SearchParametersIVF):
        params.check()
    return params


def stop_after_empty(index, q: torch.Tensor, params, lims: np.ndarray, D: np.ndarray, I: np.ndarray, m: int):
    """Drop each query's range results past its first run of m probed lists without a result (Faiss
    stops scanning there); results must be in probe order (order="storage")."""
    nq = q.shape[0]
    if nq == 0 or I.size == 0:
        return lims, D, I
    nprobe = min(params.nprobe or index.nprobe, index.nlist)
    probe = index._coarse(index._transform(q), nprobe)[0].cpu()
    counts = np.diff(lims.astype(np.int64))
    qi = torch.from_numpy(np.repeat(np.arange(nq), counts))
    _, _, lists = index.invlists.locate(torch.from_numpy(I).to(index.device))
    rank = (probe[qi] == lists.cpu()[:, None]).to(torch.int8).argmax(1)
    empty = torch.bincount(qi * nprobe + rank, minlength=nq * nprobe).view(nq, nprobe) == 0
    run = torch.zeros(nq, dtype=torch.int64)
    stop = torch.full((nq,), nprobe, dtype=torch.int64)
    for j in range(nprobe):
        run = torch.where(empty[:, j], run + 1, 0)
        stop = torch.where((run >= m) & (stop == nprobe), j, stop)
    keep = (rank < stop[qi]).numpy()
    new_lims = np.zeros(nq + 1, dtype=lims.dtype)
    new_lims[1:] = np.cumsum(np.bincount(qi.numpy()[keep], minlength=nq))
    return new_lims, D[keep], I[keep]


def fill_topk(index, x, k, params, D, I):
    """ensure_topk_full: rows of (D, I) with a missing result searched again without max_codes."""
    if not (isinstance(params, SearchParametersIVF) and params.ensure_topk_full):
        return D, I
    budget = index.max_codes if params.max_codes is None else int(params.max_codes)
    short = np.nonzero((np.asarray(I) < 0).any(1))[0] if budget else []
    if len(short):
        D2, I2 = index.search(np.asarray(x)[short], k, params=replace(params, max_codes=0, ensure_topk_full=False))
        D[short], I[short] = D2, I2
    return D, I
