"""Hybrid ranking: the dense and the keyword relevance of one document blended into one score.

Both inputs are relevances in [0, 1] (see scores.py and keyword.py), so a convex blend keeps the
result in [0, 1] and keeps its meaning stable across queries, filters and ``k``::

    hybrid(D) = alpha * dense(D) + (1 - alpha) * keyword(D)

alpha = 1 is dense retrieval only, alpha = 0 keyword only (the collection serves those two exactly by
the single-mode paths). Candidates are the union of the dense top ``fetch_k`` and the keyword top
``fetch_k``; each candidate gets both of its scores computed exactly (a document missing from one
list is scored on that side too, not given 0), and the best ``k`` of the blend are returned.
"""

from __future__ import annotations

import torch

MODES = ("dense", "keyword", "hybrid")
_ALIASES = {"dense": "dense", "keyword": "keyword", "sparse": "keyword", "hybrid": "hybrid"}


def check_mode(mode: str) -> str:
    """Canonical mode name; "sparse" is accepted for "keyword"."""
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a string, got {type(mode).__name__}")
    name = _ALIASES.get(mode.lower())
    if name is None:
        raise ValueError(f"mode must be one of 'dense', 'keyword' (or 'sparse'), 'hybrid'; got {mode!r}")
    return name


def check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1] (1 = dense only, 0 = keyword only), got {alpha!r}")
    return float(alpha)


def blend(dense: torch.Tensor, keyword: torch.Tensor, alpha: float, k: int) -> tuple[list[int], list[float]]:
    """Positions of the ``k`` best blended candidates (best first) and their hybrid relevance."""
    fused = (alpha * dense + (1.0 - alpha) * keyword).tolist()
    # Sort by (-score, position): the earlier candidate (dense order first) wins ties, deterministically.
    order = sorted(range(len(fused)), key=lambda i: (-fused[i], i))[:k]
    return order, [fused[i] for i in order]
