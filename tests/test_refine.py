"""IndexRefine (",RFlat"): exact re-ranking of k_factor * k candidates from a compressed index."""
import numpy as np
import pytest
import torch
from conftest import clustered, exact_knn, recall_at_k

import torch_ivf as ti


@pytest.fixture(scope="module")
def data():
    return clustered(4000, 32, centres=40, seed=31), clustered(150, 32, centres=40, seed=32)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_refine_improves_recall_and_returns_exact_distances(data, metric):
    xb, xq = data
    base = ti.IndexIVFPQ(32, 16, 4, 6, metric=metric, niter=4, pq_niter=4, nprobe=16)
    index = ti.IndexRefine(base, k_factor=8, refine_dtype=torch.float32)
    index.train(xb[:2000])
    index.add(xb)
    De, Ie = exact_knn(xb, xq, 10, metric)
    D0, I0 = base.search(xq, 10)
    D, I = index.search(xq, 10)
    assert recall_at_k(I, Ie) > recall_at_k(I0, Ie) + 0.1
    hit = I == Ie
    np.testing.assert_allclose(D[hit], De[hit], rtol=1e-4, atol=1e-3)


def test_refine_persistence_mutation_factory(data, tmp_path):
    xb, xq = data
    index = ti.index_factory(32, "IVF16,PQ8,RFlat", k_factor=4, niter=4, pq_niter=4)
    assert isinstance(index, ti.IndexRefine) and index.k_factor == 4
    index.train(xb[:2000])
    index.add_with_ids(xb, np.arange(len(xb)) * 2 + 1)
    assert index.remove_ids(np.arange(1, 200, 2)) == 100
    index.nprobe = 4
    D, I = index.search(xq, 10)
    assert not np.isin(I, np.arange(1, 200, 2)).any() and (I % 2 == 1).all()
    index.save(tmp_path / "r.tivf")
    back = ti.read_index(tmp_path / "r.tivf")
    D2, I2 = back.search(xq, 10)
    assert np.array_equal(I, I2) and np.array_equal(D, D2)
    assert isinstance(ti.index_factory(64, "PanoramaT,IVF8,PQ16x8Panorama4,RFlat").base, ti.IndexIVFPQPanorama)
    np.testing.assert_allclose(back.reconstruct(201).numpy(), xb[100], rtol=1e-2, atol=1e-2)  # float16 copy


def test_refine_bad_input(data):
    with pytest.raises(ValueError, match="k_factor"):
        ti.IndexRefine(ti.IndexIVFPQ(32, 4, 8), k_factor=0.5)
    with pytest.raises(TypeError, match="base"):
        ti.IndexRefine("IVF")
    index = ti.IndexRefine(ti.IndexIVFPQ(32, 4, 8, niter=2, pq_niter=2))
    index.train(data[0][:1000])
    with pytest.raises(ValueError, match="x"):
        index.add(np.zeros((2, 31), np.float32))
    assert index.ntotal == 0 and index.refine.ntotal == 0
