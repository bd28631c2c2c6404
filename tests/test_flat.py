"""Flat indexes: identical ids to faiss-cpu and to float64 brute force (ties aside)."""
import numpy as np
import pytest
import torch
from conftest import clustered, devices, exact_knn

import torch_ivf as ti

faiss = pytest.importorskip("faiss")


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("device", devices())
def test_flat_matches_bruteforce_and_faiss(metric, device):
    xb, xq = clustered(3000, 48, seed=3), clustered(64, 48, seed=4)
    index = ti.IndexFlat(48, metric, device=device)
    index.add(xb)
    D, I = index.search(xq, 10)
    assert isinstance(D, np.ndarray) and D.dtype == np.float32 and I.dtype == np.int64
    De, Ie = exact_knn(xb, xq, 10, metric)
    assert (I == Ie).mean() > 0.999
    np.testing.assert_allclose(D, De, rtol=1e-4, atol=1e-3)
    if metric == "cosine":
        xb_n = xb / np.linalg.norm(xb, axis=1, keepdims=True)
        xq_n = xq / np.linalg.norm(xq, axis=1, keepdims=True)
        f = faiss.IndexFlatIP(48)
        f.add(xb_n)
        Df, If = f.search(xq_n, 10)
    else:
        f = faiss.IndexFlatL2(48) if metric == "l2" else faiss.IndexFlatIP(48)
        f.add(xb)
        Df, If = f.search(xq, 10)
    assert (I == If).mean() > 0.999
    np.testing.assert_allclose(D, Df, rtol=1e-4, atol=1e-3)


def test_seed_import_path_and_named_classes():
    from torch_ivf.index import IndexFlatIP, IndexFlatL2, IndexIVFFlat  # the earlier package's path
    assert IndexFlatL2(8).metric == "l2" and IndexFlatIP(8).metric == "ip"
    assert IndexIVFFlat(8, 4).nlist == 4


def test_tensor_in_tensor_out_on_index_device():
    index = ti.IndexFlatL2(16)
    x = torch.randn(100, 16, dtype=torch.float64)
    index.add(x)
    D, I = index.search(x[:5].T.contiguous().T, 3)  # non-contiguous float64 query
    assert isinstance(D, torch.Tensor) and D.device == index.device and D.dtype == torch.float32
    assert I[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_missing_results_are_minus_one_and_float_max_as_faiss():
    index = ti.IndexFlatL2(4)
    index.add(np.eye(4, dtype=np.float32))
    D, I = index.search(np.zeros((1, 4), np.float32), 6)
    assert I[0, 4:].tolist() == [-1, -1] and (D[0, 4:] == np.finfo(np.float32).max).all()
    ip = ti.IndexFlatIP(4)
    ip.add(np.eye(4, dtype=np.float32))
    D, I = ip.search(np.ones((1, 4), np.float32), 5)
    assert I[0, 4] == -1 and D[0, 4] == -np.finfo(np.float32).max


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_storage_close_to_float32(dtype):
    xb, xq = clustered(2000, 32, seed=5), clustered(50, 32, seed=6)
    ref = ti.IndexFlatL2(32)
    ref.add(xb)
    half = ti.IndexFlatL2(32, dtype=dtype)
    half.add(xb)
    _, I32 = ref.search(xq, 10)
    _, I16 = half.search(xq, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(I32, I16)]) > 0.97


def test_range_search_matches_bruteforce():
    xb, xq = clustered(1000, 16, seed=7), clustered(20, 16, seed=8)
    index = ti.IndexFlatL2(16)
    index.add(xb)
    De, _ = exact_knn(xb, xq, 1000, "l2")
    radius = float(np.median(De[:, 20]))
    lims, D, I = index.range_search(xq, radius)
    f = faiss.IndexFlatL2(16)
    f.add(xb)
    flims, fD, fI = f.range_search(xq, radius)
    for i in range(len(xq)):
        ours = set(I[lims[i]:lims[i + 1]].tolist())
        theirs = set(fI[flims[i]:flims[i + 1]].tolist())
        assert len(ours ^ theirs) <= 1  # a point exactly on the radius may fall either way
    assert (D < radius).all()
