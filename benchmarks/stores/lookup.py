"""An Embeddings that returns precomputed vectors, so store benchmarks time the store, not a model."""

from __future__ import annotations

import numpy as np
from langchain_core.embeddings import Embeddings


class LookupEmbeddings(Embeddings):
    def __init__(self, texts: list[str], vectors: np.ndarray):
        self._by_text = {t: v for t, v in zip(texts, vectors.tolist())}
        self._dim = vectors.shape[1]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._by_text[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._by_text.get(text, [0.0] * self._dim)
