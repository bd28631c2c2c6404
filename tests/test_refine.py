"""IndexRefine (",RFlat"): exact re-ranking of k_factor * k candidates from a compressed index."""
import numpy as np
import pytest
import torch
from conftest import assert_knn_equal, clustered, devices, exact_knn, recall_at_k

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


def _rerank(xb, xq, cand, k, metric):
    """Float64 brute-force re-rank of candidate labels (rows of xb; -1 missing), in Faiss's (D, I) form."""
    xb, xq = xb.astype(np.float64), xq.astype(np.float64)
    if metric == "cosine":
        xb, xq = xb / np.linalg.norm(xb, axis=1, keepdims=True), xq / np.linalg.norm(xq, axis=1, keepdims=True)
    x, q = xb[np.maximum(cand, 0)], xq[:, None, :]
    s = np.where(cand < 0, -np.inf, -((x - q) ** 2).sum(-1) if metric == "l2" else (x * q).sum(-1))
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(s, order, 1)
    I = np.where(np.isneginf(top), -1, np.take_along_axis(cand, order, 1))
    big = float(np.finfo(np.float32).max)  # Faiss's D for a missing result
    return np.where(I < 0, big if metric == "l2" else -big, -top if metric == "l2" else top), I


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_refine_equals_brute_force_rerank_of_base_candidates(data, metric, device):
    xb, xq = data
    base = ti.IndexIVFPQ(32, 16, 4, 6, metric=metric, niter=4, pq_niter=4, nprobe=4, device=device)
    index = ti.IndexRefine(base, k_factor=8, refine_dtype=torch.float32)
    index.train(xb[:2000])
    index.add(xb)
    # 20 allowed labels: the base finds fewer than 80 candidates, often fewer than 10 (padded with -1)
    for params in (ti.SearchParams(), ti.SearchParams(allowed=np.arange(0, len(xb), 200))):
        _, cand = base.search(xq, 80, params=params)
        De, Ie = _rerank(xb, xq, cand, 10, metric)
        D, I = index.search(xq, 10, params=params)
        assert_knn_equal(D, I, De, Ie, rtol=1e-5, atol=1e-4)
    assert (I == -1).any() and (I[:, 0] >= 0).any()


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_refine_empty_and_filtered_out_return_missing(data, metric, device):
    xb, xq = data
    index = ti.IndexRefine(ti.IndexIVFPQ(32, 8, 4, 6, metric=metric, niter=2, pq_niter=2, device=device), k_factor=4)
    index.train(xb[:2000])

    def assert_missing(**kw):
        D, I = index.search(xq[:5], 10, **kw)
        assert D.shape == I.shape == (5, 10) and (I == -1).all() and (D == index.missing_distance).all()

    assert_missing()  # nothing added
    index.add(xb[:500])
    assert_missing(params=ti.SearchParams(allowed=[]))  # every candidate filtered out
    D, I = index.search(xq[:5], 10, params=ti.SearchParams(allowed=[7]))
    assert ((I[:, 0] == 7) | (I[:, 0] == -1)).all() and (I[:, 1:] == -1).all()
    assert np.isfinite(D[I == 7]).all() and (D[I == -1] == index.missing_distance).all()
    index.remove_ids(np.arange(500))
    assert_missing()  # everything removed


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


def test_faiss_forms_refine_flat_and_refine_with_flat_index(data, tmp_path):
    """faiss.IndexRefineFlat(base) (float32 re-ranking) and faiss.IndexRefine(base, IndexFlat) give
    faiss's results for the same base; a non-empty base or a wrong refine index is refused."""
    faiss = pytest.importorskip("faiss")
    from torch_ivf.interop import from_faiss, to_faiss
    xb, xq = data
    fbase = faiss.IndexIVFPQ(faiss.IndexFlatL2(32), 32, 16, 4, 8)
    fbase.train(xb[:2000])
    ours_base, ours_base2, spare = (from_faiss(fbase) for _ in range(3))  # trained, empty: same codebooks
    fr = faiss.IndexRefineFlat(fbase)
    fr.k_factor = 4
    fr.add(xb)
    faiss.extract_index_ivf(fr.base_index).nprobe = 4
    De, Ie = fr.search(xq, 10)
    ours = ti.IndexRefineFlat(ours_base, 4)
    ours.nprobe = 4
    ours.add(xb)
    assert ours.refine.dtype == torch.float32
    D, I = ours.search(xq, 10)
    # ADC rounding moves a few candidates across the k_factor * k boundary of the base: ~1% of ids
    same = I == Ie
    assert same.mean() > 0.97 and np.allclose(D[same], De[same], rtol=1e-5, atol=1e-3)
    ours.save(tmp_path / "r.tivf")
    back = ti.read_index(tmp_path / "r.tivf")
    assert type(back) is ti.IndexRefineFlat and np.array_equal(back.search(xq, 10)[1], I)
    second = ti.IndexRefine(ours_base2, ti.IndexFlatL2(32))  # Faiss's (base, refine_index) form
    second.k_factor, second.nprobe = 4, 4
    second.add(xb)
    assert np.array_equal(second.search(xq, 10)[1], I)
    with pytest.raises(ValueError, match="base must be empty"):
        ti.IndexRefineFlat(ours.base)
    conv = from_faiss(fr)  # faiss's refine index itself, base and float32 store
    assert type(conv) is ti.IndexRefineFlat and conv.k_factor == 4 and conv.ntotal == len(xb)
    conv.nprobe = 4
    same = conv.search(xq, 10)[1] == Ie
    assert same.mean() > 0.97
    back_f = to_faiss(ours)
    faiss.extract_index_ivf(back_f.base_index).nprobe = 4
    Db, Ib = back_f.search(xq, 10)
    assert (Ib == I).mean() > 0.97 and np.allclose(Db[Ib == I], D[Ib == I], rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="refine_index"):
        ti.IndexRefine(spare, ti.IndexFlatIP(32))


def test_faiss_names_for_the_parts():
    """Faiss code reaches the IVF inside a refine index through extract_index_ivf / base_index."""
    base = ti.IndexIVFPQ(16, 4, 4, niter=3, pq_niter=3)
    r = ti.IndexRefineFlat(base)
    assert r.base_index is base and r.refine_index is r.refine
    assert ti.extract_index_ivf(r) is base and ti.extract_index_ivf(base) is base
    ti.extract_index_ivf(r).nprobe = 3
    assert r.nprobe == 3
    with pytest.raises(TypeError, match="IVF index"):
        ti.extract_index_ivf(ti.IndexFlat(16))


def test_refine_search_parameters_as_faiss(data):
    """IndexRefineSearchParameters: k_factor and the base's own params for one call, as in Faiss (same
    ids as faiss's IndexRefineFlat for the same base); the index's settings stay; bad values named."""
    xb, xq = data
    index = ti.IndexRefineFlat(ti.IndexIVFPQ(32, 16, 4, 6, niter=4, pq_niter=4, nprobe=2), k_factor=2)
    index.train(xb[:2000])
    index.add(xb)
    base = ti.clone_index(index.base)  # same codebooks
    base.reset()
    want = ti.IndexRefineFlat(base, 8)
    want.add(xb)
    want.nprobe = 16
    p = ti.IndexRefineSearchParameters(k_factor=8, base_index_params=ti.SearchParametersIVF(nprobe=16))
    assert_knn_equal(*index.search(xq, 10, params=p), *want.search(xq, 10))
    assert index.k_factor == 2 and index.nprobe == 2
    allowed = ti.IDSelectorRange(0, 1000)  # the base's params carry the selector
    D, I = index.search(xq, 10, params=ti.IndexRefineSearchParameters(base_index_params=ti.SearchParams(sel=allowed)))
    assert ((I >= 0) & (I < 1000) | (I == -1)).all()
    for bad, err in ((dict(k_factor=0.5), ValueError), (dict(k_factor="8"), ValueError),
                     (dict(base_index_params=16), TypeError)):
        with pytest.raises(err, match="k_factor|params"):
            index.search(xq, 10, params=ti.IndexRefineSearchParameters(**bad))
    faiss = pytest.importorskip("faiss")
    from torch_ivf.interop import to_faiss
    fr = to_faiss(index)
    fp = faiss.IndexRefineSearchParameters(k_factor=8, base_index_params=faiss.SearchParametersIVF(nprobe=16))
    De, Ie = fr.search(xq, 10, params=fp)
    D, I = index.search(xq, 10, params=p)
    assert (I == Ie).mean() > 0.97 and np.allclose(D[I == Ie], De[I == Ie], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("suffix, dtype", [("RFlat", torch.float16), ("Refine(Flat)", torch.float32),
                                           ("Refine(SQfp16)", torch.float16)])
def test_refine_factory_suffixes(suffix, dtype):
    index = ti.index_factory(32, f"IVF16,PQ4,{suffix}", "ip")
    assert type(index) is ti.IndexRefine and index.refine.dtype == dtype and index.metric == "ip"
    assert type(index.base) is ti.IndexIVFPQ and index.base.nlist == 16
