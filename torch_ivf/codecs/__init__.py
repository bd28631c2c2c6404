"""Codecs: what an index stores per vector and how it gets there and back.

A codec owns its fields in the inverted lists, its training, encode / decode and the standalone
code (the codec's part of Faiss's sa_encode). It sees vectors or residuals only: the index
subtracts the list centroids first when ``by_residual`` and passes them (``c``) where a stored term
needs them (the l2 bias / init term), so a codec knows nothing of coarse quantizers or lists.
"""
from .base import Codec
from .flat import FlatCodec
from .pq import PQCodec
from .sq import SQCodec
from .panorama import PanoramaFlatCodec, PanoramaPQCodec

__all__ = ["Codec", "FlatCodec", "SQCodec", "PQCodec", "PanoramaFlatCodec", "PanoramaPQCodec"]
