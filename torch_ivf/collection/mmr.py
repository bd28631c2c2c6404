"""Maximal marginal relevance over stored vectors (diverse results from a candidate pool)."""

from __future__ import annotations

import torch


def mmr_select(query: torch.Tensor, candidates: torch.Tensor, k: int, lambda_mult: float) -> list[int]:
    """Greedy MMR: pick argmax of lambda * sim(q, c) - (1 - lambda) * max sim(c, picked).

    ``query`` (d,), ``candidates`` (n, d); cosine similarity is used whatever the index metric,
    because diversity is about direction. Returns positions into ``candidates`` in pick order.
    """
    if not 0.0 <= float(lambda_mult) <= 1.0:
        raise ValueError(f"lambda_mult must be in [0, 1], got {lambda_mult}")
    n = candidates.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return []
    cand = torch.nn.functional.normalize(candidates.to(torch.float32), dim=1)
    q = torch.nn.functional.normalize(query.to(torch.float32).reshape(1, -1), dim=1)
    to_query = (cand @ q.T).squeeze(1)
    pair = cand @ cand.T
    picked = [int(torch.argmax(to_query))]
    # Running max similarity of every candidate to the picked set: one row update per pick.
    redundancy = pair[picked[0]].clone()
    taken = torch.zeros(n, dtype=torch.bool, device=cand.device)
    taken[picked[0]] = True
    while len(picked) < k:
        score = lambda_mult * to_query - (1.0 - lambda_mult) * redundancy
        score[taken] = float("-inf")
        best = int(torch.argmax(score))
        picked.append(best)
        taken[best] = True
        redundancy = torch.maximum(redundancy, pair[best])
    return picked
