"""LangChain vector store backed by torch-ivf: ``from langchain_torch_ivf import TorchIVFVectorStore``."""

from .embeddings import MiniLMEmbeddings
from .vectorstores import TorchIVFRetriever, TorchIVFVectorStore

__all__ = ["MiniLMEmbeddings", "TorchIVFRetriever", "TorchIVFVectorStore"]
