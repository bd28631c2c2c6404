"""Conversion to and from faiss indexes (faiss is an optional dependency)."""
from .faiss import from_faiss, to_faiss

__all__ = ["from_faiss", "to_faiss"]
