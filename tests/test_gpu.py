"""GPU-only checks (skipped without CUDA/ROCm): the Triton fast path equals the torch reference."""
import numpy as np
import pytest
import torch
from conftest import assert_knn_equal, clustered

import torch_ivf as ti
from torch_ivf import kernels

pytestmark = pytest.mark.gpu


def _assert_kernel_matches_torch(index, xb, xq):
    """Searches with the Triton path and with kernels disabled agree (plain, filtered, max_codes)."""
    index.train(xb)
    index.add(xb)
    allowed = np.arange(0, len(xb), 3)
    _assert_searches_match_torch(index, xq, (ti.SearchParams(), ti.SearchParams(allowed=allowed),
                                             ti.SearchParams(max_codes=1500)))


def _assert_searches_match_torch(index, xq, params_list):
    """A filled index searched with the Triton path and with kernels disabled: the same neighbours."""
    for params in params_list:
        D1, I1 = index.search(xq, 10, params=params)
        kernels.enabled = False
        try:
            D2, I2 = index.search(xq, 10, params=params)
        finally:
            kernels.enabled = True
        assert_knn_equal(D1, I1, D2, I2, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triton_matrix_scan_matches_torch_path(metric, dtype):
    xb, xq = clustered(30000, 72, centres=300, seed=31), clustered(300, 72, centres=300, seed=32)
    _assert_kernel_matches_torch(
        ti.IndexIVFFlat(72, 64, metric, nprobe=6, device="cuda", dtype=dtype, search_mode="matrix"), xb, xq)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("qtype", ["QT_8bit", "QT_8bit_uniform", "QT_fp16", "QT_bf16", "QT_8bit_direct",
                                   "QT_8bit_direct_signed"])
@pytest.mark.parametrize("by_residual", [True, False])
def test_triton_sq_scan_matches_torch_path(metric, qtype, by_residual):
    xb, xq = clustered(30000, 72, centres=300, seed=37), clustered(300, 72, centres=300, seed=38)
    index = ti.IndexIVFScalarQuantizer(72, 64, qtype, metric, by_residual, nprobe=6, device="cuda",
                                       search_mode="matrix")
    assert index.scanner.kernel_scan
    _assert_kernel_matches_torch(index, xb, xq)


def test_all_modes_agree_on_gpu():
    xb, xq = clustered(20000, 32, centres=200, seed=33), clustered(500, 32, centres=200, seed=34)
    index = ti.IndexIVFFlat(32, 50, nprobe=8, device="cuda")
    index.train(xb)
    index.add(xb)
    ref = None
    for mode in ("grouped", "matrix", "auto"):
        index.search_mode = mode
        D, I = index.search(torch.from_numpy(xq).cuda(), 10)
        assert D.is_cuda and I.is_cuda
        if ref is None:
            ref = (D.cpu().numpy(), I.cpu().numpy())
        else:
            assert_knn_equal(D.cpu().numpy(), I.cpu().numpy(), *ref, atol=1e-2)


def test_graphed_small_batches_match_and_follow_updates():
    xb, xq = clustered(20000, 32, centres=200, seed=35), clustered(64, 32, centres=200, seed=36)
    index = ti.IndexIVFFlat(32, 50, nprobe=8, device="cuda", search_mode="matrix")
    index.train(xb)
    index.add(xb[:10000])
    q = torch.from_numpy(xq).cuda()
    for nq in (1, 7, 64):
        D1, I1 = index.search(q[:nq], 10)  # captured
        D2, I2 = index.search(q[:nq], 10)  # replayed
        D3, I3 = index._search_core(q[:nq], 10, 8, 0, None, "matrix")  # not graphed
        assert torch.equal(I1, I2) and torch.equal(I1, I3) and torch.equal(D1, D3)
    index.add(xb[10000:])  # the graph must not serve stale lists
    D4, I4 = index.search(q[:7], 10)
    D5, I5 = index._search_core(q[:7], 10, 8, 0, None, "matrix")
    assert torch.equal(I4, I5) and torch.equal(D4, D5)


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("k", [1, 17, 100, 130])
def test_flat_list_kernel_on_long_lists(metric, k):
    """IVFFlat's list-GEMM kernel keeps a query's best rows per list on chip (k rounded up to a power of
    two, up to 128; larger k take the torch scan): lists far longer than its 64-row tile, k on both
    sides of those limits, and every list probed (then it must agree with exact search)."""
    xb, xq = clustered(20000, 40, centres=6, seed=43), clustered(150, 40, centres=6, seed=44)
    index = ti.IndexIVFFlat(40, 12, metric, device="cuda", search_mode="matrix", niter=5)
    index.train(xb)
    index.add(xb)
    assert index.invlists.max_size > 1000
    flat = ti.IndexFlat(40, metric)
    flat.add(xb)
    De, Ie = flat.search(xq, k)
    for nprobe in (3, 12):
        D1, I1 = index.search(xq, k, params=ti.SearchParams(nprobe=nprobe))
        kernels.enabled = False
        try:
            D2, I2 = index.search(xq, k, params=ti.SearchParams(nprobe=nprobe))
        finally:
            kernels.enabled = True
        assert_knn_equal(D1, I1, D2, I2, rtol=1e-4, atol=1e-2)
    assert_knn_equal(D1, I1, De, Ie, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("cols,k", [(1, 1), (37, 10), (1000, 10), (8192, 32), (5, 10)])
def test_triton_row_topk_matches_torch(cols, k):
    from torch_ivf.kernels.row_topk import row_topk
    x = torch.randn(3, 50, cols, device="cuda")
    x[0, :, : cols // 2] = float("-inf")
    kk = min(k, cols)
    v, i = row_topk(x, kk)
    ref = x.topk(kk, dim=-1)
    assert torch.equal(v, ref.values)
    assert torch.equal(x.gather(-1, i), v)  # indices point at the values (ties may order differently)


def test_graphed_flat_matches_ungraphed():
    xb, xq = clustered(5000, 48, seed=37), clustered(16, 48, seed=38)
    index = ti.IndexFlat(48, "cosine", device="cuda")
    index.add(xb)
    q = torch.nn.functional.normalize(torch.from_numpy(xq).cuda(), dim=1)
    for nq in (1, 16):
        D1, I1 = index.search(q[:nq], 5)
        D2, I2 = index._search_core(q[:nq], 5, 1, 0, None, "grouped")
        assert torch.equal(I1, I2) and torch.allclose(D1, D2)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("min_queries", [8, 10**9])
def test_triton_pq_scan_matches_torch_path(metric, min_queries, monkeypatch):
    """IVFPQ's kernels (look-ups, and decode + GEMM for lists many queries probe) agree with the torch ADC."""
    monkeypatch.setattr("torch_ivf.kernels.pq_lists.MIN_QUERIES", min_queries)
    xb, xq = clustered(20000, 64, centres=200, seed=41), clustered(300, 64, centres=200, seed=42)
    _assert_kernel_matches_torch(
        ti.IndexIVFPQ(64, 64, 16, 8, metric, nprobe=6, niter=5, pq_niter=5, device="cuda", search_mode="matrix"), xb, xq)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_triton_pq_long_lists_match_torch_path(metric):
    """A catch-all list that every query probes is scored by kernels.pq_lists (decode + GEMM)."""
    xb = clustered(20000, 64, centres=200, seed=41)
    xb[:4000] = xb.mean(0) + 0.05 * np.random.default_rng(3).standard_normal((4000, 64)).astype(np.float32)
    xq = clustered(300, 64, centres=200, seed=42)
    _assert_kernel_matches_torch(
        ti.IndexIVFPQ(64, 64, 16, 8, metric, nprobe=6, niter=5, pq_niter=5, device="cuda", search_mode="matrix"), xb, xq)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("d", [72, 33, 384])
def test_triton_refine_scores_match_torch_path(metric, dtype, d):
    """IndexRefine's re-scoring kernel and torch path agree with a float64 reference, -inf where invalid."""
    from torch_ivf.index.refine import _scores_torch
    from torch_ivf.kernels.refine_scores import refine_scores
    g = torch.Generator(device="cuda").manual_seed(d)
    q = torch.randn(7, d, device="cuda", generator=g)
    vectors = torch.randn(50, d, device="cuda", generator=g).to(dtype)
    rows = torch.randint(0, 50, (7, 13), device="cuda", generator=g)
    valid = torch.rand(7, 13, device="cuda", generator=g) > 0.3
    valid[3] = False  # a query with no candidate at all
    x, q64 = vectors.double()[rows], q.double()[:, None, :]
    exact = -(x - q64).pow(2).sum(-1) if metric == "l2" else (x * q64).sum(-1)
    scale = exact.abs() if metric == "l2" else (x * q64).abs().sum(-1)  # magnitude of the summed terms
    kernel = refine_scores(q, vectors, rows, valid, metric)
    assert torch.equal(kernel, refine_scores(q, vectors, rows.masked_fill(~valid, -1), valid, metric))
    for s in (kernel, _scores_torch(q, vectors, rows, valid, metric)):
        assert torch.equal(torch.isneginf(s), ~valid)
        assert ((s.double() - exact)[valid].abs() / scale[valid]).max() < 1e-5
