"""Conversion to and from faiss indexes (faiss is an optional dependency)."""
from .faiss import from_faiss, to_faiss
from . import faiss_pq, faiss_refine, faiss_sq  # noqa: F401,E402  (register the IVFPQ, refine and SQ converters)

__all__ = ["from_faiss", "to_faiss"]
