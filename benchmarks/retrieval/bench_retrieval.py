"""Retrieval quality of dense vs keyword vs hybrid search on real man-page passages, and the cost.

Corpus: the first N man-page passages with their all-MiniLM-L6-v2 embeddings (copied once into
benchmarks/.cache/retrieval/, git-ignored). Queries with a known answer, two kinds:
  * ``rare``: the 3 rarest words of one passage that appear in 2-50 passages (an exact-term lookup,
    the case dense embeddings miss); the answer is that passage.
  * ``describe``: the one-line description of a page (from "NAME CA.pl - friendlier interface for
    OpenSSL certificate programs": the words after the dash), as a user would say what they want; the
    page's NAME passage is held out of the corpus, and the answer is any other passage of that page.
recall@k = share of queries whose answer is in the top k; MRR@k = mean of 1 / rank of the first answer.
Also: ms per query of each mode, and bm25s (a well-kept BM25 library) on the same corpus and tokens
for build/query time and top-10 agreement, when importable.

    PYTHONPATH=.:integrations python -m benchmarks.retrieval.bench_retrieval [--n 80000] [--nq 500]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
from collections import Counter

import numpy as np
import torch

from benchmarks.stores.data import data_dir, machine

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(os.path.dirname(HERE), ".cache", "retrieval")
FILES = ["manpages-passages.jsonl.gz"] + [f"manpages-minilm-{i}.npy" for i in range(4)]


def local_copy() -> str:
    """Copy the inputs into the ignored cache once (benchmarks never read shared data in place)."""
    os.makedirs(CACHE, exist_ok=True)
    for name in FILES:
        src, dst = os.path.join(data_dir(), name), os.path.join(CACHE, name)
        if not os.path.exists(dst):
            if not os.path.exists(src):
                raise SystemExit(f"skipped: {src} is absent (set BENCH_DATA_DIR)")
            shutil.copyfile(src, dst)
    return CACHE


def load(n: int):
    import gzip

    folder = local_copy()
    rows = []
    with gzip.open(os.path.join(folder, FILES[0]), "rt", encoding="utf-8") as fh:
        for line in fh:
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    shards = [np.load(os.path.join(folder, f)) for f in FILES[1:1 + (n + 19_999) // 20_000]]
    return rows, np.concatenate(shards)[:n].astype(np.float32)


def make_queries(rows, nq: int, seed: int = 0):
    from torch_ivf.collection.keyword import tokenize

    toks = [set(tokenize(r["text"])) for r in rows]
    df = Counter(t for ts in toks for t in ts)
    rng = np.random.default_rng(seed)
    rare = []
    for i in rng.permutation(len(rows)):
        words = sorted((t for t in toks[i] if 2 <= df[t] <= 50 and not t.isdigit()), key=lambda t: (df[t], t))
        if len(words) >= 3:
            rare.append({"kind": "rare", "query": " ".join(words[:3]), "answer": {rows[i]["id"]}})
        if len(rare) == nq:
            break
    pages: dict[str, set] = {}
    for r in rows:
        pages.setdefault(r["title"], set()).add(r["id"])
    describe, held_out = [], set()
    pattern = re.compile(r"^NAME\s+(.+?)\s+-\s+(.+?)(?:\s+[A-Z]{4,}\b|$)")
    rare_answers = set().union(*(q["answer"] for q in rare))
    for i in rng.permutation(len(rows)):
        r = rows[i]
        m = pattern.match(r["text"]) if r["id"].endswith("#0") else None
        others = pages[r["title"]] - {r["id"]}
        if m and len(m.group(2).split()) >= 4 and len(others) >= 2 and r["id"] not in rare_answers:
            # The page's NAME passage is held out of the corpus: the description is not there verbatim.
            describe.append({"kind": "describe", "query": m.group(2)[:200], "answer": others})
            held_out.add(r["id"])
        if len(describe) == nq:
            break
    return rare + describe, held_out


def score(ranked: list[list[str]], queries, k: int):
    rec, rr = [], []
    for ids, q in zip(ranked, queries):
        pos = next((j for j, i in enumerate(ids[:k]) if i in q["answer"]), None)
        rec.append(pos is not None)
        rr.append(0.0 if pos is None else 1.0 / (pos + 1))
    return float(np.mean(rec)), float(np.mean(rr))


def bm25s_reference(rows, queries, k: int, ours: list[list[str]]):
    try:
        import bm25s
    except ImportError:
        return None
    from torch_ivf.collection.keyword import K1, B, tokenize

    t0 = time.perf_counter()
    corpus = [tokenize(r["text"]) for r in rows]
    retriever = bm25s.BM25(k1=K1, b=B, method="lucene")
    retriever.index(corpus, show_progress=False)
    build = time.perf_counter() - t0
    qt = [tokenize(q["query"]) for q in queries]
    t0 = time.perf_counter()
    docs, _ = retriever.retrieve(qt, k=k, show_progress=False, n_threads=1)
    per_q = (time.perf_counter() - t0) / len(queries) * 1e3
    ids = [[rows[j]["id"] for j in d] for d in docs]
    agree = float(np.mean([len(set(a) & set(b)) / max(len(b), 1) for a, b in zip(ids, ours)]))
    return {"lib": "bm25s", "version": getattr(bm25s, "__version__", "?"), "build_s": round(build, 2),
            "ms_per_query": round(per_q, 3), "top10_agreement_with_ours": round(agree, 4)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=80_000)
    ap.add_argument("--nq", type=int, default=500, help="queries per kind")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared, loaded CPU, multi-threaded small ops stall)")
    ap.add_argument("--alphas", default="0.3,0.5,0.7")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "cpu.jsonl"))
    args = ap.parse_args()

    from torch_ivf.collection import Collection, MiniLMEmbedder

    torch.set_num_threads(args.threads)
    rows_all, vectors = load(args.n)
    rows = rows_all
    queries, held_out = make_queries(rows, args.nq)
    rows = [r for r in rows if r["id"] not in held_out]
    vectors = vectors[[i for i, r in enumerate(rows_all) if r["id"] not in held_out]]
    model = MiniLMEmbedder()
    qvec = np.asarray(model.encode([q["query"] for q in queries]), dtype=np.float32)
    coll = Collection(model, index="Flat", device="cpu")
    t0 = time.perf_counter()
    coll.upsert([r["text"] for r in rows], ids=[r["id"] for r in rows], vectors=vectors)
    add_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    coll._keyword_index()._compiled()
    kw_build = time.perf_counter() - t0

    out = []
    base = {"corpus": f"manpages-{args.n}", "k": args.k, "machine": machine(), "add_s": round(add_s, 2),
            "keyword_build_s": round(kw_build, 2), "threads": torch.get_num_threads()}
    variants = [("dense", 1.0), ("keyword", 0.0)] + [("hybrid", float(a)) for a in args.alphas.split(",")]
    ranked_by = {}
    for mode, alpha in variants:
        ranked, times = [], []
        for q, v in zip(queries, qvec):
            t0 = time.perf_counter()
            hits = coll.search(v, args.k, mode=mode, alpha=alpha, text=q["query"])
            times.append(time.perf_counter() - t0)
            ranked.append([h.id for h in hits])
        ranked_by[(mode, alpha)] = ranked
        for kind in ("rare", "describe", "all"):
            sel = [i for i, q in enumerate(queries) if kind == "all" or q["kind"] == kind]
            r, m = score([ranked[i] for i in sel], [queries[i] for i in sel], args.k)
            out.append({**base, "mode": mode, "alpha": alpha, "queries": kind, "nq": len(sel),
                        f"recall@{args.k}": round(r, 4), f"mrr@{args.k}": round(m, 4),
                        "ms_per_query_median": round(float(np.median(times)) * 1e3, 3)})
            print(json.dumps({k: v for k, v in out[-1].items() if k != "machine"}))
    ref = bm25s_reference(rows, queries, args.k, ranked_by[("keyword", 0.0)])
    if ref is not None:
        out.append({**base, **ref})
        print(json.dumps(ref))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        for row in out:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
