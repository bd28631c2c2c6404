"""Where does IVF beat exact search for single RAG queries on this device? (feeds indexing.py)

Real MiniLM vectors (d = 384); for each size: exact Flat vs the IVF that "auto" would build, median
latency of single-query searches through the Collection, and the IVF's recall@10 against exact
float64 search. Recall is tie-aware: the man pages repeat passages, so a hit counts when its exact score
reaches the exact k-th score (id-based recall would punish picking one of two identical passages).
"""

from __future__ import annotations

import statistics

import numpy as np

from .data import Timer, minilm


def run(sizes=(10_000, 20_000, 40_000, 75_000), n_queries: int = 200, k: int = 10, device: str = "cpu") -> dict:
    from torch_ivf.collection import Collection
    from torch_ivf.collection.indexing import IndexPlan

    x = minilm(max(sizes) + n_queries)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))  # file order is sorted by man page: never split by position
    queries, pool = x[order[:n_queries]], x[order[n_queries:]]
    out = {"device": device, "k": k, "queries": n_queries, "sizes": []}
    for n in sizes:
        base = pool[:n]
        nlist = IndexPlan._auto_nlist(n)
        row = {"n": n, "nlist": nlist}
        unit = base / np.linalg.norm(base, axis=1, keepdims=True)
        exact = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float64) @ unit.T.astype(np.float64)
        kth = np.sort(exact, axis=1)[:, -k]
        for spec in ("Flat", f"IVF{nlist},Flat"):
            coll = Collection(index=spec, device=device)
            with Timer() as build:
                coll.upsert(vectors=base, ids=[str(i) for i in range(n)])
            times, recall = [], []
            for qi, q in enumerate(queries):
                with Timer() as t:
                    hits = coll.search(q, k=k)
                times.append(t.s)
                recall.append(sum(exact[qi, int(h.id)] >= kth[qi] - 1e-4 for h in hits) / k)
            key = "flat" if spec == "Flat" else "ivf"
            row[f"{key}_recall_at_k"] = round(float(np.mean(recall)), 4)
            row[f"{key}_ms"] = round(1000 * statistics.median(times), 3)
            row[f"{key}_build_s"] = round(build.s, 2)
            if key == "ivf":
                row["nprobe"] = coll.index.nprobe
        out["sizes"].append(row)
        print(row, flush=True)
    return out


if __name__ == "__main__":
    import json
    import os

    from .data import REPO

    res = run()
    with open(os.path.join(REPO, "benchmarks", "results", "stores-auto-cpu.json"), "w") as fh:
        json.dump(res, fh, indent=1)
