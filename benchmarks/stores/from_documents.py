"""from_documents with the real MiniLM model on real passages: where does the time go?

The embedding model is wrapped so that every embed_documents call is timed; indexing is the rest of
from_documents (validation, copying, the index add).
"""

from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from .data import Timer, passages


class TimedEmbeddings(Embeddings):
    def __init__(self, inner: Embeddings):
        self.inner, self.seconds = inner, 0.0

    def embed_documents(self, texts):
        with Timer() as t:
            out = self.inner.embed_documents(texts)
        self.seconds += t.s
        return out

    def embed_query(self, text):
        return self.inner.embed_query(text)


def run(n: int = 2000, device: str | None = None, batch_size: int = 64) -> dict:
    from langchain_torch_ivf import MiniLMEmbeddings, TorchIVFVectorStore

    from torch_ivf.collection import default_device

    device = device or default_device()
    docs = [Document(page_content=r["text"], metadata={"title": r["title"], "section": r["section"]}, id=r["id"])
            for r in passages(n)]
    emb = TimedEmbeddings(MiniLMEmbeddings(device=device, batch_size=batch_size))
    emb.embed_documents([d.page_content for d in docs[:batch_size]])  # warm-up, not counted
    emb.seconds = 0.0
    with Timer() as total:
        store = TorchIVFVectorStore.from_documents(docs, emb, device=device, batch_size=batch_size, progress=False)
    index_s = total.s - emb.seconds
    return {"documents": n, "device": device, "batch_size": batch_size, "total_s": round(total.s, 3),
            "embedding_s": round(emb.seconds, 3), "indexing_s": round(index_s, 4),
            "indexing_share": round(index_s / total.s, 5), "index": store.collection.index_description}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
