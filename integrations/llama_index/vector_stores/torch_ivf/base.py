"""TorchIVFVectorStore: LlamaIndex's BasePydanticVectorStore over a torch_ivf Collection.

Nodes are stored with their text and LlamaIndex's own metadata dict (which carries the node's
relationships), so they round-trip through get_nodes / query / persist. Filters, scores, MMR and
persistence are the collection's; this module only translates LlamaIndex types.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import fsspec
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
from pydantic import PrivateAttr

from torch_ivf.collection import Collection
from torch_ivf.collection.persist import is_store

from .filters import to_filter_dict

log = logging.getLogger("torch_ivf.llama_index")
DEFAULT_PERSIST_DIR = "./storage"
DEFAULT_NAMESPACE = "default"
_PERSIST_FNAME = "vector_store.json"
_NAMESPACE_SEP = "__"
# LlamaIndex's SimpleVectorStore loader claims every "*vector_store.json" in a persist dir, so the
# data goes to a sibling directory with a different suffix; StorageContext.from_defaults(persist_dir)
# therefore never tries to parse it as its own format.
_DIR_SUFFIX = ".torch_ivf"
MMR_PREFETCH_FACTOR = 4
_MODES = (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR, VectorStoreQueryMode.TEXT_SEARCH,
          VectorStoreQueryMode.SPARSE, VectorStoreQueryMode.HYBRID)


def _store_dir(persist_path: str) -> str:
    path = str(persist_path)
    if path.endswith(_DIR_SUFFIX):
        return path
    return (path[: -len(".json")] if path.endswith(".json") else path) + _DIR_SUFFIX


def _is_local(fs: Optional[fsspec.AbstractFileSystem]) -> bool:
    return fs is None or "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


class TorchIVFVectorStore(BasePydanticVectorStore):
    """LlamaIndex vector store on torch-ivf (exact or IVF search, any torch device).

    ``TorchIVFVectorStore()`` works as is: the dimension comes from the first nodes added.
    Optional: ``index`` ("auto", "Flat", "IVF{nlist},Flat", ...), ``metric`` ("cosine", "ip",
    "l2"), ``device``, ``nprobe``. Similarities are relevance in [0, 1], higher is better.
    """

    stores_text: bool = True
    flat_metadata: bool = False
    index: str = "auto"
    metric: str = "cosine"
    device: Optional[str] = None
    nprobe: Optional[int] = None

    _collection: Collection = PrivateAttr()

    def __init__(self, index: str = "auto", metric: str = "cosine", device: Any = None,
                 nprobe: Optional[int] = None, collection: Optional[Collection] = None, **kwargs: Any):
        if collection is not None and not isinstance(collection, Collection):
            raise TypeError(f"collection must be a torch_ivf Collection, got {type(collection).__name__}")
        coll = collection or Collection(None, index=index, metric=metric, device=device, nprobe=nprobe)
        super().__init__(index=coll.plan.spec, metric=coll.metric, device=str(coll.device),
                         nprobe=coll.plan.nprobe, **kwargs)
        self._collection = coll
        log.info("LlamaIndex TorchIVFVectorStore: %s", coll.describe())

    @classmethod
    def class_name(cls) -> str:
        return "TorchIVFVectorStore"

    @property
    def client(self) -> Collection:
        """The underlying framework-neutral :class:`torch_ivf.collection.Collection`."""
        return self._collection

    # ---- writing ------------------------------------------------------------------------------
    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Upsert nodes (an existing node id is replaced); every node needs an embedding."""
        if isinstance(nodes, (BaseNode, str, bytes)):  # a pydantic node iterates as (field, value) pairs
            raise TypeError(f"nodes must be a list of LlamaIndex nodes, got a single {type(nodes).__name__}: "
                            "pass [node]")
        nodes = list(nodes)
        for node in nodes:
            if not isinstance(node, BaseNode):
                raise TypeError(f"nodes must be LlamaIndex nodes, got {type(node).__name__}")
            if node.embedding is None:
                raise ValueError(f"nodes: node {node.node_id!r} has no embedding")
        if not nodes:
            return []
        ids = [n.node_id for n in nodes]
        self._collection.upsert(
            [n.get_content(metadata_mode=MetadataMode.NONE) for n in nodes],
            ids=ids,
            metadatas=[node_to_metadata_dict(n, remove_text=True, flat_metadata=self.flat_metadata)
                       for n in nodes],
            vectors=[n.get_embedding() for n in nodes],
        )
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of document ``ref_doc_id``."""
        if not isinstance(ref_doc_id, str):
            raise TypeError(f"ref_doc_id must be a string, got {type(ref_doc_id).__name__}")
        self._collection.delete_where({"ref_doc_id": ref_doc_id})

    def delete_nodes(self, node_ids: Optional[list[str]] = None,
                     filters: Optional[MetadataFilters] = None, **delete_kwargs: Any) -> None:
        """Delete the nodes matching ``node_ids`` and ``filters`` (both when both are given)."""
        if node_ids is None and filters is None:
            return
        self._collection.delete([r.id for r in self._collection.records(filter=to_filter_dict(filters),
                                                                        ids=node_ids)])

    def clear(self) -> None:
        self._collection.clear()

    # ---- reading ------------------------------------------------------------------------------
    def get_nodes(self, node_ids: Optional[list[str]] = None,
                  filters: Optional[MetadataFilters] = None) -> list[BaseNode]:
        """Nodes by id and/or filter (all nodes when neither is given)."""
        records = self._collection.records(filter=to_filter_dict(filters), ids=node_ids)
        return [metadata_dict_to_node(r.metadata, text=r.text) for r in records]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Top-k with filters, doc_ids and node_ids applied inside the search, in any of these modes:

        * DEFAULT: dense, ``similarity_top_k`` nearest embeddings.
        * MMR: ``mmr_threshold`` (lambda, default 0.5) over ``mmr_prefetch_k`` dense candidates.
        * TEXT_SEARCH / SPARSE: BM25 over the stored texts for ``query_str``, top ``sparse_top_k``
          (default ``similarity_top_k``); no embedding needed.
        * HYBRID: ``alpha * dense + (1 - alpha) * keyword`` (``alpha`` default 0.5; 1 = dense only),
          candidates from the dense top ``similarity_top_k`` and the keyword top ``sparse_top_k``
          (at least 4 x the result count), ``hybrid_top_k`` results (default ``similarity_top_k``).

        Similarities are relevance in [0, 1] in every mode.
        """
        mode = query.mode
        if mode not in _MODES:
            raise ValueError(f"query.mode {mode!r} is not supported (default, mmr, text_search, sparse, hybrid)")
        keyword = mode in (VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE)
        if mode in (VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE, VectorStoreQueryMode.HYBRID):
            if not query.query_str:
                raise ValueError(f"query.query_str is required for mode {mode.value!r}")
        if not keyword and query.query_embedding is None:
            raise ValueError("query.query_embedding is required")
        k = int(query.similarity_top_k)
        where = to_filter_dict(query.filters)
        # Empty doc_ids/node_ids mean "no restriction": VectorStoreIndex passes node_ids=[] for
        # stores that keep their own text (its nodes_dict is empty), as other stores read it too.
        if query.doc_ids:
            by_doc = {"ref_doc_id": {"$in": list(query.doc_ids)}}
            where = by_doc if where is None else {"$and": [where, by_doc]}
        node_ids = query.node_ids or None
        if query.mode == VectorStoreQueryMode.MMR:
            lam = kwargs.get("mmr_threshold", query.mmr_threshold)
            fetch_k = kwargs.get("mmr_prefetch_k") or k * kwargs.get("mmr_prefetch_factor", MMR_PREFETCH_FACTOR)
            hits = self._collection.mmr(query.query_embedding, k, fetch_k=fetch_k,
                                        lambda_mult=0.5 if lam is None else lam,
                                        filter=where, ids=node_ids)
        elif keyword:
            hits = self._collection.search(query.query_str, int(query.sparse_top_k or k), mode="keyword",
                                           filter=where, ids=node_ids)
        elif mode == VectorStoreQueryMode.HYBRID:
            top = int(query.hybrid_top_k or k)
            hits = self._collection.search(
                query.query_embedding, top, mode="hybrid", text=query.query_str,
                alpha=0.5 if query.alpha is None else query.alpha, filter=where, ids=node_ids,
                fetch_k=max(k, int(query.sparse_top_k or 0), 4 * top))
        else:
            hits = self._collection.search(query.query_embedding, k, filter=where, ids=node_ids)
        nodes = [metadata_dict_to_node(h.metadata, text=h.text) for h in hits]
        return VectorStoreQueryResult(nodes=nodes, similarities=[h.score for h in hits],
                                      ids=[h.id for h in hits])

    # ---- async: the work runs in a thread so the event loop stays free -------------------------
    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(self, node_ids: Optional[list[str]] = None,
                            filters: Optional[MetadataFilters] = None, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **delete_kwargs)

    async def aget_nodes(self, node_ids: Optional[list[str]] = None,
                         filters: Optional[MetadataFilters] = None) -> list[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)

    # ---- persistence --------------------------------------------------------------------------
    def persist(self, persist_path: str = os.path.join(DEFAULT_PERSIST_DIR, "default__vector_store.json"),
                fs: Optional[fsspec.AbstractFileSystem] = None) -> None:
        """Save next to ``persist_path`` as ``<name>.torch_ivf/`` (safetensors + JSON, atomic)."""
        target = _store_dir(persist_path)
        if _is_local(fs):
            self._collection.save(target)
            return
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "store"
            self._collection.save(local)
            fs.put(str(local), target, recursive=True)

    @classmethod
    def from_persist_path(cls, persist_path: str, fs: Optional[fsspec.AbstractFileSystem] = None,
                          device: Any = None) -> "TorchIVFVectorStore":
        """Load a store persisted at ``persist_path`` (a local path, or on ``fs``) onto ``device``."""
        source = persist_path if is_store(persist_path) else _store_dir(persist_path)
        if _is_local(fs):
            return cls(collection=Collection.load(source, device=device))
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "store"
            fs.get(source, str(local), recursive=True)
            return cls(collection=Collection.load(local, device=device))

    @classmethod
    def from_persist_dir(cls, persist_dir: str = DEFAULT_PERSIST_DIR, namespace: str = DEFAULT_NAMESPACE,
                         fs: Optional[fsspec.AbstractFileSystem] = None,
                         device: Any = None) -> "TorchIVFVectorStore":
        """Load what ``StorageContext.persist(persist_dir)`` wrote for this store."""
        path = os.path.join(persist_dir, f"{namespace}{_NAMESPACE_SEP}{_PERSIST_FNAME}")
        return cls.from_persist_path(path, fs=fs, device=device)
