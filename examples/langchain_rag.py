"""LangChain retrieval over Python's documentation with TorchIVFVectorStore (offline, GPU when present).

    pip install -e '.[langchain,embeddings]' (from the torch-ivf checkout)
    python examples/langchain_rag.py [--limit 300]

Shows from_documents with a progress bar, a retriever, a metadata filter, MMR, score thresholds,
and save_local/load_local (safetensors + JSON; no pickle, no allow_dangerous_deserialization).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from langchain_core.documents import Document  # noqa: E402

from langchain_torch_ivf import MiniLMEmbeddings, TorchIVFVectorStore  # noqa: E402
from rag_demo import QUESTIONS, python_docs_passages  # noqa: E402
from torch_ivf.collection import default_device  # noqa: E402


def show(title: str, docs_scores) -> None:
    print(f"\n{title}")
    for doc, score in docs_scores:
        shown = "  -  " if score is None else f"{score:.3f}"
        print(f"  {shown}  [{doc.metadata['topic']}]  {doc.page_content[:110].replace(chr(10), ' ')}...")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = args.device or default_device()

    docs = [Document(page_content=text, metadata={"topic": topic, "part": part}, id=f"{topic}#{part}")
            for topic, text, part in python_docs_passages()[: args.limit]]
    embeddings = MiniLMEmbeddings(device=device)
    store = TorchIVFVectorStore.from_documents(docs, embeddings, device=device, progress=True)
    print(f"{len(docs)} documents on {device}; index: {store.collection.index_description}")

    question = QUESTIONS[1]
    show(f"similarity: {question}", store.similarity_search_with_relevance_scores(question, k=3))
    show("filtered to topic 'compound'",
         store.similarity_search_with_relevance_scores(question, k=3, filter={"topic": "compound"}))
    mmr = store.as_retriever(search_type="mmr", search_kwargs={"k": 3, "fetch_k": 20}).invoke(question)
    show("mmr (diverse)", [(d, None) for d in mmr])
    strict = store.as_retriever(search_type="similarity_score_threshold",
                                search_kwargs={"score_threshold": 0.6, "k": 5}).invoke(question)
    print(f"\n{len(strict)} documents with relevance >= 0.6")

    with tempfile.TemporaryDirectory() as tmp:
        store.save_local(tmp)
        again = TorchIVFVectorStore.load_local(tmp, embeddings, device=device)
        same = [d.id for d in again.similarity_search(question, k=3)] == \
            [d.id for d in store.similarity_search(question, k=3)]
        print(f"save_local/load_local round trip gives the same answers: {same}")


if __name__ == "__main__":
    main()
