"""Product quantizer: d dims split into M sub-spaces, each quantized by its own 2**nbits centroids.

Codes are one uint8 per sub-quantizer (nbits <= 8; int32 up to Faiss's 16 bits), so a code row is directly the index into
each sub-codebook. Codes below 8 bits still take a byte each: scans index the tables with a byte
load, and standalone codes (sa_encode, to_faiss) are bit-packed as Faiss packs them.
Training runs k-means per sub-space on the training tensor's device.
"""
from __future__ import annotations

import numpy as np
import torch

from . import progress
from .arrays import back, float_rows, positive_int
from .kmeans import ClusteringParameters, cp_field

# (rows, M, ksub) distances per encoding step: 64 MB, whatever M and nbits (65536 rows at a time
# would need ~20 GB at M 96, 8 bits)
_CHUNK_ELEMENTS = 1 << 24


class ProductQuantizer:
    """``ProductQuantizer(d, M, nbits=8, *, device=None, seed=1234, niter=25, max_points_per_centroid=256)``:
    d dimensions split into M sub-spaces of d / M, each quantized to one of 2**nbits centroids
    (Faiss's ProductQuantizer: train, compute_codes, decode, code_size).

    Args:
        d: vector dimension (a multiple of M).
        M: number of sub-quantizers (bytes per code when nbits is 8).
        nbits: bits per sub-quantizer code, 1 to 16 (above 8, encode() gives int32 codes; IVF-PQ indexes
            take up to 8).
        device: torch device of the codebooks (default CPU).
        seed, niter, max_points_per_centroid: k-means settings of each sub-quantizer.

    Raises:
        ValueError: a non-positive d, M or nbits, M not dividing d, or nbits above 16.
    """

    def __init__(self, d: int, M: int, nbits: int = 8, *, device=None, seed: int = 1234, niter: int = 25,
                 max_points_per_centroid: int = 256):
        for name, v in (("d", d), ("M", M), ("nbits", nbits)):
            positive_int(v, name)
        if d % M:
            raise ValueError(f"M must divide d={d}, got M={M}")
        if nbits > 16:
            raise ValueError(f"nbits must be at most 16 (Faiss's limit), got {nbits}")
        self.d, self.M, self.nbits = int(d), int(M), int(nbits)
        self.dsub, self.ksub = self.d // self.M, 1 << self.nbits
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        # k-means settings of every sub-quantizer (Faiss's pq.cp); sub-space m is seeded cp.seed + m
        self.cp = ClusteringParameters(niter=niter, seed=seed, max_points_per_centroid=max_points_per_centroid)
        self.centroids = torch.empty(0, device=self.device)  # (M, ksub, dsub) once trained

    niter = cp_field("niter", "k-means iterations of each sub-quantizer (``cp.niter``).")
    seed = cp_field("seed", "k-means seed of sub-quantizer 0 (``cp.seed``; sub-quantizer m uses seed + m).")
    max_points_per_centroid = cp_field("max_points_per_centroid",
                                       "Training points kept per sub-centroid (``cp.max_points_per_centroid``).")

    @property
    def code_dtype(self) -> torch.dtype:
        """dtype of encode()'s one-per-sub-quantizer codes: uint8 up to 8 bits, int32 above."""
        return torch.uint8 if self.nbits <= 8 else torch.int32

    def sync_transposed_centroids(self) -> None:
        """Faiss's switch to a transposed codebook for faster compute_codes: the codes are the same
        either way, and encode() here is one batched GEMM already, so nothing changes."""

    def clear_transposed_centroids(self) -> None:
        """Undo sync_transposed_centroids (nothing to undo here)."""

    @property
    def is_trained(self) -> bool:
        """True once the (M, ksub, dsub) codebooks are set."""
        return self.centroids.shape == (self.M, self.ksub, self.dsub)

    @property
    def code_size(self) -> int:
        """Bytes per vector in Faiss's bit-packed layout (compute_codes)."""
        return (self.M * self.nbits + 7) // 8

    def _check(self, x, name: str = "x") -> torch.Tensor:
        return float_rows(x, self.d, self.device, name)[0]

    def _require_trained(self) -> None:
        if not self.is_trained:
            raise ValueError("the ProductQuantizer must be trained first")

    def compute_codes(self, x):
        """Faiss's compute_codes: (n, code_size) uint8 codes, bit-packed when nbits < 8 (numpy in, numpy out)."""
        self._require_trained()
        packed = pack_codes(self.encode(x).cpu().numpy(), self.nbits)
        return packed if isinstance(x, np.ndarray) else torch.from_numpy(packed).to(self.device)

    def train(self, x: torch.Tensor, *, verbose: bool | None = False) -> None:
        """Train the M sub-quantizers (k-means of 2**nbits centroids per sub-space) on x (n >= ksub, d).

        Args:
            x: (n, d) training vectors, numpy or tensor.
            verbose: a progress bar over the sub-quantizers: True always, False never, None for long
                runs on a terminal only.

        Raises:
            ValueError: x of the wrong shape, or fewer than ksub rows.
        """
        x = self._check(x)
        if x.shape[0] < self.ksub:
            raise ValueError(f"x must have at least ksub={self.ksub} rows to train the PQ, got {x.shape[0]}")
        progress.check_verbose(verbose)
        subs = x.view(x.shape[0], self.M, self.dsub)
        n = min(x.shape[0], self.ksub * self.max_points_per_centroid or x.shape[0])
        centroids = []
        with progress.bar(self.M, f"PQ training {self.M}x{self.nbits}", verbose=verbose, unit="subq",
                          work=progress.score_work(n, self.ksub, self.dsub) * self.M * self.niter) as shown:
            for m in range(self.M):
                centroids.append(self.cp.kmeans(subs[:, m].contiguous(), self.ksub, seed_offset=m))
                shown.update(1)
        self.centroids = torch.stack(centroids).to(self.device)

    def set_centroids(self, centroids: torch.Tensor) -> None:
        """Use the given (M, ksub, dsub) centroids (ValueError for another shape)."""
        c = torch.as_tensor(centroids, dtype=torch.float32)
        if tuple(c.shape) != (self.M, self.ksub, self.dsub):
            raise ValueError(f"centroids must have shape {(self.M, self.ksub, self.dsub)}, got {tuple(c.shape)}")
        self.centroids = c.to(self.device).contiguous()

    def encode(self, x: torch.Tensor, *, verbose: bool | None = False) -> torch.Tensor:
        """uint8 codes (n, M) tensor: nearest sub-centroid per sub-space (L2).

        Args:
            x: (n, d) vectors, numpy or tensor.
            verbose: a progress bar over the rows: True always, False never, None for long runs on a
                terminal only.
        """
        self._require_trained()
        x = self._check(x)
        progress.check_verbose(verbose)
        cn = self.centroids.pow(2).sum(-1)  # (M, ksub)
        out = torch.empty(x.shape[0], self.M, dtype=self.code_dtype, device=self.device)
        step = max(1, _CHUNK_ELEMENTS // (self.M * self.ksub))
        work = progress.score_work(x.shape[0], self.ksub, self.dsub) * self.M
        with progress.bar(x.shape[0], "PQ encoding", verbose=verbose, work=work, unit="vec") as shown:
            for a in range(0, x.shape[0], step):
                sub = x[a:a + step].view(-1, self.M, self.dsub).transpose(0, 1)  # (M, n, dsub)
                dots = torch.bmm(sub, self.centroids.transpose(1, 2))  # (M, n, ksub)
                out[a:a + step] = (cn[:, None, :] - 2 * dots).argmin(-1).T.to(self.code_dtype)
                shown.update(min(step, x.shape[0] - a))
        return out

    def decode(self, codes):
        """(n, d) float32 reconstruction of codes: one byte per sub-quantizer (n, M), or Faiss's packed
        (n, code_size) from compute_codes (narrower than M whenever nbits < 8). numpy in, numpy out."""
        self._require_trained()
        was_numpy = isinstance(codes, np.ndarray)
        if codes.ndim != 2 or codes.shape[1] not in (self.M, self.code_size):
            raise ValueError(f"codes must have shape (n, {self.M}) or (n, {self.code_size}), got {tuple(codes.shape)}")
        if codes.shape[1] != self.M:
            codes = unpack_codes(np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes), self.M, self.nbits)
        idx = torch.as_tensor(codes).to(self.device).long()
        sub = self.centroids[torch.arange(self.M, device=idx.device), idx]  # (n, M, dsub)
        out = sub.reshape(codes.shape[0], self.d)
        return out.cpu().numpy() if was_numpy else out

    def inner_tables(self, q: torch.Tensor) -> torch.Tensor:
        """(M, nq, ksub) look-up tables <q_m, C_m[j]> (the query-dependent part of every ADC score),
        in the layout the batched GEMM writes: a query's table for sub-quantizer m is one row."""
        sub = q.view(q.shape[0], self.M, self.dsub).transpose(0, 1)  # (M, nq, dsub)
        return torch.bmm(sub, self.centroids.transpose(1, 2))

    def compute_inner_prod_tables(self, x):
        """Faiss's per-query tables (n, M, ksub) of <x_m, C_m[j]>."""
        self._require_trained()
        q, was_numpy = float_rows(x, self.d, self.device)
        return back(self.inner_tables(q).transpose(0, 1), was_numpy)

    def compute_distance_tables(self, x):
        """Faiss's per-query tables (n, M, ksub) of ||x_m - C_m[j]||^2."""
        self._require_trained()
        q, was_numpy = float_rows(x, self.d, self.device)
        qn = q.view(q.shape[0], self.M, self.dsub).pow(2).sum(-1)  # (n, M)
        t = qn[:, :, None] - 2 * self.inner_tables(q).transpose(0, 1) + self.centroids.pow(2).sum(-1)[None]
        return back(t.clamp_min(0), was_numpy)

    def to(self, device) -> "ProductQuantizer":
        """Move the codebooks to ``device`` in place; returns self."""
        self.device = torch.device(device)
        self.centroids = self.centroids.to(self.device)
        return self


def pack_codes(codes: np.ndarray, nbits: int) -> np.ndarray:
    """Faiss's bit-packed code layout (little-endian bit stream) from one-integer-per-sub-quantizer codes."""
    if nbits == 8:
        return np.asarray(codes, dtype=np.uint8).copy()
    codes = np.asarray(codes).astype(np.int64)
    n, M = codes.shape
    bits = ((codes[:, :, None] >> np.arange(nbits)) & 1).astype(np.uint8).reshape(n, M * nbits)
    pad = (-bits.shape[1]) % 8
    bits = np.pad(bits, ((0, 0), (0, pad)))
    return np.packbits(bits, axis=1, bitorder="little")


def unpack_codes(packed: np.ndarray, M: int, nbits: int) -> np.ndarray:
    """Inverse of pack_codes: (n, code_size) bytes -> (n, M) sub-quantizer indices (uint8 up to 8 bits,
    int32 above)."""
    packed = np.asarray(packed, dtype=np.uint8)
    if nbits == 8:
        return packed[:, :M].copy()
    bits = np.unpackbits(packed, axis=1, bitorder="little")[:, : M * nbits].reshape(-1, M, nbits)
    out = (bits.astype(np.int64) << np.arange(nbits)).sum(-1)
    return out.astype(np.uint8 if nbits <= 8 else np.int32)
