"""Conversion to and from faiss indexes (faiss is an optional dependency)."""
from .faiss import from_faiss, to_faiss
from . import faiss_pq  # noqa: F401,E402  (registers the IVFPQ converters)

__all__ = ["from_faiss", "to_faiss"]
