"""Filter starvation: 10,000 real passages, a filter matching 1%, k = 10. How many hits come back?

torch-ivf applies the filter as a label mask inside the scan; LangChain's FAISS store searches
fetch_k = 20 candidates and filters afterwards.
"""

from __future__ import annotations

import statistics
import warnings

import numpy as np

from .data import Timer, minilm, passages, try_langchain_community
from .lookup import LookupEmbeddings


def _summary(counts: list[int], seconds: list[float], k: int, recall: float) -> dict:
    return {"mean_hits": round(statistics.mean(counts), 3), "recall_at_k": round(recall, 4), "min_hits": min(counts), "max_hits": max(counts),
            "queries_with_k": sum(c == k for c in counts), "queries": len(counts),
            "median_ms_per_query": round(1000 * statistics.median(seconds), 3)}


def run(n: int = 10_000, n_queries: int = 200, k: int = 10, buckets: int = 100, device: str | None = None) -> dict:
    from langchain_torch_ivf import TorchIVFVectorStore

    from torch_ivf.collection import default_device

    device = device or default_device()

    rows = passages(n + n_queries)
    vecs = minilm(n + n_queries)
    texts = [r["text"] for r in rows[:n]]
    metas = [{"bucket": i % buckets, "page": rows[i]["title"], "row": i} for i in range(n)]
    queries = vecs[n:]
    target = {"bucket": 7}
    emb = LookupEmbeddings(texts, vecs[:n])
    pairs = list(zip(texts, vecs[:n].tolist()))
    result = {"documents": n, "queries": n_queries, "k": k, "filter_matches": n // buckets, "device": device,
              "stores": {}}

    # Exact filtered top-k (cosine on unit vectors = inner product) as the reference.
    allowed = np.array([m["bucket"] == target["bucket"] for m in metas])
    scores = queries @ vecs[:n].T
    scores[:, ~allowed] = -np.inf
    truth = [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in scores]

    def measure(name, search):
        counts, seconds, hits = [], [], 0
        for q, want in zip(queries, truth):
            with Timer() as t:
                found = search(q.tolist())
            counts.append(len(found))
            seconds.append(t.s)
            hits += len({d.metadata["row"] for d in found} & want)
        result["stores"][name] = _summary(counts, seconds, k, hits / (k * len(truth)))

    for spec in ("auto", "IVF{nlist},Flat"):
        store = TorchIVFVectorStore.from_embeddings(pairs, emb, metadatas=metas, ids=[r["id"] for r in rows[:n]],
                                                    index=spec, device=device)
        label = f"torch-ivf ({store.collection.index_description})"
        measure(label, lambda q, s=store: s.similarity_search_by_vector(q, k=k, filter=target))

    community = try_langchain_community()
    if community is None:
        result["faiss_store"] = "langchain-community not importable: FAISS store not measured"
        return result
    FAISS, DistanceStrategy = community
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for strategy in (DistanceStrategy.EUCLIDEAN_DISTANCE, DistanceStrategy.MAX_INNER_PRODUCT):
            faiss_store = FAISS.from_embeddings(pairs, emb, metadatas=metas, distance_strategy=strategy)
            name = f"langchain-community FAISS ({strategy.value}, default fetch_k=20)"
            measure(name, lambda q, s=faiss_store: s.similarity_search_by_vector(q, k=k, filter=target))
            name = f"langchain-community FAISS ({strategy.value}, fetch_k=1000)"
            measure(name, lambda q, s=faiss_store: s.similarity_search_by_vector(q, k=k, filter=target,
                                                                               fetch_k=1000))
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
