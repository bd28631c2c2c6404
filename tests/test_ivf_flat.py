"""IVFFlat: parity with faiss through from_faiss, recall parity when self-trained, modes, filters."""
import numpy as np
import pytest
import torch
from conftest import assert_knn_equal, clustered, devices, exact_knn, recall_at_k

import torch_ivf as ti
from torch_ivf.interop import from_faiss, to_faiss

faiss = pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def data():
    xb = clustered(20000, 32, centres=200, seed=11)
    xq = clustered(200, 32, centres=200, seed=11)[::-1].copy() + 0.01
    return xb, xq


def _faiss_ivf(xb, nlist, metric=faiss.METRIC_L2):
    q = faiss.IndexFlat(xb.shape[1], metric)
    f = faiss.IndexIVFFlat(q, xb.shape[1], nlist, metric)
    f.train(xb)
    f.add(xb)
    return f, q


@pytest.mark.parametrize("metric", [faiss.METRIC_L2, faiss.METRIC_INNER_PRODUCT])
@pytest.mark.parametrize("mode", ["grouped", "matrix"])
def test_from_faiss_returns_faiss_results(data, metric, mode):
    xb, xq = data
    f, _q = _faiss_ivf(xb, 64, metric)
    ours = from_faiss(f)
    ours.search_mode = mode
    for nprobe in (1, 4, 16):
        f.nprobe = nprobe
        Df, If = f.search(xq, 10)
        D, I = ours.search(xq, 10, params=ti.SearchParams(nprobe=nprobe))
        assert (I == If).mean() > 0.995
        np.testing.assert_allclose(D, Df, rtol=1e-4, atol=1e-2)


def test_to_faiss_round_trip(data):
    xb, xq = data
    ours = ti.IndexIVFFlat(32, 32, nprobe=4)
    ours.train(xb)
    ours.add_with_ids(xb[:5000], np.arange(5000) * 3 + 7)
    f = to_faiss(ours)
    Df, If = f.search(xq, 10)
    D, I = ours.search(xq, 10)
    assert (I == If).mean() > 0.995
    back = from_faiss(f)
    assert np.array_equal(back.search(xq, 10)[1], I)


def test_self_trained_recall_within_001_of_faiss(data):
    xb, xq = data
    _, gt = exact_knn(xb, xq, 10)
    f, _q = _faiss_ivf(xb, 128)
    ours = ti.IndexIVFFlat(32, 128)
    ours.train(xb)
    ours.add(xb)
    for nprobe in (2, 8):
        f.nprobe = nprobe
        ours.nprobe = nprobe
        rf = recall_at_k(f.search(xq, 10)[1], gt)
        ro = recall_at_k(ours.search(xq, 10)[1], gt)
        assert ro >= rf - 0.01, (nprobe, ro, rf)


@pytest.mark.parametrize("device", devices())
def test_modes_agree_and_full_probe_is_exact(data, device):
    xb, xq = data[0], data[1][:40]
    index = ti.IndexIVFFlat(32, 50, device=device)
    index.train(xb)
    index.add(xb)
    results = {}
    for mode in ("grouped", "matrix", "auto"):
        index.search_mode = mode
        results[mode] = index.search(xq, 10, params=ti.SearchParams(nprobe=50))
    De, Ie = exact_knn(xb, xq, 10)
    for D, I in results.values():
        assert_knn_equal(D, I, De, Ie, atol=1e-2)


def test_nprobe_above_nlist_is_clamped(data):
    xb, xq = data
    index = ti.IndexIVFFlat(32, 16, nprobe=1000)
    index.train(xb)
    index.add(xb)
    D, I = index.search(xq, 5)
    assert (I == exact_knn(xb, xq, 5)[1]).mean() > 0.999


@pytest.mark.parametrize("mode", ["grouped", "matrix"])
def test_allowed_filter_applied_inside_scan(data, mode):
    xb, xq = data
    index = ti.IndexIVFFlat(32, 64, nprobe=64, search_mode=mode)
    index.train(xb)
    index.add(xb)
    allowed = np.arange(0, len(xb), 100)  # 1% of the labels
    D, I = index.search(xq, 10, params=ti.SearchParams(allowed=allowed))
    assert (I >= 0).all() and np.isin(I, allowed).all()
    _, Ie = exact_knn(xb[allowed], xq, 10)
    assert (I == allowed[Ie]).mean() > 0.999
    mask = torch.zeros(len(xb), dtype=torch.bool)
    mask[allowed] = True
    assert np.array_equal(index.search(xq, 10, params=ti.SearchParams(allowed=mask))[1], I)


def test_max_codes_limits_the_scan_as_faiss(data):
    """max_codes counts rows in coarse order and cuts the last list short, in every mode, as Faiss does."""
    xb, xq = data
    index = ti.IndexIVFFlat(32, 64, nprobe=16)
    index.train(xb)
    index.add(xb)
    _, gt = exact_knn(xb, xq, 10)
    full = recall_at_k(index.search(xq, 10)[1], gt)
    f = to_faiss(index)
    for max_codes in (7, 300, 1234):
        De, Ie = f.search(xq, 10, params=faiss.SearchParametersIVF(nprobe=16, max_codes=max_codes))
        for mode in ("grouped", "matrix"):
            index.search_mode = mode
            D, I = index.search(xq, 10, params=ti.SearchParams(max_codes=max_codes))
            assert_knn_equal(D, I, De, Ie)
            assert recall_at_k(I, gt) < full


def test_retrain_keeps_stored_vectors(data):
    xb, xq = data
    index = ti.IndexIVFFlat(32, 16, nprobe=16)
    index.train(xb[:2000])
    index.add(xb[:3000])
    index.centroids = index.centroids[:0]  # force a fresh k-means
    index.train(xb)
    assert index.ntotal == 3000
    _, I = index.search(xq, 5)
    assert (I == exact_knn(xb[:3000], xq, 5)[1]).mean() > 0.999


def test_kmeans_is_seeded_and_reproducible(data):
    xb, _ = data
    a = ti.kmeans(torch.from_numpy(xb), 32, seed=5)
    b = ti.kmeans(torch.from_numpy(xb), 32, seed=5)
    c = ti.kmeans(torch.from_numpy(xb), 32, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_add_is_amortized_and_does_not_copy_everything():
    index = ti.IndexIVFFlat(8, 16)
    x = torch.randn(20000, 8)
    index.train(x)
    index.add(x)
    before = index.invlists.field("vectors").data_ptr()
    index.add(torch.randn(50, 8))
    assert index.invlists.field("vectors").data_ptr() == before  # appended in place, no re-allocation
    assert index.ntotal == 20050


def test_remove_and_labels_never_reused(data):
    xb, xq = data
    index = ti.IndexIVFFlat(32, 16, nprobe=16)
    index.train(xb)
    index.add(xb[:1000])
    assert index.remove_ids(np.arange(990, 1000)) == 10
    assert index.remove_ids(np.array([990, 5000])) == 0  # missing ids ignored
    index.add(xb[1000:1005])
    assert sorted(index.labels().tolist())[-5:] == [1000, 1001, 1002, 1003, 1004]
    assert torch.equal(index.reconstruct(1002), torch.from_numpy(xb[1002]))
    mask = torch.zeros(2000, dtype=torch.bool)
    mask[:10] = True
    assert index.remove_ids(mask) == 10 and index.ntotal == 985


def test_merge_from(data):
    xb, xq = data
    a = ti.IndexIVFFlat(32, 16, nprobe=16)
    a.train(xb)
    b = ti.IndexIVFFlat(32, 16, nprobe=16)
    b.centroids = a.centroids.clone()
    a.add(xb[:500])
    b.add(xb[500:1000])
    a.merge_from(b, add_id=500)
    assert a.ntotal == 1000 and b.ntotal == 0
    assert (a.search(xq, 5)[1] == exact_knn(xb[:1000], xq, 5)[1]).mean() > 0.999


def test_faiss_constructor_form_and_factory(data):
    xb, _ = data
    quantizer = ti.IndexFlatL2(32)
    index = ti.IndexIVFFlat(quantizer, 32, 8, ti.METRIC_L2)
    assert index.nlist == 8 and index.metric == "l2" and not index.is_trained
    f = ti.index_factory(32, "IVF8,Flat", ti.METRIC_INNER_PRODUCT)
    assert isinstance(f, ti.IndexIVFFlat) and f.metric == "ip"
    assert isinstance(ti.index_factory(32, "Flat", "cosine"), ti.IndexFlat)
    with pytest.raises(ValueError, match="description"):
        ti.index_factory(32, "HNSW32")


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_bucketed_scan_matches_per_list_scan(data, metric, dtype, monkeypatch):
    """The accelerator path (lists batched by size) is checked on CPU against the per-list loop."""
    xb, xq = data
    index = ti.IndexIVFFlat(32, 64, metric, nprobe=8, search_mode="grouped", dtype=dtype)
    index.train(xb)
    index.add(xb)
    for params in (ti.SearchParams(), ti.SearchParams(allowed=np.arange(0, len(xb), 7)), ti.SearchParams(max_codes=900)):
        D1, I1 = index.search(xq, 10, params=params)
        monkeypatch.setattr(type(index), "_use_buckets", lambda self: True)
        D2, I2 = index.search(xq, 10, params=params)
        monkeypatch.undo()
        assert_knn_equal(D2, I2, D1, I1, atol=1e-3)


def test_faiss_code_idioms_run(data):
    """Snippets a Faiss user would paste: direct map, invlists sizes, IDMap factory, quantizer."""
    xb, xq = data
    index = ti.index_factory(32, "IVF16,Flat")
    index.train(xb)
    index.add(xb[:1000])
    index.make_direct_map()
    assert np.allclose(index.reconstruct(7), xb[7])
    assert sum(index.invlists.list_size(i) for i in range(index.nlist)) == 1000
    assert sorted(torch.cat([index.invlists.get_ids(i) for i in range(16)]).tolist()) == list(range(1000))
    assert index.quantizer.ntotal == 16
    idmap = ti.index_factory(32, "IDMap,Flat", ti.METRIC_INNER_PRODUCT)
    idmap.add_with_ids(xb[:10], np.arange(100, 110))
    assert idmap.search(xb[:1], 1)[1][0, 0] == 100


@pytest.mark.parametrize("chunked", [False, True])
def test_range_search_matches_faiss(data, monkeypatch, chunked):
    """IVF range_search returns faiss's (lims, D, I) for the probed lists, in every mode and also when
    the queries are split into chunks to bound memory."""
    import torch_ivf.index.ivf as ivf_module
    if chunked:
        monkeypatch.setattr(ivf_module, "_RANGE_BUDGET", 500)
    xb, xq = data
    f, _q = _faiss_ivf(xb, 32)
    f.nprobe = 4
    De, _ = exact_knn(xb, xq, 30)
    radius = float(np.median(De[:, 20]))
    flims, fD, fI = f.range_search(xq, radius)
    index = from_faiss(f)
    for mode in ("grouped", "matrix"):
        index.search_mode = mode
        lims, D, I = index.range_search(xq, radius, params=ti.SearchParams(nprobe=4))
        assert np.array_equal(lims, flims)
        for i in range(len(xq)):
            a, b = slice(lims[i], lims[i + 1]), slice(flims[i], flims[i + 1])
            assert set(I[a].tolist()) == set(fI[b].tolist())
            np.testing.assert_allclose(np.sort(D[a]), np.sort(fD[b]), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("mode", ["grouped", "matrix"])
def test_exact_copies_come_back_first_stored_first(mode):
    """Copies of a vector score exactly equal: as exact search and Faiss do, the first stored come
    back (torch.topk alone picks among ties at random, which cost 0.07-0.09 plain recall@10 on the
    MiniLM man pages, a corpus with duplicate passages)."""
    rng = np.random.default_rng(3)
    base = rng.normal(size=(300, 16)).astype("float32")
    xb = np.concatenate([base] + [base[:40]] * 12)  # vectors 0..39 stored 13 times each
    xq = base[:40] + 0.01 * rng.normal(size=(40, 16)).astype("float32")
    copies = np.arange(40)[:, None] + np.array([0] + [300 + 40 * j for j in range(12)])[None, :]
    indexes = [ti.IndexFlat(16), ti.IndexIVFFlat(16, 8, nprobe=8, niter=5, search_mode=mode),
               ti.IndexIVFPQ(16, 8, 8, 8, nprobe=8, niter=5, pq_niter=5, search_mode=mode),
               ti.IndexRefineFlat(ti.IndexIVFPQ(16, 8, 4, 8, nprobe=8, niter=5, pq_niter=5, search_mode=mode)),
               ti.IndexIVFPQPanorama(16, 8, 8, 8, 4, nprobe=8, niter=5, pq_niter=5, search_mode=mode),
               ti.IndexIVFFlatPanorama(16, 8, 4, nprobe=8, niter=5, search_mode=mode)]
    for index in indexes:
        if not index.is_trained:
            index.train(xb)
        index.add(xb)
        for k in (1, 5, 12):
            D, I = index.search(xq, k)
            assert (D == D[:, :1]).all()  # every copy ties with the first
            np.testing.assert_array_equal(np.sort(I, axis=1), copies[:, :k])


def test_id_selectors_match_faiss():
    """Faiss's SearchParametersIVF(sel=IDSelector...) and remove_ids(IDSelector): same ids as faiss."""
    rng = np.random.default_rng(5)
    xb = rng.normal(size=(5000, 24)).astype("float32")
    xq = xb[:50] + 0.1
    f = faiss.IndexIVFFlat(faiss.IndexFlatL2(24), 24, 32)
    f.train(xb)
    f.add(xb)
    ours = from_faiss(f)
    pairs = [(faiss.IDSelectorRange(100, 3000), ti.IDSelectorRange(100, 3000)),
             (faiss.IDSelectorBatch(np.arange(0, 5000, 7)), ti.IDSelectorBatch(np.arange(0, 5000, 7))),
             (faiss.IDSelectorNot(faiss.IDSelectorRange(0, 4000)), ti.IDSelectorNot(ti.IDSelectorRange(0, 4000))),
             (faiss.IDSelectorAnd(faiss.IDSelectorRange(0, 4000), faiss.IDSelectorBatch(np.arange(0, 5000, 3))),
              ti.IDSelectorAnd(ti.IDSelectorRange(0, 4000), ti.IDSelectorBatch(np.arange(0, 5000, 3)))),
             (faiss.IDSelectorOr(faiss.IDSelectorRange(0, 10), faiss.IDSelectorRange(4990, 5000)),
              ti.IDSelectorOr(ti.IDSelectorRange(0, 10), ti.IDSelectorRange(4990, 5000)))]
    for fs, ts in pairs:
        D, I = f.search(xq, 10, params=faiss.SearchParametersIVF(sel=fs, nprobe=8))
        D2, I2 = ours.search(xq, 10, params=ti.SearchParametersIVF(sel=ts, nprobe=8))
        assert_knn_equal(D2, I2, D, I)
        lims, _, I3 = ours.range_search(xq[:5], float(np.median(D[:5, -1])), params=ti.SearchParams(sel=ts))
        assert all(ts.is_member(int(i)) for i in I3)
    assert ours.remove_ids(ti.IDSelectorRange(10, 20)) == f.remove_ids(faiss.IDSelectorRange(10, 20)) == 10
    with pytest.raises(ValueError, match="not both"):
        ours.search(xq, 5, params=ti.SearchParams(allowed=[1, 2], sel=ti.IDSelectorRange(0, 3)))
    with pytest.raises(TypeError, match="params.sel must be an IDSelector"):
        ours.search(xq, 5, params=ti.SearchParams(sel=[1, 2]))
    with pytest.raises(TypeError, match="imax must be an int"):
        ti.IDSelectorRange(0, 2.5)
    with pytest.raises(TypeError, match="ids must be integers"):
        ti.IDSelectorBatch(np.array([1.5]))
