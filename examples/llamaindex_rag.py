"""LlamaIndex retrieval over Python's documentation with TorchIVFVectorStore (offline, GPU when present).

    pip install -e '.[llamaindex,embeddings]' (from the torch-ivf checkout)
    python examples/llamaindex_rag.py [--limit 300]

Shows VectorStoreIndex.from_documents, a retriever with MetadataFilters, MMR, delete_ref_doc, and
StorageContext persist + reload.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from llama_index.core import Document, StorageContext, VectorStoreIndex, load_index_from_storage  # noqa: E402
from llama_index.core.vector_stores import MetadataFilter, MetadataFilters  # noqa: E402

from llama_index.vector_stores.torch_ivf import MiniLMEmbedding, TorchIVFVectorStore  # noqa: E402
from rag_demo import QUESTIONS, python_docs_passages  # noqa: E402
from torch_ivf.collection import default_device  # noqa: E402


def show(title: str, nodes) -> None:
    print(f"\n{title}")
    for n in nodes:
        print(f"  {n.score:.3f}  [{n.node.metadata['topic']}]  {n.node.get_content()[:110].replace(chr(10), ' ')}...")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = args.device or default_device()

    documents = [Document(text=text, id_=f"{topic}#{part}", metadata={"topic": topic, "part": part})
                 for topic, text, part in python_docs_passages()[: args.limit]]
    embed_model = MiniLMEmbedding(device=device)
    store = TorchIVFVectorStore(device=device)
    ctx = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex.from_documents(documents, storage_context=ctx, embed_model=embed_model,
                                            show_progress=True)
    print(f"{len(store.get_nodes())} nodes on {device}; index: {store.client.index_description}")

    question = QUESTIONS[2]
    show(f"top 3: {question}", index.as_retriever(similarity_top_k=3).retrieve(question))
    only = MetadataFilters(filters=[MetadataFilter(key="topic", value="calls")])
    show("filtered to topic 'calls'", index.as_retriever(similarity_top_k=3, filters=only).retrieve(question))
    show("mmr", index.as_retriever(similarity_top_k=3, vector_store_query_mode="mmr",
                                   vector_store_kwargs={"mmr_threshold": 0.5}).retrieve(question))

    top = index.as_retriever(similarity_top_k=1).retrieve(question)[0].node.ref_doc_id
    index.delete_ref_doc(top)
    print(f"\ndeleted document {top!r}; new best: "
          f"{index.as_retriever(similarity_top_k=1).retrieve(question)[0].node.ref_doc_id!r}")

    with tempfile.TemporaryDirectory() as tmp:
        index.storage_context.persist(persist_dir=tmp)
        loaded = TorchIVFVectorStore.from_persist_dir(tmp, device=device)
        ctx2 = StorageContext.from_defaults(persist_dir=tmp, vector_store=loaded)
        index2 = load_index_from_storage(ctx2, embed_model=embed_model)
        same = [n.node.node_id for n in index2.as_retriever(similarity_top_k=3).retrieve(question)] == \
            [n.node.node_id for n in index.as_retriever(similarity_top_k=3).retrieve(question)]
        print(f"persist + StorageContext reload gives the same answers: {same}")


if __name__ == "__main__":
    main()
