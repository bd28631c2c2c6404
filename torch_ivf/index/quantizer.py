"""The coarse quantizer: which list a vector goes to and which lists a query probes (Faiss's
Level1Quantizer). Its nlist centroids live in a flat index, the ``quantizer`` Faiss code passes to
an IVF constructor; an IVF index built on one uses that very object, so training the IVF index
fills it and indexes built on one trained quantizer share its centroids."""
from __future__ import annotations

import torch

from ..arrays import float_rows
from ..distances import nearest_centroids
from ..kmeans import ClusteringParameters
from .flat import IndexFlat


class CoarseQuantizer:
    """``CoarseQuantizer(d, nlist, metric, device, index=None)``; metric "l2" or "ip" (cosine IVF
    indexes probe by inner product of unit vectors). ``index``: the flat index that holds (or will
    hold) the centroids; any other object with d / ntotal / reconstruct_batch is copied."""

    def __init__(self, d: int, nlist: int, metric: str, device, index=None):
        self.d, self.nlist, self.metric = d, nlist, metric
        if index is not None:
            if getattr(index, "d", None) != d:
                raise ValueError(f"quantizer must have d={d}, got {getattr(index, 'd', None)!r}")
            if getattr(index, "ntotal", None) not in (0, nlist, None):
                raise ValueError(f"quantizer holds {index.ntotal} centroids, expected 0 or nlist={nlist}")
        if isinstance(index, IndexFlat):
            self.index = index.to(device) if index.device != torch.device(device) else index
        else:
            self.index = IndexFlat(d, metric, device=device)
            if index is not None and index.ntotal == nlist:
                self.set_centroids(torch.as_tensor(index.reconstruct_batch(torch.arange(nlist))).float().to(device))
        self._cache = None

    @property
    def is_trained(self) -> bool:
        return self.index.ntotal == self.nlist

    @property
    def centroids(self) -> torch.Tensor:
        """(nlist, d) float32 centroids, or (0, d) before training (read back once per change)."""
        lists = self.index.invlists
        key = (id(lists), lists.version)
        if self._cache is None or self._cache[0] != key:
            c = (torch.as_tensor(self.index.reconstruct_batch(torch.arange(self.nlist))).float() if self.is_trained
                 else torch.empty(0, self.d, device=self.index.device))
            self._cache = (key, c)
        return self._cache[1]

    def set_centroids(self, centroids: torch.Tensor) -> None:
        """Replace the centroids ((nlist, d), or (0, d) to untrain); checked before the old ones go."""
        centroids = float_rows(centroids, self.d, self.index.device, "centroids")[0]
        if centroids.shape[0] not in (0, self.nlist):
            raise ValueError(f"centroids must have shape ({self.nlist}, {self.d}) or (0, {self.d}), got {tuple(centroids.shape)}")
        self.index.reset()
        if centroids.numel():
            self.index.add(centroids)

    def train(self, x: torch.Tensor, cp: ClusteringParameters, verbose: bool | None = False) -> None:
        """Seeded k-means on x with the index's clustering parameters; verbose: its progress bar."""
        self.set_centroids(cp.kmeans(x, self.nlist, verbose=verbose).to(self.index.device))

    def assign(self, x: torch.Tensor, *, verbose: bool | None = False) -> torch.Tensor:
        """The nearest list of each row of x; verbose: a progress bar (nearest_centroids')."""
        return nearest_centroids(x, self.centroids, self.metric, verbose=verbose)

    def scores(self, q: torch.Tensor) -> torch.Tensor:
        """(nq, nlist) probe scores, larger is better: 2q.c - ||c||^2 (ranks lists like -||q - c||^2)
        or q.c. Residual scanners add them to their list scores, so a search computes them once."""
        c = self.centroids
        s = q @ c.T
        if self.metric == "l2":
            s = 2 * s - self._sqnorms(c)[None, :]
        return s

    def _sqnorms(self, c: torch.Tensor) -> torch.Tensor:
        """||c||^2 of the centroids, kept with them (a pass over all nlist x d each search otherwise)."""
        if getattr(self, "_norms", (None,))[0] is not c:
            self._norms = (c, (c * c).sum(1))
        return self._norms[1]

    def probe(self, q: torch.Tensor, nprobe: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(lists to probe (nq, nprobe), best first; scores of every list (nq, nlist))."""
        s = self.scores(q)
        return s.topk(nprobe, dim=1).indices, s

    def to(self, device) -> None:
        self.index.to(device)
