"""TorchIVFVectorStore: LangChain's VectorStore interface over a torch_ivf Collection.

Only type translation lives here (Document <-> Record/Hit, retriever kwargs); storage, filtering,
scoring and persistence belong to :class:`torch_ivf.collection.Collection`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from langchain_core.vectorstores import VectorStore, VectorStoreRetriever
from pydantic import model_validator

from torch_ivf.collection import Collection, as_embedder
from torch_ivf.collection.fusion import check_alpha, check_mode
from torch_ivf.collection.records import Hit

log = logging.getLogger("torch_ivf.langchain")
_SEARCH_KWARGS = {"filter", "score_threshold", "nprobe", "alpha"}
# Options some LangChain callers pass to every search type; harmless for plain similarity.
_IGNORED_KWARGS = {"fetch_k", "lambda_mult"}


def _search_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = set(kwargs) - _SEARCH_KWARGS - _IGNORED_KWARGS - {"retrieval_mode"}
    if unknown:
        raise TypeError(f"unexpected search argument(s): {', '.join(sorted(unknown))}")
    return {key: kwargs[key] for key in _SEARCH_KWARGS if key in kwargs}


def _mmr_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    if check_mode(kwargs.get("retrieval_mode", "dense")) != "dense":
        raise ValueError("max marginal relevance search is dense only: drop retrieval_mode or pass 'dense'")
    options = _search_options(kwargs)
    options.pop("score_threshold", None)
    options.pop("alpha", None)
    return options


def _document(hit: Hit) -> Document:
    return Document(id=hit.id, page_content=hit.text or "", metadata=hit.metadata)


class TorchIVFVectorStore(VectorStore):
    """LangChain vector store on torch-ivf: exact or IVF search on any torch device.

    Filters (a Mongo-style dict or a ``callable(metadata) -> bool``) are applied inside the index
    scan, so ``k`` results come back whenever ``k`` documents match. Scores from every search are
    relevance in [0, 1] (higher is better) for every metric; ``score_threshold`` compares against
    them. ``save_local``/``load_local`` use safetensors + JSON (no pickle).

    ``retrieval_mode``: ``"dense"`` (embeddings, the default), ``"keyword"`` (BM25 over the stored
    texts; ``"sparse"`` is accepted too) or ``"hybrid"`` (``alpha * dense + (1 - alpha) * keyword``,
    see :meth:`torch_ivf.collection.Collection.search`). Every search call, the retriever's
    ``search_kwargs`` and the async twins take ``retrieval_mode=`` and ``alpha=`` overrides.
    Keyword and hybrid search need the query text, so the ``*_by_vector`` methods are dense only.

    Args:
        embedding: a LangChain Embeddings (MiniLMEmbeddings() runs the bundled model offline).
        index: "auto" (exact until IVF wins on this device), "Flat", "IVF{nlist},Flat", ...
        metric: "cosine" (default), "ip" or "l2"; or ``distance_strategy``, LangChain's
            DistanceStrategy (not both).
        device: torch device; None picks the GPU when torch sees one.
        nprobe: lists scanned per query on IVF indexes.
        batch_size: texts per embedding call; progress: embedding progress bar (None: long inputs).
        retrieval_mode, alpha: the default search mode and hybrid weight (above).
        collection: an existing torch_ivf Collection to wrap (then index, metric, device are its own).

    Raises:
        ValueError: no embedding, metric and distance_strategy both given, a bad mode or alpha, or a
            device that does not exist (before any embedding).
        TypeError: collection is not a Collection.
    """

    def __init__(self, embedding: Embeddings, *, index: str = "auto", metric: str | None = None,
                 distance_strategy: Any = None, device: Any = None, nprobe: int | None = None,
                 batch_size: int = 64, progress: bool | None = None,
                 retrieval_mode: str = "dense", alpha: float = 0.5,
                 collection: Collection | None = None):
        if embedding is None:
            raise ValueError("embedding is required (a LangChain Embeddings instance)")
        if metric is not None and distance_strategy is not None:
            raise ValueError("pass metric or distance_strategy, not both")
        chosen = metric if metric is not None else distance_strategy
        self.retrieval_mode = check_mode(retrieval_mode)
        self.alpha = check_alpha(alpha)
        self._embedding = embedding
        if collection is not None:
            if not isinstance(collection, Collection):
                raise TypeError(f"collection must be a torch_ivf Collection, got {type(collection).__name__}")
            self.collection = collection
            self.collection.embedder = as_embedder(embedding)
        else:
            self.collection = Collection(embedding, index=index, metric=chosen or "cosine", device=device,
                                         nprobe=nprobe, batch_size=batch_size, progress=progress)
        log.info("LangChain TorchIVFVectorStore: %s, retrieval_mode %s", self.collection.describe(),
                 self.retrieval_mode)

    @property
    def embeddings(self) -> Embeddings:
        """The embedding model documents and queries go through (LangChain's VectorStore.embeddings)."""
        return self._embedding

    # ---- writing ------------------------------------------------------------------------------
    def add_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *,
                  ids: list[str] | None = None, batch_size: int | None = None,
                  **kwargs: Any) -> list[str]:
        """Embed (in batches, with a progress bar for long inputs) and upsert ``texts``."""
        if isinstance(texts, (str, bytes)):  # list("abc") would add three one-letter documents
            raise TypeError(f"texts must be a list of strings, got a single {type(texts).__name__}: pass [text]")
        return self.collection.upsert(list(texts), ids=ids, metadatas=metadatas,
                                      batch_size=batch_size, progress=kwargs.pop("show_progress", None))

    def add_embeddings(self, text_embeddings: Iterable[tuple[str, list[float]]],
                       metadatas: list[dict] | None = None, ids: list[str] | None = None,
                       **kwargs: Any) -> list[str]:
        """Upsert precomputed ``(text, vector)`` pairs without calling the embedding model."""
        if isinstance(text_embeddings, (str, bytes)):
            raise TypeError("text_embeddings must be a list of (text, vector) pairs, got a string")
        pairs = list(text_embeddings)
        if not pairs:
            return []
        for pair in pairs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"text_embeddings must contain (text, vector) pairs, got {type(pair).__name__}")
        texts = [t for t, _ in pairs]
        return self.collection.upsert(texts, ids=ids, metadatas=metadatas, vectors=[v for _, v in pairs])

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete by ids (unknown ids are ignored); ``None`` deletes everything."""
        if ids is None:
            self.collection.clear()
        else:
            self.collection.delete(ids)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return [Document(id=r.id, page_content=r.text or "", metadata=r.metadata)
                for r in self.collection.get(ids)]

    # ---- searching ----------------------------------------------------------------------------
    def _mode(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        options = _search_options(kwargs)
        options["mode"] = check_mode(kwargs.get("retrieval_mode", self.retrieval_mode))
        options.setdefault("alpha", self.alpha)
        return options

    def similarity_search_with_score_by_vector(self, embedding: list[float], k: int = 4,
                                               **kwargs: Any) -> list[tuple[Document, float]]:
        """Dense search by vector (keyword and hybrid search need the text: use the text methods)."""
        if check_mode(kwargs.get("retrieval_mode", "dense")) != "dense":
            raise ValueError("retrieval_mode 'keyword'/'hybrid' needs the query text: call "
                             "similarity_search(_with_score) with the text instead of a vector")
        hits = self.collection.search(embedding, k, **_search_options(kwargs))
        return [(_document(h), h.score) for h in hits]

    def similarity_search_with_score(self, query: str, k: int = 4,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """Documents with relevance in [0, 1] (higher is better), whatever the metric and mode.

        ``retrieval_mode=`` and ``alpha=`` override the store's defaults for this call.
        """
        hits = self.collection.search(query, k, **self._mode(kwargs))
        return [(_document(h), h.score) for h in hits]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4,
                                    **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, **kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return lambda score: score  # the collection already returns relevance in [0, 1]

    def _similarity_search_with_relevance_scores(self, query: str, k: int = 4,
                                                 **kwargs: Any) -> list[tuple[Document, float]]:
        return self.similarity_search_with_score(query, k, **kwargs)

    async def _asimilarity_search_with_relevance_scores(self, query: str, k: int = 4,
                                                        **kwargs: Any) -> list[tuple[Document, float]]:
        return await run_in_executor(None, self.similarity_search_with_score, query, k, **kwargs)

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20,
                                      lambda_mult: float = 0.5, **kwargs: Any) -> list[Document]:
        """MMR over the dense candidates (the store's retrieval_mode does not apply)."""
        options = _mmr_options(kwargs)
        hits = self.collection.mmr(query, k, fetch_k=fetch_k, lambda_mult=lambda_mult, **options)
        return [_document(h) for h in hits]

    def max_marginal_relevance_search_by_vector(self, embedding: list[float], k: int = 4,
                                                fetch_k: int = 20, lambda_mult: float = 0.5,
                                                **kwargs: Any) -> list[Document]:
        options = _mmr_options(kwargs)
        hits = self.collection.mmr(embedding, k, fetch_k=fetch_k, lambda_mult=lambda_mult, **options)
        return [_document(h) for h in hits]

    def as_retriever(self, **kwargs: Any) -> "TorchIVFRetriever":
        tags = kwargs.pop("tags", None) or [*self._get_retriever_tags()]
        return TorchIVFRetriever(vectorstore=self, tags=tags, **kwargs)

    # ---- construction and persistence ---------------------------------------------------------
    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict] | None = None,
                   *, ids: list[str] | None = None, batch_size: int | None = None,
                   **kwargs: Any) -> "TorchIVFVectorStore":
        """Build a store (constructor options in kwargs: index, metric, device, ...) and add texts."""
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids, batch_size=batch_size)
        return store

    @classmethod
    def from_embeddings(cls, text_embeddings: Iterable[tuple[str, list[float]]], embedding: Embeddings,
                        metadatas: list[dict] | None = None, ids: list[str] | None = None,
                        **kwargs: Any) -> "TorchIVFVectorStore":
        """A new store (constructor keywords in kwargs) holding the given (text, embedding) pairs;
        ``embedding`` embeds later queries.
        """
        store = cls(embedding, **kwargs)
        store.add_embeddings(text_embeddings, metadatas, ids=ids)
        return store

    def save_local(self, folder_path: str | Path, index_name: str = "index") -> None:
        """Save to ``folder_path/index_name/`` (safetensors + JSON; atomic)."""
        self.collection.save(Path(folder_path) / index_name)

    @classmethod
    def load_local(cls, folder_path: str | Path, embeddings: Embeddings, index_name: str = "index",
                   *, device: Any = None, allow_dangerous_deserialization: bool | None = None,
                   retrieval_mode: str = "dense", alpha: float = 0.5,
                   **kwargs: Any) -> "TorchIVFVectorStore":
        """Load a store written by :meth:`save_local`. Nothing is unpickled, so no
        ``allow_dangerous_deserialization`` is needed (it is accepted and ignored for drop-in use).
        The keyword index is rebuilt from the stored texts on the first keyword or hybrid search."""
        collection = Collection.load(Path(folder_path) / index_name, embeddings, device=device, **kwargs)
        return cls(embeddings, collection=collection, retrieval_mode=retrieval_mode, alpha=alpha)


class TorchIVFRetriever(VectorStoreRetriever):
    """VectorStoreRetriever that also takes ``k`` directly: ``TorchIVFRetriever(vectorstore=s, k=3)``."""

    @model_validator(mode="before")
    @classmethod
    def _fold_k(cls, values: Any) -> Any:
        if isinstance(values, dict) and "k" in values:
            values = dict(values)
            values["search_kwargs"] = {**(values.get("search_kwargs") or {}), "k": values.pop("k")}
        return values
