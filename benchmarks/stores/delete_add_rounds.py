"""A store on an IVF index after 3 rounds of delete 10% / add 10% / search: is anything lost or wrong?

Checked after every round: every live id is returned by get_by_ids with its own text ("missing" /
"wrong"), a sample of live documents is found by its own vector at rank 1, and no deleted document
is ever returned ("resurrected"). The same rounds are run on langchain-community's FAISS store over
a faiss IndexIVFFlat when that package is importable.
"""

from __future__ import annotations

import warnings

import numpy as np

from .data import Timer, minilm, passages, try_langchain_community
from .lookup import LookupEmbeddings


def _rounds(store, rows, vecs, n, rounds, frac, sample, rng) -> list[dict]:
    live = list(range(n))
    deleted: list[int] = []
    next_row = n
    out = []
    for r in range(rounds):
        report = {"round": r + 1}
        gone = sorted(rng.choice(len(live), size=int(frac * n), replace=False).tolist(), reverse=True)
        gone_rows = [live[i] for i in gone]
        for i in gone:
            live.pop(i)
        try:
            with Timer() as t:
                store.delete([rows[g]["id"] for g in gone_rows])
            report["delete_s"] = round(t.s, 3)
        except Exception as exc:  # noqa: BLE001 - report what the store does
            report["delete_error"] = f"{type(exc).__name__}: {exc}"[:200]
        deleted += gone_rows
        new_rows = list(range(next_row, next_row + int(frac * n)))
        next_row += len(new_rows)
        with Timer() as t:
            store.add_embeddings([(rows[i]["text"], vecs[i].tolist()) for i in new_rows],
                                 metadatas=[{"row": i} for i in new_rows], ids=[rows[i]["id"] for i in new_rows])
        report["add_s"] = round(t.s, 3)
        live += new_rows

        got = {d.id: d for d in store.get_by_ids([rows[i]["id"] for i in live])}
        report["missing"] = sum(rows[i]["id"] not in got for i in live)
        report["wrong"] = sum(rows[i]["id"] in got and got[rows[i]["id"]].page_content != rows[i]["text"] for i in live)
        probe = rng.choice(live, size=min(sample, len(live)), replace=False)
        not_found = errors = 0
        with Timer() as t:
            for i in probe:
                try:
                    top = store.similarity_search_by_vector(vecs[i].tolist(), k=1)
                except Exception:  # noqa: BLE001 - a store that crashes on search is a finding too
                    errors += 1
                    continue
                if not top or (top[0].metadata.get("row") != i and top[0].page_content != rows[i]["text"]):
                    not_found += 1
        report["search_not_at_rank1"] = not_found
        report["search_ms_per_query"] = round(1000 * t.s / len(probe), 3)
        dead_ids = {rows[i]["id"] for i in deleted}
        dead_rows = set(deleted)
        resurrected = 0
        for i in rng.choice(deleted, size=min(sample, len(deleted)), replace=False):
            try:
                found = store.similarity_search_by_vector(vecs[i].tolist(), k=5)
            except Exception:  # noqa: BLE001
                errors += 1
                continue
            for d in found:
                if d.id in dead_ids or d.metadata.get("row") in dead_rows:
                    resurrected += 1
        report["resurrected"] = resurrected
        report["search_errors"] = errors
        report["count"] = len(live)
        out.append(report)
    return out


def run(n: int = 20_000, rounds: int = 3, frac: float = 0.1, sample: int = 500, seed: int = 0, device: str | None = None) -> dict:
    from langchain_torch_ivf import TorchIVFVectorStore

    from torch_ivf.collection import default_device

    device = device or default_device()

    total = int(n * (1 + rounds * frac))
    rows, vecs = passages(total), minilm(total)
    emb = LookupEmbeddings([r["text"] for r in rows], vecs)
    result = {"documents": n, "rounds": rounds, "fraction": frac, "search_sample": sample, "device": device,
              "stores": {}}

    store = TorchIVFVectorStore(emb, index="IVF{nlist},Flat", device=device)
    with Timer() as t:
        store.add_embeddings([(rows[i]["text"], vecs[i].tolist()) for i in range(n)],
                             metadatas=[{"row": i} for i in range(n)], ids=[rows[i]["id"] for i in range(n)])
    name = f"torch-ivf ({store.collection.index_description})"
    result["stores"][name] = {"build_s": round(t.s, 3),
                              "rounds": _rounds(store, rows, vecs, n, rounds, frac, sample, np.random.default_rng(seed))}

    community = try_langchain_community()
    if community is None:
        result["faiss_store"] = "langchain-community not importable: FAISS store not measured"
        return result
    import faiss
    from langchain_community.docstore.in_memory import InMemoryDocstore

    FAISS, DistanceStrategy = community
    nlist = store.collection.index.nlist
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(vecs.shape[1]), vecs.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(vecs[:n])
    index.nprobe = store.collection.index.nprobe
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fstore = FAISS(embedding_function=emb, index=index, docstore=InMemoryDocstore(), index_to_docstore_id={},
                       distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT)
        with Timer() as t:
            fstore.add_embeddings([(rows[i]["text"], vecs[i].tolist()) for i in range(n)],
                                  metadatas=[{"row": i} for i in range(n)], ids=[rows[i]["id"] for i in range(n)])
        result["stores"][f"langchain-community FAISS (IndexIVFFlat nlist={nlist}, nprobe={index.nprobe})"] = {
            "build_s": round(t.s, 3),
            "rounds": _rounds(fstore, rows, vecs, n, rounds, frac, sample, np.random.default_rng(seed))}
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
