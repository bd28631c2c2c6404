"""Keyword (BM25) and hybrid search in the collection: scores vs a float64 reference, filters inside,
sync with upsert/delete, save/load, alpha extremes, bad input."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import word_hash_vector

from torch_ivf.collection import Collection
from torch_ivf.collection.keyword import B, K1, KeywordIndex, tokenize

DIM = 16
WORDS = ["socket", "bind", "EADDRINUSE", "O_NONBLOCK", "file", "read", "write", "signal", "pipe",
         "fork", "exec", "mmap", "errno", "thread", "lock", "timer", "poll", "epoll", "the", "a"]


def embed(texts):
    return [word_hash_vector(t, DIM).tolist() for t in texts]


def corpus(n: int = 120, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    # Zipf-like word frequencies so IDF varies a lot, lengths vary so |D| / avgdl matters.
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 30)), p=p)) for _ in range(n)]


def reference_bm25(texts: list[str], query: str) -> np.ndarray:
    """Float64 BM25 straight from the formula in keyword.py, relevance = score / bound."""
    docs = [Counter(re.findall(r"\w+", t.lower())) for t in texts]
    lengths = np.array([sum(d.values()) for d in docs], dtype=np.float64)
    avgdl = lengths.mean()
    n = len(docs)
    out = np.zeros(n)
    bound = 0.0
    for term in set(re.findall(r"\w+", query.lower())):
        df = sum(term in d for d in docs)
        if df == 0:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        bound += idf * (K1 + 1)
        for i, d in enumerate(docs):
            tf = d.get(term, 0)
            out[i] += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths[i] / avgdl))
    return out / bound if bound else out


def build(texts, **kwargs) -> Collection:
    coll = Collection(embed, device="cpu", **kwargs)
    coll.upsert(texts, ids=[f"d{i}" for i in range(len(texts))],
                metadatas=[{"i": i, "even": i % 2 == 0} for i in range(len(texts))])
    return coll


def test_tokenize_keeps_identifiers_whole_and_lowercases():
    assert tokenize("open(2) with O_NONBLOCK -> EAGAIN; ls -la") == ["open", "2", "with", "o_nonblock",
                                                                     "eagain", "ls", "la"]
    assert tokenize(None) == [] and tokenize("") == []


@pytest.mark.parametrize("query", ["socket bind", "EADDRINUSE", "the pipe fork mmap", "nothing-here epoll"])
def test_keyword_scores_match_float64_reference(query):
    texts = corpus()
    coll = build(texts)
    ref = reference_bm25(texts, query)
    hits = coll.search(query, k=len(texts), mode="keyword")
    assert len(hits) == int((ref > 0).sum())
    for h in hits:
        assert h.score == pytest.approx(ref[int(h.id[1:])], rel=1e-5, abs=1e-7)
        assert 0.0 < h.score < 1.0 and math.isnan(h.distance)
    # Ranked best first, and the top score is the reference's best.
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].score == pytest.approx(ref.max(), rel=1e-5)


def test_sparse_is_keyword_and_no_query_term_means_no_hits():
    coll = build(corpus())
    a = coll.search("socket errno", 5, mode="keyword")
    b = coll.search("socket errno", 5, mode="sparse")
    assert [h.id for h in a] == [h.id for h in b]
    assert coll.search("zebra", 5, mode="keyword") == []


def test_filter_and_ids_apply_inside_keyword_and_hybrid():
    texts = corpus(200)
    coll = build(texts)
    ref = reference_bm25(texts, "socket")
    even_matches = [i for i in range(200) if i % 2 == 0 and ref[i] > 0]
    hits = coll.search("socket", 7, mode="keyword", filter={"even": True})
    assert len(hits) == min(7, len(even_matches)) and all(h.metadata["even"] for h in hits)
    best_even = sorted(even_matches, key=lambda i: -ref[i])[:7]
    assert sorted(ref[int(h.id[1:])] for h in hits) == pytest.approx(sorted(ref[best_even]))
    # A filter that allows 3 documents: hybrid still returns all 3 (k whenever k match).
    few = {"i": {"$in": [5, 17, 150]}}
    assert {h.id for h in coll.search("socket", 10, mode="hybrid", filter=few)} == {"d5", "d17", "d150"}
    assert {h.id for h in coll.search("socket", 10, mode="hybrid", ids=["d3", "d4"])} == {"d3", "d4"}
    assert {h.id for h in coll.search("socket", 10, mode="keyword", ids=["d3", "d4"])} <= {"d3", "d4"}


def test_hybrid_is_the_documented_blend_of_both_relevances():
    texts = corpus(150)
    coll = build(texts)
    query, alpha = "bind EADDRINUSE socket", 0.4
    kw = reference_bm25(texts, query)
    vecs = np.array(embed(texts), dtype=np.float64)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    qv = np.array(embed([query])[0], dtype=np.float64)
    dense = np.clip(vecs @ (qv / np.linalg.norm(qv)), 0, 1)
    fused = alpha * dense + (1 - alpha) * kw
    hits = coll.search(query, 5, mode="hybrid", alpha=alpha, fetch_k=150)  # every document a candidate
    assert [int(h.id[1:]) for h in hits] == list(np.argsort(-fused, kind="stable")[:5])
    for h in hits:
        assert h.score == pytest.approx(fused[int(h.id[1:])], abs=1e-5)
        assert h.distance == pytest.approx(dense[int(h.id[1:])], abs=1e-5)


def test_alpha_one_is_dense_and_alpha_zero_is_keyword():
    coll = build(corpus())
    for query in ["socket bind", "pipe", "mmap errno thread"]:
        dense = coll.search(query, 6)
        assert [(h.id, h.score) for h in coll.search(query, 6, mode="hybrid", alpha=1.0)] == \
            [(h.id, h.score) for h in dense]
        kw = coll.search(query, 6, mode="keyword")
        assert [(h.id, h.score) for h in coll.search(query, 6, mode="hybrid", alpha=0)] == \
            [(h.id, h.score) for h in kw]


def test_hybrid_finds_an_exact_identifier_that_dense_ranks_low():
    texts = [f"reading and writing files part {i}" for i in range(60)] + ["the ENOTSOCK error from connect"]
    coll = build(texts)
    assert coll.search("ENOTSOCK", 1, mode="keyword")[0].id == "d60"
    assert "d60" in [h.id for h in coll.search("ENOTSOCK", 3, mode="hybrid")]


def test_keyword_index_follows_upsert_delete_clear():
    coll = build(corpus(50))
    assert coll.search("zebra", 3, mode="keyword") == []  # builds the keyword index
    coll.upsert(["a zebra crossing"], ids=["z"])
    assert [h.id for h in coll.search("zebra", 3, mode="keyword")] == ["z"]
    coll.upsert(["no stripes now"], ids=["z"])  # replaced: the old text is gone
    assert coll.search("zebra", 3, mode="keyword") == []
    assert [h.id for h in coll.search("stripes", 3, mode="keyword")] == ["z"]
    coll.delete(["z"])
    assert coll.search("stripes", 3, mode="keyword") == []
    coll.clear()
    assert coll.search("socket", 3, mode="keyword") == []
    coll.upsert(["socket again"], ids=["s"])
    assert [h.id for h in coll.search("socket", 3, mode="keyword")] == ["s"]


def test_keyword_search_survives_save_and_load(tmp_path):
    texts = corpus(80)
    coll = build(texts)
    before = [(h.id, h.score) for h in coll.search("signal pipe", 8, mode="keyword")]
    coll.save(tmp_path / "store")
    loaded = Collection.load(tmp_path / "store", embed, device="cpu")
    assert [(h.id, h.score) for h in loaded.search("signal pipe", 8, mode="keyword")] == before
    assert [h.id for h in loaded.search("signal pipe", 8, mode="hybrid")] == \
        [h.id for h in coll.search("signal pipe", 8, mode="hybrid")]


def test_keyword_mode_needs_no_embedding_model_and_vectors_need_text():
    coll = Collection(None, device="cpu")
    vecs = np.array(embed(["socket bind", "pipe fork"]), dtype=np.float32)
    coll.upsert(["socket bind", "pipe fork"], ids=["a", "b"], vectors=vecs)
    assert [h.id for h in coll.search("fork", 2, mode="keyword")] == ["b"]
    assert coll.search(vecs[0], 2, mode="hybrid", text="fork")[0].id in {"a", "b"}
    with pytest.raises(ValueError, match="query text"):
        coll.search(vecs[0], 2, mode="keyword")
    with pytest.raises(ValueError, match="embedding model"):
        coll.search("fork", 2, mode="hybrid")


@pytest.mark.parametrize("kwargs, err, match", [
    ({"mode": "bm25"}, ValueError, "mode"), ({"mode": 3}, TypeError, "mode"),
    ({"mode": "hybrid", "alpha": 1.5}, ValueError, "alpha"), ({"alpha": True}, ValueError, "alpha"),
    ({"mode": "hybrid", "fetch_k": 0}, ValueError, "fetch_k"), ({"text": 5}, TypeError, "text"),
])
def test_bad_arguments_raise_and_leave_state_unchanged(kwargs, err, match):
    coll = build(corpus(30))
    before = [h.id for h in coll.search("socket", 5, mode="keyword")]
    with pytest.raises(err, match=match):
        coll.search("socket", 5, **kwargs)
    assert [h.id for h in coll.search("socket", 5, mode="keyword")] == before and len(coll) == 30


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.sampled_from(WORDS), min_size=0, max_size=12), min_size=1, max_size=25),
       st.lists(st.sampled_from(WORDS + ["absent"]), min_size=1, max_size=4))
def test_keyword_index_matches_reference_on_any_corpus(docs, query_words):
    texts = [" ".join(d) for d in docs]
    query = " ".join(query_words)
    kw = KeywordIndex("cpu")
    kw.add(range(len(texts)), texts)
    rel, labels = kw.scores(query)
    got = np.zeros(len(texts))
    got[labels.numpy()] = rel.numpy()
    np.testing.assert_allclose(got, reference_bm25(texts, query), rtol=1e-5, atol=1e-7)
    assert ((got >= 0) & (got < 1)).all()
    allowed = torch.zeros(len(texts), dtype=torch.bool)
    allowed[::2] = True
    rel2, _ = kw.scores(query, allowed)
    assert (rel2[1::2] == 0).all() and torch.equal(rel2[::2], rel[::2])
