"""Shared fixtures: seeded clustered data (never only i.i.d. Gaussian) and exact ground truth. The
MiniLM files and recall are the benchmarks' own (benchmarks/datasets.py, benchmarks/common.py); the
clustered law and the float64 brute force stay here (the golden results are recorded on them)."""
from __future__ import annotations

import asyncio
import hashlib
import re

import numpy as np
import pytest
import torch

from benchmarks.common import recall_at_k as _recall_at_k
from benchmarks.datasets import DatasetUnavailable, find_minilm_shards


def clustered(n: int, d: int, *, centres: int = 50, seed: int = 0) -> np.ndarray:
    """Gaussian mixture with varied spreads, float32."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32) * 4
    spread = rng.uniform(0.3, 1.5, centres).astype(np.float32)
    which = rng.integers(0, centres, n)
    return (c[which] + rng.standard_normal((n, d)).astype(np.float32) * spread[which, None]).astype(np.float32)


def minilm_sample(n: int) -> np.ndarray:
    """n seeded rows of the first MiniLM shard, found as the benchmarks find it ($BENCH_DATA_DIR, else
    .data/ in the checkout); skips the test where none is found."""
    try:
        files = find_minilm_shards(1)
    except DatasetUnavailable as e:
        pytest.skip(f"{e}; set BENCH_DATA_DIR to a folder holding them")
    x = np.load(files[0], mmap_mode="r")
    rows = np.sort(np.random.default_rng(0).choice(x.shape[0], n, replace=False))
    return np.asarray(x[rows], dtype=np.float32)


def exact_knn(xb: np.ndarray, xq: np.ndarray, k: int, metric: str = "l2"):
    """Float64 brute force: (D, I) in Faiss conventions."""
    xb64, xq64 = xb.astype(np.float64), xq.astype(np.float64)
    if metric == "cosine":
        xb64 = xb64 / np.linalg.norm(xb64, axis=1, keepdims=True)
        xq64 = xq64 / np.linalg.norm(xq64, axis=1, keepdims=True)
    if metric == "l2":
        s = -((xq64 ** 2).sum(1)[:, None] + (xb64 ** 2).sum(1)[None, :] - 2 * xq64 @ xb64.T)
    else:
        s = xq64 @ xb64.T
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    D = np.take_along_axis(s, idx, 1)
    return (-D if metric == "l2" else D), idx


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Recall@k, k = truth's width."""
    return _recall_at_k(found, truth, truth.shape[1])


@pytest.fixture(scope="session")
def data_small():
    xb = clustered(4000, 32, seed=1)
    xq = clustered(100, 32, seed=2)
    return xb, xq


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA/ROCm device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def devices():
    """CPU always; the GPU too when one exists (GPU params are marked so CI skips them)."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def assert_knn_equal(D, I, De, Ie, *, rtol=1e-4, atol=1e-3, full=None):
    """Same neighbours, ties aside: distances agree everywhere, ids wherever no near-tie exists.

    ``full`` = (distances, ids) of every stored vector per query lets a swapped id be checked
    against its own true distance (needed when a tie straddles the k-th position)."""
    D, I, De, Ie = (np.asarray(a) for a in (D, I, De, Ie))
    np.testing.assert_allclose(D, De, rtol=rtol, atol=atol)
    for r, c in zip(*np.nonzero(I != Ie)):
        if full is not None:
            where = np.nonzero(full[1][r] == I[r, c])[0]
            assert len(where) == 1, (r, c, "returned id is not stored")
            assert np.isclose(full[0][r, where[0]], De[r, c], rtol=rtol, atol=atol), (r, c)
        else:  # the swapped neighbour must sit at (almost) the same distance as another: a tie
            assert np.isclose(De[r], D[r, c], rtol=rtol, atol=atol).sum() >= 2 or Ie[r, c] in I[r], (r, c)


def word_hash_vector(text: str, dim: int) -> np.ndarray:
    """Deterministic fake embedding: a bag of hashed words, so texts sharing words are close."""
    v = np.full(dim, 1e-3)
    for word in re.findall(r"\w+", text.lower()):
        h = int(hashlib.md5(word.encode()).hexdigest(), 16)
        v[h % dim] += 1.0 + (h >> 8) % 3
    return v


async def ticks_during(awaitable, ticks: int = 10) -> int:
    """How many 10 ms event-loop ticks ran while awaitable did: all of them if it stayed off the loop."""
    count = 0

    async def ticker():
        nonlocal count
        for _ in range(ticks):
            await asyncio.sleep(0.01)
            count += 1

    await asyncio.gather(awaitable, ticker())
    return count


def grid_data(n=1200, d=16, seed=0):
    """(xb, xq) clustered on a 1/4 grid, with duplicate rows: every dot product and norm is exact in
    float32 whatever a GEMM's blocking, so duplicates score exactly alike in any index (with raw
    floats they differ in the last bit by column position). For the sharded-index tests."""
    xb = np.round(clustered(n, d, centres=12, seed=seed) * 4) / 4
    if n >= 30:  # duplicates across shard boundaries
        xb[n // 3 + 1] = xb[n // 3 - 2]
        xb[2 * n // 3 + 5] = xb[5]
        xb[n - 1] = xb[5]
    xq = np.concatenate([np.round(clustered(40, d, centres=12, seed=seed + 1) * 4) / 4, xb[[5, max(n // 3 - 2, 0)]]])
    return xb.astype(np.float32), xq.astype(np.float32)


def _by_distance_then_label(D, I, largest):
    order = np.array([np.lexsort((i, -d if largest else d)) for d, i in zip(D, I)], dtype=np.int64).reshape(D.shape)
    return np.take_along_axis(D, order, 1), np.take_along_axis(I, order, 1)


def assert_same_knn(D, I, De, Ie, exact=True, largest=False):
    """Merged results (D, I) equal one index's (De, Ie). One index keeps the first stored of equal
    scores at its k-th cut but lists equal scores above it in torch.topk's order, so rows are compared
    in (distance, label) order; with exact, the merged rows must already be in that order."""
    D, I, De, Ie = (np.asarray(a) for a in (D, I, De, Ie))
    Dc, Ic = _by_distance_then_label(D, I, largest)
    Dec, Iec = _by_distance_then_label(De, Ie, largest)
    np.testing.assert_array_equal(Ic, Iec)
    if exact:
        np.testing.assert_array_equal(Ic, I)
        np.testing.assert_array_equal(Dc, Dec)
    else:
        np.testing.assert_allclose(Dc, Dec, rtol=1e-5, atol=1e-4)
