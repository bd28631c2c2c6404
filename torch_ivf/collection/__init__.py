"""Framework-neutral document collection: ids, texts, metadata, filters, MMR, save/load.

>>> from torch_ivf.collection import Collection
>>> coll = Collection(embedding, index="auto", metric="cosine")
>>> coll.upsert(["some text"], ids=["a"], metadatas=[{"lang": "en"}])
>>> coll.search("query", k=4, filter={"lang": "en"})
"""

from .collection import Collection
from ..devices import default_device, resolve_device
from .embeddings import Embedder, MiniLMEmbedder, as_embedder, load_minilm, minilm_path
from .filters import compile_filter
from .records import Hit, Record
from .scores import relevance

__all__ = ["Collection", "Embedder", "Hit", "MiniLMEmbedder", "Record", "as_embedder",
           "compile_filter", "default_device", "load_minilm", "minilm_path", "relevance",
           "resolve_device"]
