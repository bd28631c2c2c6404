"""Raw index scores -> relevance in [0, 1], higher is better, one meaning for every metric.

For unit-length embeddings (the RAG norm) all three metrics give the same number: the cosine
similarity clipped at 0, so one ``score_threshold`` means the same thing whatever the metric.
  cosine: clip(cos, 0, 1)
  ip:     clip(ip, 0, 1)            (ip is meant for normalised embeddings; use l2 otherwise)
  l2:     clip(1 - d2 / 2, 0, 1)    (d2 = squared L2; equals cos for unit vectors)
"""

from __future__ import annotations

import torch

METRICS = ("cosine", "ip", "l2")


def check_metric(metric: str) -> str:
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a string, got {type(metric).__name__}")
    name = metric.lower()
    aliases = {"cosine": "cosine", "cos": "cosine", "ip": "ip", "inner_product": "ip",
               "max_inner_product": "ip", "dot": "ip", "dot_product": "ip", "l2": "l2",
               "euclidean": "l2", "euclidean_distance": "l2"}
    if name not in aliases:
        raise ValueError(f"metric must be one of {METRICS} (or a LangChain DistanceStrategy), got {metric!r}")
    return aliases[name]


def relevance(raw: torch.Tensor, metric: str) -> torch.Tensor:
    """Map the index's D values to [0, 1]; missing results (inf) map to 0."""
    raw = raw.to(torch.float32)
    if metric == "l2":
        rel = 1.0 - raw / 2.0
    else:
        rel = raw.clone()
    rel = torch.nan_to_num(rel, nan=0.0, posinf=0.0, neginf=0.0)
    return rel.clamp_(0.0, 1.0)


def index_metric(metric: str) -> str:
    # Cosine is stored as inner product over vectors the collection normalises itself, so every
    # index type (flat, IVF, PQ) supports it the same way.
    return "ip" if metric == "cosine" else metric
