"""TorchIVFVectorStore behaviour beyond langchain-tests' standard suite."""

from __future__ import annotations

import json
import time

import pytest
from conftest import ticks_during, word_hash_vector

pytest.importorskip("langchain_core")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402

from langchain_torch_ivf import TorchIVFRetriever, TorchIVFVectorStore  # noqa: E402

DIM = 24


class WordHashEmbeddings(Embeddings):
    """Deterministic: texts sharing words are close."""

    def _vec(self, text: str) -> list[float]:
        return word_hash_vector(text, DIM).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vec(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vec(text)


TOPICS = ["cooking", "cycling", "gardening", "painting", "python", "sailing"]


def docs(n: int = 60) -> list[Document]:
    return [Document(page_content=f"note {i} on {TOPICS[i % 6]} and {TOPICS[(i * 7) % 6]}",
                     metadata={"topic": TOPICS[i % 6], "i": i, "rare": i % 30 == 0}, id=f"n{i}")
            for i in range(n)]


@pytest.fixture()
def store() -> TorchIVFVectorStore:
    return TorchIVFVectorStore.from_documents(docs(), WordHashEmbeddings(), device="cpu")


def test_from_documents_keeps_document_ids(store):
    assert store.get_by_ids(["n5"])[0].page_content == "note 5 on sailing and sailing"
    assert store.embeddings.__class__ is WordHashEmbeddings


def test_filters_dict_and_callable_on_every_search(store):
    f = {"topic": "python", "i": {"$gte": 20}}
    for found in (store.similarity_search("note on python", k=4, filter=f),
                  [d for d, _ in store.similarity_search_with_score("note on python", k=4, filter=f)],
                  [d for d, _ in store.similarity_search_with_relevance_scores("note on python", k=4, filter=f)],
                  store.similarity_search_by_vector(WordHashEmbeddings().embed_query("python"), k=4, filter=f),
                  store.max_marginal_relevance_search("note on python", k=4, fetch_k=10, filter=f)):
        assert len(found) == 4 and all(d.metadata["topic"] == "python" and d.metadata["i"] >= 20 for d in found)
    got = store.similarity_search("note", k=3, filter=lambda m: m["i"] in (1, 2, 3))
    assert {d.id for d in got} == {"n1", "n2", "n3"}


def test_rare_filter_returns_all_matches(store):
    got = store.similarity_search("note on sailing", k=10, filter={"rare": True})
    assert {d.id for d in got} == {"n0", "n30"}


def test_scores_are_relevance_and_threshold_has_one_meaning(store):
    pairs = store.similarity_search_with_relevance_scores("note 7 on cycling and cycling", k=10)
    scores = [s for _, s in pairs]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    assert [s for _, s in store.similarity_search_with_score("note 7 on cycling and cycling", k=10)] == scores
    cut = scores[4]
    kept = store.similarity_search_with_relevance_scores("note 7 on cycling and cycling", k=10, score_threshold=cut)
    assert len(kept) >= 5 and all(s >= cut for _, s in kept)


def test_distance_strategy_and_metric_aliases():
    from enum import Enum

    class DistanceStrategy(str, Enum):  # the values LangChain's community enum uses
        EUCLIDEAN_DISTANCE = "EUCLIDEAN_DISTANCE"
        MAX_INNER_PRODUCT = "MAX_INNER_PRODUCT"
        COSINE = "COSINE"

    assert TorchIVFVectorStore(WordHashEmbeddings(), distance_strategy=DistanceStrategy.EUCLIDEAN_DISTANCE,
                               device="cpu").collection.metric == "l2"
    assert TorchIVFVectorStore(WordHashEmbeddings(), distance_strategy="MAX_INNER_PRODUCT",
                               device="cpu").collection.metric == "ip"
    assert TorchIVFVectorStore(WordHashEmbeddings(), device="cpu").collection.metric == "cosine"
    with pytest.raises(ValueError, match="metric"):
        TorchIVFVectorStore(WordHashEmbeddings(), metric="jaccard")
    with pytest.raises(ValueError, match="not both"):
        TorchIVFVectorStore(WordHashEmbeddings(), metric="l2", distance_strategy="COSINE")


def test_retriever_search_types(store):
    sim = store.as_retriever(search_kwargs={"k": 3, "filter": {"topic": "cooking"}}).invoke("note on cooking")
    assert len(sim) == 3 and all(d.metadata["topic"] == "cooking" for d in sim)
    mmr = store.as_retriever(search_type="mmr", search_kwargs={"k": 3, "fetch_k": 12}).invoke("note on cooking")
    assert len(mmr) == 3
    thr = store.as_retriever(search_type="similarity_score_threshold",
                             search_kwargs={"score_threshold": 0.999, "k": 5}).invoke("nothing like any note xyz")
    assert thr == []
    assert TorchIVFRetriever(vectorstore=store, k=2).invoke("note") and \
        len(TorchIVFRetriever(vectorstore=store, k=2).invoke("note")) == 2


def test_mmr_is_more_diverse_than_similarity():
    texts = ["alpha beta gamma"] * 4 + ["alpha delta", "zeta eta"]
    s = TorchIVFVectorStore.from_texts(texts, WordHashEmbeddings(), device="cpu")
    plain = s.similarity_search("alpha beta gamma", k=3)
    diverse = s.max_marginal_relevance_search("alpha beta gamma", k=3, fetch_k=6, lambda_mult=0.1)
    assert len({d.page_content for d in diverse}) > len({d.page_content for d in plain})


def test_add_embeddings_and_from_embeddings():
    emb = WordHashEmbeddings()
    pairs = [(t, emb.embed_query(t)) for t in ["red apple", "green pear"]]
    s = TorchIVFVectorStore.from_embeddings(pairs, emb, metadatas=[{"c": "r"}, {"c": "g"}], ids=["a", "p"], device="cpu")
    assert s.similarity_search("green pear", k=1)[0].id == "p"
    s.add_embeddings([("yellow banana", emb.embed_query("yellow banana"))], ids=["b"])
    assert s.get_by_ids(["b"])[0].page_content == "yellow banana"


def test_batch_size_is_accepted_like_the_indexing_api_passes_it():
    class Counting(WordHashEmbeddings):
        calls: list[int] = []

        def embed_documents(self, texts):
            self.calls.append(len(texts))
            return super().embed_documents(texts)

    emb = Counting()
    s = TorchIVFVectorStore(emb, device="cpu", batch_size=8)
    s.add_documents(docs(20), batch_size=5)
    assert emb.calls == [5, 5, 5, 5]
    s.add_texts(["x"] * 9)
    assert emb.calls[4:] == [8, 1]


def test_bad_inputs(store):
    with pytest.raises(TypeError, match="unexpected search argument"):
        store.similarity_search("x", k=2, filters={"topic": "python"})
    with pytest.raises(ValueError, match="k"):
        store.similarity_search("x", k=0)
    with pytest.raises(ValueError, match="metadatas"):
        store.add_texts(["a", "b"], metadatas=[{}])
    with pytest.raises(ValueError, match="embedding"):
        TorchIVFVectorStore(None)
    assert len(store.collection) == 60


def test_delete_none_clears_and_inputs_are_not_mutated(store):
    meta = {"topic": "x", "nested": {"a": 1}}
    d = Document(page_content="fresh text", metadata=meta)
    store.add_documents([d])
    assert d.id is None and meta == {"topic": "x", "nested": {"a": 1}}
    store.delete()
    assert store.similarity_search("fresh text", k=1) == []


def test_save_local_load_local_without_pickle(store, tmp_path):
    store.save_local(str(tmp_path), index_name="idx")
    current = json.loads((tmp_path / "idx" / "STORE.json").read_text())["current"]
    names = sorted(p.name for p in (tmp_path / "idx" / current).iterdir())
    assert names == ["index.safetensors", "manifest.json", "records.jsonl"]
    again = TorchIVFVectorStore.load_local(str(tmp_path), WordHashEmbeddings(), index_name="idx", device="cpu")
    q = "note on painting"
    assert [d.id for d in again.similarity_search(q, k=5, filter={"i": {"$lt": 40}})] == \
        [d.id for d in store.similarity_search(q, k=5, filter={"i": {"$lt": 40}})]
    # drop-in for FAISS.load_local(...) callers: the flag is accepted and unnecessary
    TorchIVFVectorStore.load_local(str(tmp_path), WordHashEmbeddings(), index_name="idx", device="cpu",
                                   allow_dangerous_deserialization=True)


async def test_async_twins(store):
    ids = await store.aadd_texts(["async text about kites"], ids=["kite"])
    assert ids == ["kite"]
    assert (await store.asimilarity_search("async text about kites", k=1))[0].id == "kite"
    assert (await store.asimilarity_search_with_relevance_scores("async text about kites", k=1))[0][0].id == "kite"
    assert len(await store.amax_marginal_relevance_search("kites", k=2)) == 2
    assert [d.id for d in await store.aget_by_ids(["kite"])] == ["kite"]
    await store.adelete(["kite"])
    assert await store.aget_by_ids(["kite"]) == []
    s2 = await TorchIVFVectorStore.afrom_texts(["a b", "c d"], WordHashEmbeddings(), device="cpu")
    assert len(s2.collection) == 2


async def test_async_embedding_runs_off_the_event_loop():
    class Slow(WordHashEmbeddings):
        def embed_documents(self, texts):
            time.sleep(0.3)
            return super().embed_documents(texts)

    s = TorchIVFVectorStore(Slow(), device="cpu")
    assert await ticks_during(s.aadd_texts(["one", "two"])) == 10 and len(s.collection) == 2


def test_langchain_indexing_api_incremental_cleanup():
    from langchain_core.indexing import InMemoryRecordManager, index

    store = TorchIVFVectorStore(WordHashEmbeddings(), device="cpu")
    manager = InMemoryRecordManager(namespace="test")
    manager.create_schema()
    first = [Document(page_content=f"page {i}", metadata={"source": f"s{i % 2}"}) for i in range(6)]
    out = index(first, manager, store, cleanup="incremental", source_id_key="source", batch_size=4,
                key_encoder="sha256")
    assert out["num_added"] == 6 and len(store.collection) == 6
    again = index(first, manager, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert again["num_added"] == 0 and again["num_skipped"] == 6
    changed = [Document(page_content="page 0 rewritten", metadata={"source": "s0"})]
    out = index(changed, manager, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert out["num_added"] == 1 and out["num_deleted"] == 3 and len(store.collection) == 4


# ---- keyword and hybrid retrieval ---------------------------------------------------------------
def _with_identifier() -> TorchIVFVectorStore:
    s = TorchIVFVectorStore.from_documents(docs(), WordHashEmbeddings(), device="cpu")
    s.add_texts(["connect fails with ECONNREFUSED when nobody listens"], [{"topic": "net", "i": 99}], ids=["err"])
    return s


def test_retrieval_mode_default_and_per_call_override():
    s = _with_identifier()
    assert s.retrieval_mode == "dense"
    assert s.similarity_search("ECONNREFUSED", k=1, retrieval_mode="keyword")[0].id == "err"
    assert s.similarity_search("ECONNREFUSED", k=1, retrieval_mode="sparse")[0].id == "err"
    hybrid = s.similarity_search_with_score("ECONNREFUSED", k=3, retrieval_mode="hybrid", alpha=0.3)
    assert hybrid[0][0].id == "err" and all(0.0 <= sc <= 1.0 for _, sc in hybrid)
    # alpha=1 is the dense ranking, whatever the mode says
    assert [d.id for d in s.similarity_search("note cooking", k=4, retrieval_mode="hybrid", alpha=1.0)] == \
        [d.id for d in s.similarity_search("note cooking", k=4)]
    kw_store = TorchIVFVectorStore(WordHashEmbeddings(), device="cpu", retrieval_mode="keyword",
                                   collection=s.collection)
    assert kw_store.similarity_search("ECONNREFUSED", k=1)[0].id == "err"
    assert kw_store.similarity_search("ECONNREFUSED", k=2, retrieval_mode="dense")[0].id is not None


def test_keyword_search_applies_filters_inside():
    s = _with_identifier()
    got = s.similarity_search("python", k=5, retrieval_mode="keyword", filter={"i": {"$lt": 20}})
    assert len(got) == 3 and all(d.metadata["i"] < 20 and "python" in d.page_content for d in got)
    assert s.similarity_search("ECONNREFUSED", k=3, retrieval_mode="keyword", filter={"topic": "python"}) == []
    hyb = s.similarity_search("ECONNREFUSED", k=5, retrieval_mode="hybrid", filter={"topic": "python"})
    assert len(hyb) == 5 and all(d.metadata["topic"] == "python" for d in hyb)


def test_retriever_and_async_twins_take_retrieval_mode():
    s = _with_identifier()
    r = s.as_retriever(search_kwargs={"k": 1, "retrieval_mode": "keyword"})
    assert [d.id for d in r.invoke("ECONNREFUSED")] == ["err"]
    r2 = s.as_retriever(search_type="similarity_score_threshold",
                        search_kwargs={"k": 2, "retrieval_mode": "hybrid", "alpha": 0.2, "score_threshold": 0.0})
    assert r2.invoke("ECONNREFUSED")[0].id == "err"
    hybrid_store = TorchIVFVectorStore(WordHashEmbeddings(), retrieval_mode="hybrid", alpha=0.2,
                                       collection=s.collection)
    assert hybrid_store.as_retriever(k=1).invoke("ECONNREFUSED")[0].id == "err"


async def test_async_keyword_and_hybrid():
    s = _with_identifier()
    assert (await s.asimilarity_search("ECONNREFUSED", k=1, retrieval_mode="keyword"))[0].id == "err"
    scored = await s.asimilarity_search_with_relevance_scores("ECONNREFUSED", k=1, retrieval_mode="hybrid",
                                                              alpha=0.2)
    assert scored[0][0].id == "err"
    assert (await s.as_retriever(search_kwargs={"k": 1, "retrieval_mode": "keyword"}).ainvoke("ECONNREFUSED"))[0].id == "err"


def test_bad_retrieval_mode_and_vector_or_mmr_keyword_raise():
    with pytest.raises(ValueError, match="mode"):
        TorchIVFVectorStore(WordHashEmbeddings(), retrieval_mode="bm25")
    with pytest.raises(ValueError, match="alpha"):
        TorchIVFVectorStore(WordHashEmbeddings(), alpha=2)
    s = _with_identifier()
    with pytest.raises(ValueError, match="mode"):
        s.similarity_search("x", k=1, retrieval_mode="fuzzy")
    with pytest.raises(ValueError, match="query text"):
        s.similarity_search_by_vector(WordHashEmbeddings().embed_query("x"), k=1, retrieval_mode="keyword")
    with pytest.raises(ValueError, match="dense only"):
        s.max_marginal_relevance_search("x", k=1, retrieval_mode="hybrid")


def test_load_local_takes_retrieval_mode(tmp_path):
    s = _with_identifier()
    s.save_local(str(tmp_path))
    again = TorchIVFVectorStore.load_local(str(tmp_path), WordHashEmbeddings(), device="cpu",
                                           retrieval_mode="keyword")
    assert again.similarity_search("ECONNREFUSED", k=1)[0].id == "err"
