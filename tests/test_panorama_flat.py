"""IVFFlatPanorama: same results as faiss-cpu's released IndexIVFFlatPanorama and as our IndexIVFFlat
(same centroids), real pruning on PCA-like data, persistence, bad input."""
import numpy as np
import pytest
import torch
from conftest import clustered, devices
from test_pq import assert_knn_equal

import torch_ivf as ti

faiss = pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def data():
    xb = clustered(6000, 64, centres=80, seed=41)
    xq = clustered(200, 64, centres=80, seed=42)
    # front-load energy (what a PCA does) so that pruning has something to work with
    scale = np.exp(-np.arange(64) / 12).astype(np.float32)
    return xb * scale, xq * scale


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_matches_faiss_ivf_flat_panorama(data, metric):
    xb, xq = data
    fm = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    q = faiss.IndexFlat(64, fm)
    f = faiss.IndexIVFFlatPanorama(q, 64, 32, 8, fm)
    f.train(xb)
    f.add(xb)
    ours = ti.IndexIVFFlatPanorama(64, 32, 8, metric)
    ours.centroids = torch.from_numpy(q.reconstruct_n(0, 32))
    ours.add(xb)
    flat = ti.IndexIVFFlat(64, 32, metric)
    flat.centroids = ours.centroids.clone()
    flat.add(xb)
    for mode in ("grouped", "matrix"):
        ours.search_mode = mode
        for nprobe in (1, 4, 16):
            f.nprobe = nprobe
            Df, If = f.search(xq, 10)
            D, I = ours.search(xq, 10, params=ti.SearchParams(nprobe=nprobe))
            assert_knn_equal(D, I, Df, If, rtol=1e-4, atol=1e-4)
            assert_knn_equal(D, I, *flat.search(xq, 10, params=ti.SearchParams(nprobe=nprobe)), rtol=1e-4, atol=1e-4)
            if nprobe == 16:
                assert ours.panorama_stats.ratio_dims_scanned < 0.7


@pytest.mark.parametrize("device", devices())
def test_transform_filters_persistence(data, tmp_path, device):
    xb, xq = data
    index = ti.index_factory(64, "PanoramaT,IVF16,FlatPanorama8", "cosine", device=device, nprobe=8)
    index.train(xb)
    index.add(xb)
    flat = ti.IndexIVFFlat(64, 16, "cosine", device=device, nprobe=8)
    flat.centroids = index.centroids.clone()
    flat.add(index._transform(index._vectors(xb)[0]))
    xqt = index._transform(index._vectors(xq)[0])
    allowed = np.arange(0, 6000, 5)
    p = ti.SearchParams(allowed=allowed)
    D, I = index.search(xq, 10, params=p)
    Dr, Ir = flat.search(xqt.cpu().numpy(), 10, params=p)
    assert_knn_equal(D, I, Dr, Ir, rtol=1e-4, atol=1e-4)
    assert np.isin(I, allowed).all()
    if ti.kernels.available(torch.device(device)):  # GPUs with Triton: IVFFlat's kernel, no pruning
        assert index.panorama_stats.ratio_dims_scanned == 1.0
    index.save(tmp_path / "f.tivf")
    back = ti.read_index(tmp_path / "f.tivf", device=device)
    assert np.array_equal(back.search(xq, 10, params=p)[1], I)
    np.testing.assert_allclose(index.reconstruct(3).cpu().numpy(), xb[3] / np.linalg.norm(xb[3]), atol=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="n_levels"):  # the transform's blocks must divide d
        ti.IndexIVFFlatPanorama(64, 16, 7, transform=True)
    with pytest.raises(ValueError, match="n_levels"):
        ti.IndexIVFFlatPanorama(64, 16, 65)
    with pytest.raises(ValueError, match="norm_dtype"):
        ti.IndexIVFFlatPanorama(64, 16, 8, norm_dtype="bf16")
