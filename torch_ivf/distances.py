"""Distances via GEMM: ||q - x||^2 = ||q||^2 + ||x||^2 - 2 q.x, with ||x||^2 precomputed."""
from __future__ import annotations

import torch

from . import progress

# Rows per chunk when scanning large matrices, so scores never exceed ~256 MB.
_CHUNK_ELEMS = 64 * 1024 * 1024


def pairwise_scores(q: torch.Tensor, x: torch.Tensor, x_sqnorm: torch.Tensor | None, metric: str) -> torch.Tensor:
    """Scores where larger is better: -||q-x||^2 + ||q||^2 (l2) or q.x (ip / cosine).

    For l2 the ||q||^2 term is left out (it does not change the ranking); callers add it back.
    """
    s = q @ x.T
    if metric == "l2":
        s = 2 * s - x_sqnorm[None, :]
    return s


def nearest_centroids(x: torch.Tensor, centroids: torch.Tensor, metric: str = "l2", *,
                      verbose: bool | None = False) -> torch.Tensor:
    """Index of the best centroid for each row of x (chunked GEMM + argmax); verbose: a progress bar
    over the rows (torch_ivf.progress)."""
    cn = (centroids * centroids).sum(1) if metric == "l2" else None
    rows = max(1, _CHUNK_ELEMS // max(1, centroids.shape[0]))
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    n = x.shape[0]
    work = progress.score_work(n, *centroids.shape)
    with progress.bar(n, "assigning to lists", verbose=verbose, work=work, unit="vec") as shown:
        for i in range(0, n, rows):
            out[i : i + rows] = pairwise_scores(x[i : i + rows], centroids, cn, metric).argmax(1)
            shown.update(min(rows, n - i))
    return out
