"""Panorama's storage: a codec's fields plus ``tails``, the suffix norms of each decoded row per level
(the Cauchy-Schwarz bound of torch_ivf.panorama); PQ codes stored level-major."""
from __future__ import annotations

import torch

from ..arrays import take_rows
from ..panorama import round_up_half, suffix_norms
from .flat import FlatCodec
from .pq import PQCodec

NORM_DTYPES = {"float32": torch.float32, "float16": torch.float16}


class _Tails:
    n_levels: int
    norm_dtype: str

    def _tail_field(self) -> dict:
        return {"tails": ((self.n_levels,), NORM_DTYPES[self.norm_dtype])}

    def tails(self, rows: torch.Tensor) -> torch.Tensor:
        """Suffix norms of float32 rows; float16 ones rounded up so the bound stays valid."""
        t = suffix_norms(rows, self.n_levels)
        return round_up_half(t) if self.norm_dtype == "float16" else t


class PanoramaFlatCodec(_Tails, FlatCodec):
    def __init__(self, d, metric, n_levels: int, norm_dtype: str):
        super().__init__(d, metric)
        self.n_levels, self.norm_dtype = n_levels, norm_dtype

    def fields(self) -> dict:
        return {**super().fields(), **self._tail_field()}

    def encode(self, r, c, verbose=False) -> dict:
        fields = super().encode(r, c, verbose)
        fields["tails"] = self.tails(fields["vectors"].float())  # norms of what is stored
        return fields


class PanoramaPQCodec(_Tails, PQCodec):
    """Codes stored (L, rows, M / L): level j of a list is one contiguous block (see InvertedLists)."""

    def __init__(self, pq, metric, by_residual, max_train, seed, n_levels: int, norm_dtype: str):
        super().__init__(pq, metric, by_residual, max_train, seed)
        self.n_levels, self.norm_dtype = n_levels, norm_dtype

    def fields(self) -> dict:
        return {**super().fields(), **self._tail_field(),
                "codes": ((self.n_levels, self.pq.M // self.n_levels), torch.uint8, True)}

    def code_rows(self, invlists, pos):
        return take_rows(invlists.field("codes"), pos).flatten(-2)

    def from_codes(self, codes, c) -> dict:
        fields = super().from_codes(codes, c)
        fields["codes"] = codes.view(codes.shape[0], self.n_levels, -1)
        fields["tails"] = self.tails(self.pq.decode(codes))
        return fields
