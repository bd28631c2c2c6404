"""Conformance suite for llama_index.vector_stores.torch_ivf.TorchIVFVectorStore.

LlamaIndex has no shared vector-store suite, so this file covers each promise of issue 5 one by one,
with a deterministic word-hash embedding (no model download, CPU only).
"""

from __future__ import annotations

import time

import fsspec
import numpy as np
import pytest
from conftest import ticks_during, word_hash_vector

pytest.importorskip("llama_index.core")

from llama_index.core import Document, StorageContext, VectorStoreIndex, load_index_from_storage  # noqa: E402
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline  # noqa: E402
from llama_index.core.node_parser import SentenceSplitter  # noqa: E402
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode  # noqa: E402
from llama_index.core.storage.docstore import SimpleDocumentStore  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.core.vector_stores.utils import build_metadata_filter_fn  # noqa: E402

from llama_index.vector_stores.torch_ivf import TorchIVFVectorStore  # noqa: E402

DIM = 32


def hash_vector(text: str) -> list[float]:
    """Bag of hashed words: texts sharing words are close, everything is deterministic."""
    v = word_hash_vector(text, DIM)
    return (v / np.linalg.norm(v)).tolist()


class HashEmbedding(BaseEmbedding):
    def __init__(self, **kwargs):
        super().__init__(model_name="hash", embed_batch_size=16, **kwargs)

    def _get_query_embedding(self, query: str) -> list[float]:
        return hash_vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return hash_vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return hash_vector(text)


COLOURS = ["red", "green", "blue", "yellow"]


def make_nodes(n: int = 40) -> list[TextNode]:
    nodes = []
    for i in range(n):
        meta = {"n": i, "colour": COLOURS[i % 4], "tags": [f"t{i % 3}", f"u{i % 5}"],
                "title": f"Chapter {i} of The Book"}
        if i % 7:
            meta["opt"] = "" if i % 7 == 1 else f"v{i}"
        text = f"node {i} talks about {COLOURS[i % 4]} things and number {i}"
        nodes.append(TextNode(text=text, id_=f"node-{i}", metadata=meta, embedding=hash_vector(text),
                              relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc-{i % 5}")}))
    return nodes


@pytest.fixture()
def store() -> TorchIVFVectorStore:
    s = TorchIVFVectorStore(device="cpu")
    s.add(make_nodes())
    return s


def q(text: str, k: int = 4, **kwargs) -> VectorStoreQuery:
    return VectorStoreQuery(query_embedding=hash_vector(text), similarity_top_k=k, **kwargs)


# ---- construction, add, query ---------------------------------------------------------------------
def test_constructible_without_arguments_dimension_from_first_add():
    s = TorchIVFVectorStore()
    assert s.stores_text is True
    assert s.client.dim is None
    s.add(make_nodes(3))
    assert s.client.dim == DIM


def test_query_returns_top_k_higher_is_better(store):
    res = store.query(q("node 5 talks about green things and number 5", k=5))
    assert res.ids[0] == "node-5"
    assert len(res.nodes) == len(res.similarities) == len(res.ids) == 5
    assert res.similarities == sorted(res.similarities, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in res.similarities)


def test_nodes_round_trip_text_metadata_relationships(store):
    node = store.get_nodes(node_ids=["node-8"])[0]
    assert node.text == "node 8 talks about red things and number 8"
    assert node.metadata["tags"] == ["t2", "u3"] and node.metadata["n"] == 8
    assert node.ref_doc_id == "doc-3"
    assert node.relationships[NodeRelationship.SOURCE].node_id == "doc-3"
    res = store.query(q(node.text, k=1))
    assert res.nodes[0].ref_doc_id == "doc-3" and res.nodes[0].metadata["colour"] == "red"


def test_add_same_node_id_replaces():
    s = TorchIVFVectorStore(device="cpu")
    s.add(make_nodes(4))
    s.add([TextNode(text="replaced", id_="node-1", metadata={"n": 99}, embedding=hash_vector("replaced"))])
    assert len(s.get_nodes()) == 4
    assert s.get_nodes(node_ids=["node-1"])[0].text == "replaced"


def test_add_without_embedding_is_rejected_before_any_change(store):
    before = len(store.get_nodes())
    with pytest.raises(ValueError, match="nodes"):
        store.add([TextNode(text="a", id_="x1", embedding=[0.0] * DIM), TextNode(text="b", id_="x2")])
    assert len(store.get_nodes()) == before


def test_unsupported_mode_and_missing_embedding_raise(store):
    with pytest.raises(ValueError, match="mode"):
        store.query(VectorStoreQuery(query_embedding=hash_vector("x"), mode=VectorStoreQueryMode.SVM))
    with pytest.raises(ValueError, match="query_str"):
        store.query(VectorStoreQuery(query_embedding=hash_vector("x"), mode=VectorStoreQueryMode.HYBRID))
    with pytest.raises(ValueError, match="query_embedding"):
        store.query(VectorStoreQuery(query_embedding=None))


# ---- delete, delete_nodes, get_nodes, clear -----------------------------------------------------
def test_delete_by_ref_doc_id_removes_every_node_of_the_document(store):
    store.delete("doc-2")
    left = store.get_nodes()
    assert len(left) == 32 and all(n.ref_doc_id != "doc-2" for n in left)
    res = store.query(q("node 2 talks about blue things", k=40))
    assert all(n.ref_doc_id != "doc-2" for n in res.nodes)


def test_delete_nodes_by_ids_filters_and_both(store):
    store.delete_nodes(node_ids=["node-0", "node-1", "missing"])
    assert {n.node_id for n in store.get_nodes(node_ids=["node-0", "node-1", "node-2"])} == {"node-2"}
    store.delete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="colour", value="blue")]))
    assert all(n.metadata["colour"] != "blue" for n in store.get_nodes())
    store.delete_nodes(node_ids=["node-3", "node-4"],
                       filters=MetadataFilters(filters=[MetadataFilter(key="colour", value="yellow")]))
    ids = {n.node_id for n in store.get_nodes()}
    assert "node-3" not in ids and "node-4" in ids


def test_get_nodes_by_ids_and_filters(store):
    assert [n.node_id for n in store.get_nodes(node_ids=["node-3", "nope"])] == ["node-3"]
    got = store.get_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="n", value=35, operator=">=")]))
    assert sorted(n.metadata["n"] for n in got) == [35, 36, 37, 38, 39]
    got = store.get_nodes(node_ids=["node-1", "node-2"],
                          filters=MetadataFilters(filters=[MetadataFilter(key="colour", value="green")]))
    assert [n.node_id for n in got] == ["node-1"]


def test_clear(store):
    store.clear()
    assert store.get_nodes() == []
    assert store.query(q("anything")).ids == []
    store.add(make_nodes(2))
    assert len(store.get_nodes()) == 2


# ---- filters: every operator, cross-checked against LlamaIndex's own reference semantics ---------
OPERATOR_CASES = [
    ("n", FilterOperator.EQ, 7), ("colour", FilterOperator.EQ, "red"),
    ("colour", FilterOperator.NE, "red"), ("n", FilterOperator.GT, 30),
    ("n", FilterOperator.GTE, 30), ("n", FilterOperator.LT, 4), ("n", FilterOperator.LTE, 4),
    ("colour", FilterOperator.IN, ["red", "blue"]), ("colour", FilterOperator.NIN, ["red", "blue"]),
    ("tags", FilterOperator.ANY, ["t1", "u4"]), ("tags", FilterOperator.ALL, ["t1", "u4"]),
    ("title", FilterOperator.TEXT_MATCH, "Chapter 1"),
    ("title", FilterOperator.TEXT_MATCH_INSENSITIVE, "chapter 2"),
    ("tags", FilterOperator.CONTAINS, "u2"), ("opt", FilterOperator.IS_EMPTY, None),
    ("opt", FilterOperator.NE, "v3"), ("opt", FilterOperator.NIN, ["v3", "v4"]),
]


def _reference_ids(nodes, filters: MetadataFilters) -> set[str]:
    by_id = {n.node_id: n.metadata for n in nodes}
    keep = build_metadata_filter_fn(lambda i: by_id[i], filters)
    return {i for i in by_id if keep(i)}


@pytest.mark.parametrize("key,op,value", OPERATOR_CASES, ids=[f"{c[1].name}-{c[0]}" for c in OPERATOR_CASES])
def test_every_filter_operator_matches_reference(store, key, op, value):
    filters = MetadataFilters(filters=[MetadataFilter(key=key, value=value, operator=op)])
    expected = _reference_ids(make_nodes(), filters)
    assert expected, "test data should match something"
    res = store.query(q("node things", k=40, filters=filters))
    assert set(res.ids) == expected
    assert {n.node_id for n in store.get_nodes(filters=filters)} == expected


@pytest.mark.parametrize("condition", [FilterCondition.AND, FilterCondition.OR, FilterCondition.NOT])
def test_conditions_match_reference(store, condition):
    filters = MetadataFilters(filters=[MetadataFilter(key="colour", value="red"),
                                       MetadataFilter(key="n", value=20, operator=">")], condition=condition)
    expected = _reference_ids(make_nodes(), filters)
    assert set(store.query(q("x", k=40, filters=filters)).ids) == expected


def test_nested_and_or_not(store):
    # (colour == red OR colour == blue) AND NOT (n < 10 OR tags contains u0)
    filters = MetadataFilters(condition=FilterCondition.AND, filters=[
        MetadataFilters(condition=FilterCondition.OR, filters=[
            MetadataFilter(key="colour", value="red"), MetadataFilter(key="colour", value="blue")]),
        MetadataFilters(condition=FilterCondition.NOT, filters=[
            MetadataFilter(key="n", value=10, operator="<"),
            MetadataFilter(key="tags", value="u0", operator="contains")]),
    ])
    expected = {f"node-{i}" for i in range(40)
                if i % 4 in (0, 2) and not (i < 10 or i % 5 == 0)}
    assert set(store.query(q("x", k=40, filters=filters)).ids) == expected


def test_selective_filter_still_returns_k():
    s = TorchIVFVectorStore(device="cpu", index="IVF{nlist},Flat")
    nodes = []
    for i in range(3000):
        text = f"document {i} topic {i % 37}"
        nodes.append(TextNode(text=text, id_=f"d{i}", metadata={"rare": "yes" if i % 100 == 0 else "no"},
                              embedding=hash_vector(text)))
    s.add(nodes)
    assert s.client.index_description.startswith("IVF")
    filters = MetadataFilters(filters=[MetadataFilter(key="rare", value="yes")])
    res = s.query(q("document topic 5", k=10, filters=filters))
    assert len(res.ids) == 10 and all(int(i[1:]) % 100 == 0 for i in res.ids)


# ---- doc_ids, node_ids --------------------------------------------------------------------------
def test_doc_ids_and_node_ids_restrict_the_search(store):
    res = store.query(q("node things", k=40, doc_ids=["doc-1", "doc-4"]))
    assert len(res.ids) == 16 and {n.ref_doc_id for n in res.nodes} == {"doc-1", "doc-4"}
    res = store.query(q("node things", k=40, node_ids=["node-3", "node-9", "gone"]))
    assert set(res.ids) == {"node-3", "node-9"}
    res = store.query(q("node things", k=40, node_ids=["node-3", "node-9"], doc_ids=["doc-4"]))
    assert res.ids == ["node-9"]


# ---- MMR ----------------------------------------------------------------------------------------
def test_mmr_mode():
    s = TorchIVFVectorStore(device="cpu")
    texts = ["apples and pears"] * 3 + ["apples and bananas", "fast cars", "apples with cream"]
    s.add([TextNode(text=t, id_=f"m{i}", embedding=hash_vector(t)) for i, t in enumerate(texts)])
    plain = s.query(q("apples and pears", k=3))
    assert set(plain.ids) == {"m0", "m1", "m2"}
    diverse = s.query(q("apples and pears", k=3, mode=VectorStoreQueryMode.MMR, mmr_threshold=0.3))
    assert len(diverse.ids) == 3 and diverse.ids[0] in {"m0", "m1", "m2"}
    assert len({s.get_nodes(node_ids=[i])[0].text for i in diverse.ids}) == 3
    relevance_only = s.query(q("apples and pears", k=3, mode=VectorStoreQueryMode.MMR), mmr_threshold=1.0)
    assert set(relevance_only.ids) == {"m0", "m1", "m2"}


# ---- persistence ---------------------------------------------------------------------------------
def test_persist_and_from_persist_path(store, tmp_path):
    path = str(tmp_path / "default__vector_store.json")
    store.persist(path)
    again = TorchIVFVectorStore.from_persist_path(path, device="cpu")
    query = q("node 11 talks about yellow things", k=5)
    assert again.query(query).ids == store.query(query).ids
    assert again.get_nodes(node_ids=["node-11"])[0].ref_doc_id == "doc-1"


def test_persist_to_fsspec_memory_filesystem(store):
    fs = fsspec.filesystem("memory")
    store.persist("/bucket/default__vector_store.json", fs=fs)
    again = TorchIVFVectorStore.from_persist_path("/bucket/default__vector_store.json", fs=fs, device="cpu")
    assert len(again.get_nodes()) == 40


def _documents() -> list[Document]:
    return [Document(text=f"Document {i}. It is about {topic}. " * 3, id_=f"doc-{i}", metadata={"topic": topic})
            for i, topic in enumerate(["cooking pasta", "repairing bikes", "growing tomatoes",
                                       "painting walls", "learning python"])]


def test_vector_store_index_from_documents_and_storage_context_reload(tmp_path):
    store = TorchIVFVectorStore(device="cpu")
    ctx = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex.from_documents(_documents(), storage_context=ctx, embed_model=HashEmbedding())
    before = [n.node.node_id for n in index.as_retriever(similarity_top_k=2).retrieve("growing tomatoes")]
    assert index.as_retriever(similarity_top_k=1).retrieve("growing tomatoes")[0].node.metadata["topic"] == \
        "growing tomatoes"
    index.storage_context.persist(persist_dir=str(tmp_path))

    # The default loader must not choke on our files, and our loader must restore the same answers.
    StorageContext.from_defaults(persist_dir=str(tmp_path))
    loaded_store = TorchIVFVectorStore.from_persist_dir(str(tmp_path), device="cpu")
    ctx2 = StorageContext.from_defaults(persist_dir=str(tmp_path), vector_store=loaded_store)
    index2 = load_index_from_storage(ctx2, embed_model=HashEmbedding())
    after = [n.node.node_id for n in index2.as_retriever(similarity_top_k=2).retrieve("growing tomatoes")]
    assert after == before


def test_from_vector_store_delete_ref_doc_and_refresh():
    store = TorchIVFVectorStore(device="cpu")
    ctx = StorageContext.from_defaults(vector_store=store)
    docs = _documents()
    index = VectorStoreIndex.from_documents(docs, storage_context=ctx, embed_model=HashEmbedding())
    index.delete_ref_doc("doc-2")
    assert all(n.ref_doc_id != "doc-2" for n in store.get_nodes())

    changed = Document(text="Document 3 is now about sailing boats.", id_="doc-3", metadata={"topic": "sailing"})
    refreshed = index.refresh_ref_docs([changed, docs[4]])
    assert refreshed == [True, False]
    nodes3 = [n for n in store.get_nodes() if n.ref_doc_id == "doc-3"]
    assert nodes3 and all("sailing" in n.text for n in nodes3)

    view = VectorStoreIndex.from_vector_store(store, embed_model=HashEmbedding())
    top = view.as_retriever(similarity_top_k=1).retrieve("sailing boats")[0]
    assert top.node.ref_doc_id == "doc-3" and 0.0 <= top.score <= 1.0
    filtered = view.as_retriever(similarity_top_k=3, filters=MetadataFilters(
        filters=[MetadataFilter(key="topic", value="learning python")])).retrieve("anything")
    assert filtered and all(n.node.metadata["topic"] == "learning python" for n in filtered)


def test_ingestion_pipeline_upserts():
    store = TorchIVFVectorStore(device="cpu")
    pipeline = IngestionPipeline(transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0), HashEmbedding()],
                                 docstore=SimpleDocumentStore(), vector_store=store,
                                 docstore_strategy=DocstoreStrategy.UPSERTS)
    docs = _documents()
    pipeline.run(documents=docs)
    first = len(store.get_nodes())
    pipeline.run(documents=docs)  # unchanged: nothing added twice
    assert len(store.get_nodes()) == first
    docs[0] = Document(text="Document 0 is now about baking bread.", id_="doc-0", metadata={"topic": "bread"})
    pipeline.run(documents=docs)
    nodes0 = [n for n in store.get_nodes() if n.ref_doc_id == "doc-0"]
    assert len(nodes0) == 1 and "bread" in nodes0[0].text


# ---- async ---------------------------------------------------------------------------------------
async def test_async_variants():
    s = TorchIVFVectorStore(device="cpu")
    ids = await s.async_add(make_nodes(20))
    assert len(ids) == 20
    res = await s.aquery(q("node 4 talks about red things", k=3))
    assert res.ids[0] == "node-4"
    assert [n.node_id for n in await s.aget_nodes(node_ids=["node-2"])] == ["node-2"]
    await s.adelete("doc-0")
    await s.adelete_nodes(node_ids=["node-1"])
    assert len(await s.aget_nodes()) == 15
    await s.aclear()
    assert await s.aget_nodes() == []


async def test_async_query_does_not_block_the_event_loop(store, monkeypatch):
    original = TorchIVFVectorStore.query

    def slow_query(self, query, **kwargs):
        time.sleep(0.3)
        return original(self, query, **kwargs)

    monkeypatch.setattr(TorchIVFVectorStore, "query", slow_query)
    assert await ticks_during(store.aquery(q("node"))) == 10


# ---- keyword and hybrid query modes --------------------------------------------------------------
@pytest.mark.parametrize("mode", [VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE])
def test_text_search_and_sparse_modes_need_no_embedding(store, mode):
    res = store.query(VectorStoreQuery(query_str="number 17", mode=mode, similarity_top_k=3))
    assert res.ids[0] == "node-17" and len(res.ids) == 3
    assert all(0.0 <= s <= 1.0 for s in res.similarities)
    res = store.query(VectorStoreQuery(query_str="number", mode=mode, similarity_top_k=2, sparse_top_k=6))
    assert len(res.ids) == 6  # sparse_top_k sets the keyword result count


def test_sparse_with_metadata_filters(store):
    filters = MetadataFilters(filters=[MetadataFilter(key="colour", value="blue")])
    res = store.query(VectorStoreQuery(query_str="talks things", mode=VectorStoreQueryMode.SPARSE,
                                       similarity_top_k=20, filters=filters))
    assert len(res.ids) == 10 and all(n.metadata["colour"] == "blue" for n in res.nodes)


def test_hybrid_mode_alpha_and_hybrid_top_k(store):
    emb = hash_vector("node talks about things")
    base = dict(query_embedding=emb, query_str="17", mode=VectorStoreQueryMode.HYBRID, similarity_top_k=4)
    res = store.query(VectorStoreQuery(**base, alpha=0.2))
    assert res.ids[0] == "node-17" and len(res.ids) == 4
    assert len(store.query(VectorStoreQuery(**base, alpha=0.2, hybrid_top_k=7)).ids) == 7
    dense = store.query(VectorStoreQuery(query_embedding=emb, similarity_top_k=4))
    assert store.query(VectorStoreQuery(**base, alpha=1.0)).ids == dense.ids
    filters = MetadataFilters(filters=[MetadataFilter(key="colour", value="red")])
    res = store.query(VectorStoreQuery(**base, alpha=0.5, filters=filters, hybrid_top_k=10))
    assert len(res.ids) == 10 and all(n.metadata["colour"] == "red" for n in res.nodes)


async def test_async_sparse_query(store):
    res = await store.aquery(VectorStoreQuery(query_str="number 23", mode=VectorStoreQueryMode.TEXT_SEARCH,
                                              similarity_top_k=1))
    assert res.ids == ["node-23"]
