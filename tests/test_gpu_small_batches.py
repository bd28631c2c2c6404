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
    _assert_kernel_matches_torch(ti.IndexIVFFlat(32, 16, nprobe=6, device="cuda"), xb, xb[:40] + 0.05)


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
