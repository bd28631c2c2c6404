"""LlamaIndex vector store backed by torch-ivf.

``from llama_index.vector_stores.torch_ivf import TorchIVFVectorStore``
"""

from .base import TorchIVFVectorStore
from .embeddings import MiniLMEmbedding
from .filters import to_filter_dict

__all__ = ["MiniLMEmbedding", "TorchIVFVectorStore", "to_filter_dict"]
