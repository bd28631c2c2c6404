"""The codec protocol every index type's storage goes through."""
from __future__ import annotations

import torch


class Codec:
    """Fields, training, encode / decode and standalone codes of one storage format.

    ``r`` below is a batch of vectors, or of residuals x - c when ``by_residual``; ``c`` the list
    centroids of those rows (None without residuals); ``pos`` slab rows (a tensor of any shape, or
    a slice) of an InvertedLists holding this codec's fields.

    Codecs that store codes in Faiss's layout (SQ, PQ) also have ``from_codes(codes, c)`` (the stored
    fields of given codes: from_faiss, and the file checks that recompute derived fields) and
    ``code_rows(invlists, pos)`` (the codes at slab rows pos).
    """

    by_residual = False
    lossless = False  # decode() gives back exactly what was encoded (re-training may re-assign rows)

    def fields(self) -> dict:
        """InvertedLists field specs {name: (row shape, dtype[, level-major])}, labels excluded."""
        raise NotImplementedError

    @property
    def is_trained(self) -> bool:
        return True

    def train(self, r: torch.Tensor, verbose: bool | None = False) -> None:
        """Learn what the codec needs from training rows r (n, d); verbose: progress bars (progress.py)."""

    def encode(self, r: torch.Tensor, c: torch.Tensor | None, verbose: bool | None = False) -> dict:
        """The stored fields of rows r (n, d)."""
        raise NotImplementedError

    def rows(self, invlists, pos) -> torch.Tensor:
        """float32 (..., d) decoded rows (vectors or residuals) at slab rows pos."""
        raise NotImplementedError

    def sa_bytes(self) -> int:
        """Bytes of the codec's part of a standalone code."""
        raise NotImplementedError

    def sa_encode(self, r: torch.Tensor) -> torch.Tensor:
        """(n, sa_bytes) uint8 standalone codes of rows r (Faiss's layout)."""
        raise NotImplementedError

    def sa_decode(self, payload: torch.Tensor) -> torch.Tensor:
        """float32 (n, d) rows of standalone codes."""
        raise NotImplementedError

    def tensors(self) -> dict:
        """Trained state, persisted under ``codec.<name>``."""
        return {}

    def load_tensors(self, tensors: dict) -> None:
        pass

    def to(self, device) -> "Codec":
        return self

    def gather_cost(self) -> int:
        """Elements a scan materialises per gathered row."""
        raise NotImplementedError
