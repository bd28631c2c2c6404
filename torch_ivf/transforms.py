"""Orthogonal pre-transforms. PanoramaTransform front-loads energy into the first levels (so the
Cauchy-Schwarz bound prunes early) while keeping each level's energy even across its dimensions (so
PQ sub-quantizers are not overloaded). Orthogonal: L2 distances and inner products are unchanged.

Steps (fit on the training set): PCA rotation (eigenvectors of the covariance, by decreasing variance,
applied without centring so inner products stay exact), then random rotations that mix a level with
the next one while its energy per dimension exceeds ``cap`` times the mean (spilling the excess into
the following dimensions), then one random rotation inside each level.
"""
from __future__ import annotations

import torch

from .arrays import back, float_rows, positive_int


def _random_rotation(n: int, gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None, :]  # Haar-uniform


class PanoramaTransform:
    """``PanoramaTransform(d, n_levels, *, cap=8.0, seed=1234, device=None)``: the orthogonal (d, d)
    rotation Panorama indexes apply before storing, so that the leading levels (d / n_levels
    dimensions each) carry most of each vector's energy and pruning bounds tighten early.

    Args:
        d: vector dimension (a multiple of n_levels).
        n_levels: number of levels the dimensions are split into.
        cap: no level gets more than ``cap`` times the mean energy per level (>= 1).
        seed: seed of the random rotations.
        device: torch device of the matrix (default CPU).

    Raises:
        ValueError: a non-positive d or n_levels, n_levels not dividing d, or cap below 1.
    """

    def __init__(self, d: int, n_levels: int, *, cap: float = 8.0, seed: int = 1234, device=None):
        for name, v in (("d", d), ("n_levels", n_levels)):
            positive_int(v, name)
        if d % n_levels:
            raise ValueError(f"n_levels must divide d={d}, got n_levels={n_levels}")
        if not float(cap) >= 1.0:
            raise ValueError(f"cap must be >= 1, got {cap!r}")
        self.d, self.n_levels, self.cap, self.seed = int(d), int(n_levels), float(cap), int(seed)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.matrix = torch.empty(0, device=self.device)  # (d, d): y = x @ matrix

    @property
    def is_trained(self) -> bool:
        """True once the (d, d) matrix is set."""
        return self.matrix.shape == (self.d, self.d)

    @property
    def d_in(self) -> int:  # Faiss's VectorTransform fields
        """Input dimension (Faiss's VectorTransform.d_in)."""
        return self.d

    @property
    def d_out(self) -> int:
        """Output dimension, equal to d_in (a rotation)."""
        return self.d

    def train(self, x) -> None:
        """Learn the rotation from x (n >= 2, d): PCA order, then level-mixing rotations that cap each
        level's energy at ``cap`` times the mean, then a random rotation inside each level.
        """
        x, _ = float_rows(x, self.d, "cpu")
        if x.shape[0] < 2:
            raise ValueError(f"x must have at least 2 rows to train, got {x.shape[0]}")
        x64 = x.detach().to(torch.float64)
        cov = torch.cov(x64.T)
        evals, evecs = torch.linalg.eigh(cov)
        order = torch.argsort(evals, descending=True)
        W = evecs[:, order]
        # Centred energy: PQ codes residuals, whose spread (not the data mean) loads the sub-quantizers.
        C = W.T @ cov @ W
        gen = torch.Generator().manual_seed(self.seed)
        dl = self.d // self.n_levels
        limit = self.cap * torch.trace(C) / self.d * dl
        for lvl in range(self.n_levels - 1):
            a, b = lvl * dl, (lvl + 2) * dl
            for _ in range(8):  # each mixing roughly halves the excess; a few rounds suffice
                if C[a:a + dl, a:a + dl].trace() <= limit:
                    break
                R = torch.eye(self.d, dtype=torch.float64)
                R[a:b, a:b] = _random_rotation(b - a, gen)
                W, C = W @ R, R.T @ C @ R
        for lvl in range(self.n_levels):
            R = torch.eye(self.d, dtype=torch.float64)
            R[lvl * dl:(lvl + 1) * dl, lvl * dl:(lvl + 1) * dl] = _random_rotation(dl, gen)
            W = W @ R
        self.matrix = W.float().to(self.device)

    def set_matrix(self, matrix: torch.Tensor) -> None:
        """Use the given (d, d) orthogonal matrix (ValueError for another shape)."""
        m = torch.as_tensor(matrix, dtype=torch.float32)
        if tuple(m.shape) != (self.d, self.d):
            raise ValueError(f"matrix must have shape ({self.d}, {self.d}), got {tuple(m.shape)}")
        self.matrix = m.to(self.device)

    def _rows(self, x):
        if not self.is_trained:
            raise ValueError("the PanoramaTransform must be trained first")
        return float_rows(x, self.d, self.device)

    def apply(self, x):
        """y = x @ matrix (numpy in, numpy out; tensors stay tensors)."""
        x, was_numpy = self._rows(x)
        return back(x @ self.matrix, was_numpy)

    def reverse(self, y):
        """x = y @ matrix.T, the inverse of apply (numpy in, numpy out)."""
        y, was_numpy = self._rows(y)
        return back(y @ self.matrix.T, was_numpy)

    reverse_transform = reverse  # Faiss's name

    def level_energy(self, x: torch.Tensor) -> torch.Tensor:
        """Fraction of the squared norm of ``apply(x)`` in each level (diagnostics, benchmarks)."""
        y = self.apply(x).pow(2).view(x.shape[0], self.n_levels, -1).sum(-1).sum(0)
        return y / y.sum()

    def to(self, device) -> "PanoramaTransform":
        """Move the matrix to ``device`` in place; returns self."""
        self.device = torch.device(device)
        self.matrix = self.matrix.to(self.device)
        return self
