"""Distances via GEMM: ||q - x||^2 = ||q||^2 + ||x||^2 - 2 q.x, with ||x||^2 precomputed."""
from __future__ import annotations

import torch

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


def nearest_centroids(x: torch.Tensor, centroids: torch.Tensor, metric: str = "l2") -> torch.Tensor:
    """Index of the best centroid for each row of x (chunked GEMM + argmax)."""
    cn = (centroids * centroids).sum(1) if metric == "l2" else None
    rows = max(1, _CHUNK_ELEMS // max(1, centroids.shape[0]))
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for i in range(0, x.shape[0], rows):
        out[i : i + rows] = pairwise_scores(x[i : i + rows], centroids, cn, metric).argmax(1)
    return out
