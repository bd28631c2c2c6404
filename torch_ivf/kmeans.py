"""Seeded k-means on any torch device (Faiss-style: sampled init, subsampling, empty-cluster splits)."""
from __future__ import annotations

import numpy as np
import torch

from . import progress
from .distances import nearest_centroids


class ClusteringParameters:
    """k-means settings of an index's training (Faiss's ClusteringParameters: ``index.cp`` for the
    coarse quantizer of an IVF index, ``pq.cp`` for a product quantizer). Changes made before
    train() are honoured: niter, seed, max_points_per_centroid (training points kept per centroid;
    0 keeps all), spherical (unit-norm centroids). min_points_per_centroid, verbose and nredo are
    kept for Faiss code (no warning is printed; one run is made)."""

    _INTS = {"niter": 0, "seed": None, "max_points_per_centroid": 0, "min_points_per_centroid": 0, "nredo": 1}

    def __init__(self, niter: int = 25, seed: int = 1234, max_points_per_centroid: int = 256,
                 min_points_per_centroid: int = 39, spherical: bool = False, verbose: bool = False, nredo: int = 1):
        self.niter, self.seed, self.nredo = niter, seed, nredo
        self.max_points_per_centroid, self.min_points_per_centroid = max_points_per_centroid, min_points_per_centroid
        self.spherical, self.verbose = spherical, verbose

    def __setattr__(self, name, value) -> None:
        if name in self._INTS:
            low = self._INTS[name]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (low is not None and value < low):
                raise ValueError(f"cp.{name} must be an int{'' if low is None else f' >= {low}'}, got {value!r}")
            value = int(value)
        elif name in ("spherical", "verbose"):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"cp.{name} must be a bool, got {type(value).__name__}")
            value = bool(value)
        else:
            raise AttributeError(f"ClusteringParameters has no field {name!r}")
        object.__setattr__(self, name, value)

    def kmeans(self, x: torch.Tensor, k: int, seed_offset: int = 0, verbose: bool | None = False) -> torch.Tensor:
        """k centroids of x with these settings (seed + seed_offset); verbose: as for kmeans()."""
        return kmeans(x, k, niter=self.niter, seed=self.seed + seed_offset, verbose=verbose,
                      max_points_per_centroid=self.max_points_per_centroid, spherical=self.spherical)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in (*self._INTS, "spherical", "verbose"))
        return f"ClusteringParameters({fields})"


def cp_field(name: str, doc: str) -> property:
    """A read-write property of an object with a ``cp`` (ClusteringParameters) that is ``cp.<name>``:
    the one place the setting lives."""
    return property(lambda self: getattr(self.cp, name), lambda self, value: setattr(self.cp, name, value),
                    doc=doc)


def _generator(seed: int) -> torch.Generator:
    # A CPU generator keeps results identical across devices for the same seed.
    return torch.Generator(device="cpu").manual_seed(int(seed))


def _kmeanspp_init(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    centroids = [x[first]]
    closest = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, k):
        probs = (closest / closest.sum().clamp_min(1e-30)).cpu()
        idx = int(torch.multinomial(probs.double(), 1, generator=gen))
        centroids.append(x[idx])
        closest = torch.minimum(closest, ((x - x[idx]) ** 2).sum(1))
    return torch.stack(centroids)


def kmeans(
    x: torch.Tensor,
    k: int,
    *,
    niter: int = 20,
    seed: int = 1234,
    max_points_per_centroid: int = 256,
    init: str = "random",
    spherical: bool = False,
    verbose: bool | None = False,
) -> torch.Tensor:
    """Return (k, d) float32 centroids of x, computed on x's device.

    Large training sets are subsampled to ``k * max_points_per_centroid`` points, as Faiss does:
    more points barely move the centroids but cost linear time.

    Args:
        x: (n, d) training vectors (any float dtype), n >= k.
        k: number of centroids.
        niter: Lloyd iterations.
        seed: seed of the sampling and initialisation (the same on every device).
        max_points_per_centroid: subsample to k * this many points (0: use every point).
        init: "random" (k distinct training points) or "kmeans++".
        spherical: normalise the centroids after each iteration (inner-product clustering).
        verbose: a progress bar over the iterations: True always, False never, None only for long runs
            on a terminal (see torch_ivf.progress).

    Returns:
        (k, d) float32 centroids on x's device.

    Raises:
        ValueError: x not 2-D, k not positive, fewer than k points, or an unknown init.
    """
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (n, d), got shape {tuple(x.shape)}")
    n = x.shape[0]
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if n < k:
        raise ValueError(f"need at least k={k} training points, got {n}")
    if init not in ("random", "kmeans++"):
        raise ValueError(f"init must be 'random' or 'kmeans++', got {init!r}")
    progress.check_verbose(verbose)
    gen = _generator(seed)
    x = x.float()
    if max_points_per_centroid and n > k * max_points_per_centroid:
        keep = torch.randperm(n, generator=gen)[: k * max_points_per_centroid].to(x.device)
        x = x[keep]
        n = x.shape[0]
    if init == "kmeans++":
        centroids = _kmeanspp_init(x, k, gen)
    else:
        centroids = x[torch.randperm(n, generator=gen)[:k].to(x.device)].clone()
    ones = torch.ones(n, device=x.device)
    work = progress.score_work(n, k, x.shape[1]) * niter
    with progress.bar(niter, f"k-means {k} x {x.shape[1]}", verbose=verbose, work=work, unit="iter") as shown:
        for _ in range(niter):
            assign = nearest_centroids(x, centroids, metric="ip" if spherical else "l2")
            sums = torch.zeros_like(centroids).index_add_(0, assign, x)
            counts = torch.zeros(k, device=x.device).index_add_(0, assign, ones)
            empty = counts == 0
            centroids = torch.where(empty[:, None], centroids, sums / counts.clamp_min(1)[:, None])
            if bool(empty.any()):
                centroids = _split_largest(centroids, counts, empty, gen)
            if spherical:
                centroids = torch.nn.functional.normalize(centroids, dim=1)
            shown.update(1)
    return centroids


def _split_largest(centroids, counts, empty, gen):
    """Give each empty centroid half of a large cluster: copy its centre with a tiny symmetric nudge."""
    centroids = centroids.clone()
    order = torch.argsort(counts, descending=True).cpu().tolist()
    eps = 1e-4
    for j, e in enumerate(torch.nonzero(empty).flatten().cpu().tolist()):
        big = order[j % len(order)]
        noise = (torch.rand(centroids.shape[1], generator=gen) - 0.5).to(centroids.device) * eps
        scale = centroids[big].abs().clamp_min(1e-3)
        centroids[e] = centroids[big] + noise * scale
        centroids[big] = centroids[big] - noise * scale
    return centroids
