"""GPU small batches (skipped without CUDA): the row-chunked and row-span scans and the CUDA-graph
replay of every index type return what the unsplit, uncaptured paths return."""
import numpy as np
import pytest
import torch
from conftest import assert_knn_equal, clustered
from test_gpu import _assert_kernel_matches_torch, _assert_searches_match_torch

import torch_ivf as ti
from torch_ivf.search import cost, graphs

pytestmark = pytest.mark.gpu


def _indexes(d=32):
    return {
        "ivfflat": ti.IndexIVFFlat(d, 32, nprobe=8, device="cuda"),
        "ivfpq": ti.IndexIVFPQ(d, 32, 8, 8, nprobe=8, device="cuda"),
        "pano": ti.IndexIVFPQPanorama(d, 32, 8, 8, 4, nprobe=8, device="cuda"),
        "flatpano": ti.IndexIVFFlatPanorama(d, 32, 4, nprobe=8, device="cuda"),
        "refine": ti.IndexRefine(ti.IndexIVFPQ(d, 32, 8, 8, nprobe=8, device="cuda"), k_factor=4),
        "flat": ti.IndexFlat(d, device="cuda"),
    }


@pytest.mark.parametrize("name", ["ivfflat", "ivfpq", "pano", "flatpano", "refine", "flat"])
@pytest.mark.parametrize("nq", [1, 5, 64])
def test_graphed_small_batches_equal_uncaptured(name, nq, monkeypatch):
    xb = clustered(4000, 32, seed=3)
    xq = xb[:nq] + 0.05
    index = _indexes()[name]
    index.train(xb)
    index.add(xb)
    q = torch.as_tensor(xq).cuda()
    D1, I1 = index.search(q, 10)
    D1, I1 = index.search(q, 10)  # replayed
    captured = index.__dict__.get("_graphs", {})
    assert captured and all(entry is not False for entry in captured.values())  # every capture succeeded
    monkeypatch.setattr(graphs, "GRAPH_MAX_NQ", 0)
    D2, I2 = index.search(q, 10)
    assert_knn_equal(D1.cpu(), I1.cpu(), D2.cpu(), I2.cpu(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("chunk", [64, 128, 0])
def test_flat_row_chunks_match_torch(chunk, monkeypatch):
    xb = clustered(6000, 32, seed=4)
    monkeypatch.setattr(cost, "flat_chunk_rows", lambda *a: chunk)
    monkeypatch.setattr(cost, "flat_probe_rows", lambda *a, **kw: 0)  # the list-major kernel
    _assert_kernel_matches_torch(ti.IndexIVFFlat(32, 16, nprobe=6, device="cuda"), xb, xb[:40] + 0.05)


@pytest.mark.parametrize("rows", [64, 128, 256])
@pytest.mark.parametrize("metric,dtype", [("l2", torch.float32), ("ip", torch.float32), ("l2", torch.float16)])
@pytest.mark.parametrize("nq", [1, 7, 64])
def test_query_major_scan_matches_torch(rows, metric, dtype, nq, monkeypatch):
    """One program per (query, tile of a probed list), probe table read in the kernel: plain,
    filtered and max_codes searches as the torch path, graphed or not."""
    xb = clustered(6000, 48, seed=6)
    monkeypatch.setattr(cost, "flat_probe_rows", lambda *a, **kw: rows)
    _assert_kernel_matches_torch(ti.IndexIVFFlat(48, 16, metric, nprobe=6, device="cuda", dtype=dtype), xb,
                                 xb[:nq] + 0.05)


def test_query_major_scan_is_the_small_batch_default():
    from torch_ivf.kernels import flat_scan
    xb = clustered(6000, 32, seed=7)
    index = ti.IndexIVFFlat(32, 16, nprobe=6, device="cuda")
    index.train(xb)
    index.add(xb)
    calls = []
    real = flat_scan.flat_probe_scan
    try:
        flat_scan.flat_probe_scan = lambda *a, **kw: calls.append(1) or real(*a, **kw)
        index.search(torch.as_tensor(xb[:3]).cuda(), 10)
        assert calls
        calls.clear()
        index.search(torch.as_tensor(np.repeat(xb, 2, 0)[:10_000]).cuda(), 10)  # list-major above
        assert not calls
    finally:
        flat_scan.flat_probe_scan = real


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("kind", ["flat", "sq8"])
def test_exact_one_query_kernel_matches_torch(metric, kind, monkeypatch):
    xb = clustered(20000, 40, seed=8)
    index = ti.IndexFlat(40, metric, device="cuda") if kind == "flat" else \
        ti.IndexScalarQuantizer(40, "QT_8bit", metric, device="cuda")
    index.train(xb)
    index.add(xb)
    monkeypatch.setitem(cost.figures(index.device), "flat_exact_kernel_nq", 1)
    assert index._probe_kernel(1, 10)
    for row in range(3):
        _assert_searches_match_torch(index, torch.as_tensor(xb[row:row + 1] + 0.05).cuda(),
                                     (ti.SearchParams(), ti.SearchParams(allowed=np.arange(0, 20000, 3))))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e30])
@pytest.mark.parametrize("name", ["ivfflat", "flat", "ivfpq"])
def test_bad_gpu_queries_refused_after_the_deferred_check(bad, name):
    """The magnitude check of GPU queries finishes after the search is queued: still a ValueError,
    the caller's D / I untouched, and the next search unaffected."""
    xb = clustered(4000, 32, seed=9)
    index = _indexes()[name]
    index.train(xb)
    index.add(xb)
    q = torch.as_tensor(xb[:2] + 0.05).cuda()
    good = index.search(q, 5)
    q_bad = q.clone()
    q_bad[1, 3] = bad
    D = torch.full((2, 5), 7.0, device="cuda")
    I = torch.full((2, 5), 7, dtype=torch.int64, device="cuda")
    with pytest.raises(ValueError):
        index.search(q_bad, 5, D=D, I=I)
    assert bool((D == 7).all()) and bool((I == 7).all())
    again = index.search(q, 5)
    assert torch.equal(again[1], good[1])


@pytest.mark.parametrize("k", [10, 80])  # 80: past the seeded scan's tile, the nearest list is a wave of its own
@pytest.mark.parametrize("span", [64, 256, 0])
def test_split_pq_scans_give_panorama_identical_results(span, k, monkeypatch):
    xb = clustered(5000, 32, seed=5)
    xq = xb[:20] + 0.05
    pano = ti.IndexIVFPQPanorama(32, 16, 8, 8, 4, nprobe=6, device="cuda")
    pano.train(xb)
    pano.add(xb)
    pq = ti.IndexIVFPQ(32, 16, 8, 8, nprobe=6, device="cuda")
    pq.centroids = pano.centroids.clone()
    pq.pq.set_centroids(pano.pq.centroids)
    q = torch.as_tensor(xq).cuda()
    qt = pano._transform(q)
    pq.add(pano._transform(torch.as_tensor(xb).cuda()))
    monkeypatch.setattr(cost, "pq_span", lambda *a: span)
    monkeypatch.setattr(graphs, "GRAPH_MAX_NQ", 0)
    for params in (ti.SearchParams(), ti.SearchParams(allowed=np.arange(0, len(xb), 3)), ti.SearchParams(max_codes=900)):
        Dp, Ip = pano.search(q, k, params=params)
        Dq, Iq = pq.search(qt, k, params=params)
        assert torch.equal(Ip, Iq) and torch.equal(Dp, Dq)
    assert pano.panorama_stats.ratio_dims_scanned <= 1.0


@pytest.mark.parametrize("kind", ["ivfpq", "pano"])
def test_pq_kernels_filter_by_slab_row(kind):
    """The search's allowed mask has one entry per slab row: the PQ kernels read it at the row (they
    read it at the label once, which picked the wrong rows as soon as labels and rows differed)."""
    xb = clustered(5000, 32, seed=6)
    index = _indexes()[kind]
    index.train(xb)
    index.add(xb[:2500])
    index.add_with_ids(xb[2500:], torch.arange(10_000, 12_500))  # labels far from slab rows
    index.remove_ids(torch.arange(0, 2500, 7))
    allowed = np.concatenate([np.arange(0, 2500, 3), np.arange(10_000, 12_500, 3)])
    xq = xb[:30] + 0.05
    _assert_searches_match_torch(index, xq, [ti.SearchParams(allowed=allowed)])
    assert np.isin(index.search(xq, 10, params=ti.SearchParams(allowed=allowed))[1], allowed).all()  # numpy in, out
