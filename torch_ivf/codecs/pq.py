"""Product-quantized rows: M one-byte sub-codes per row (torch_ivf.pq), and the per-row term of the
look-up-table decomposition (see index/ivf_pq.py)."""
from __future__ import annotations

import torch

from ..arrays import take_rows
from ..pq import ProductQuantizer
from .base import Codec


class PQCodec(Codec):
    """Fields ``codes`` (M bytes) and ``init``: ||r||^2 + 2<c, r> of the decoded row r for l2, 0 for ip."""

    lossless = False  # codes cannot be re-assigned to new centroids without the original vectors

    def __init__(self, pq: ProductQuantizer, metric: str, by_residual: bool, max_train: int, seed: int):
        self.pq, self.metric, self.by_residual = pq, metric, by_residual
        self.max_train, self.seed = max_train, seed

    @property
    def d(self) -> int:
        return self.pq.d

    @property
    def is_trained(self) -> bool:
        return self.pq.is_trained

    def fields(self) -> dict:
        return {"codes": ((self.pq.M,), torch.uint8), "init": ((), torch.float32)}

    def train(self, r, verbose=False) -> None:
        if r.shape[0] > self.max_train:  # PQ k-means subsamples anyway; a seeded subset suffices
            g = torch.Generator().manual_seed(self.seed)
            r = r[torch.randperm(r.shape[0], generator=g)[: self.max_train].to(r.device)]
        self.pq.train(r, verbose=verbose)

    def init_term(self, rhat: torch.Tensor, c) -> torch.Tensor:
        """The per-row middle term of the decomposition (0 for ip)."""
        if self.metric != "l2":
            return torch.zeros(rhat.shape[0], device=rhat.device)
        init = rhat.pow(2).sum(1)
        if c is not None:
            init = init + 2 * (c * rhat).sum(1)
        return init

    def from_codes(self, codes: torch.Tensor, c) -> dict:
        """Stored fields of given codes (encode, from_faiss)."""
        return {"codes": codes, "init": self.init_term(self.pq.decode(codes), c)}

    def encode(self, r, c, verbose=False) -> dict:
        return self.from_codes(self.pq.encode(r, verbose=verbose), c)

    def code_rows(self, invlists, pos) -> torch.Tensor:
        """uint8 codes (..., M) of slab rows pos, whatever the stored layout."""
        return take_rows(invlists.field("codes"), pos)

    def rows(self, invlists, pos):
        return self.pq.decode(self.code_rows(invlists, pos))

    def sa_bytes(self) -> int:
        return self.pq.code_size

    def sa_encode(self, r):
        return self.pq.compute_codes(r)

    def sa_decode(self, payload):
        return self.pq.decode(payload)

    def tensors(self) -> dict:
        return {"pq_centroids": self.pq.centroids}

    def load_tensors(self, tensors) -> None:
        if "pq_centroids" in tensors and tensors["pq_centroids"].numel():
            self.pq.set_centroids(tensors["pq_centroids"])

    def to(self, device):
        self.pq.to(device)
        return self

    def gather_cost(self) -> int:
        return self.pq.M
