"""Exact search: an IVF with a single list that every query probes (one chunked GEMM + top-k)."""
from __future__ import annotations

import torch

from .ivf import IndexIVF
from .ivf_flat import FlatCodes


class IndexFlat(FlatCodes, IndexIVF):
    def __init__(self, d, metric="l2", *, device=None, dtype=torch.float32):
        IndexIVF.__init__(self, d, 1, metric, device=device, dtype=dtype)
        self.centroids = torch.zeros(1, self.d, device=self.device)

    def config(self) -> dict:
        return {"d": self.d, "metric": self.metric, "dtype": str(self.dtype).removeprefix("torch.")}

    def train(self, x) -> None:
        """Nothing to learn; input is still validated, as Faiss accepts train() on flat indexes."""
        self._vectors(x)


class IndexFlatL2(IndexFlat):
    def __init__(self, d, *, device=None, dtype=torch.float32):
        super().__init__(d, "l2", device=device, dtype=dtype)

    def config(self) -> dict:
        return {k: v for k, v in super().config().items() if k != "metric"}


class IndexFlatIP(IndexFlat):
    def __init__(self, d, *, device=None, dtype=torch.float32):
        super().__init__(d, "ip", device=device, dtype=dtype)

    def config(self) -> dict:
        return {k: v for k, v in super().config().items() if k != "metric"}
