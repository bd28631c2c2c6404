"""torch_ivf.faiss against faiss-cpu: search_preassigned / range_search_preassigned, search_and_reconstruct
without a direct map, nprobe 0 refused at search time, IndexShards / IndexReplicas call forms."""
import numpy as np
import pytest

import torch_ivf.faiss as tfaiss

faiss = pytest.importorskip("faiss")

D = 16


@pytest.fixture(scope="module")
def data():
    rs = np.random.RandomState(6)
    return rs.rand(1500, D).astype("float32"), rs.rand(15, D).astype("float32")


def _pair(key, xb):
    """The same IVF index in both libraries (faiss's centroids copied into ours)."""
    ref = faiss.index_factory(D, key)
    ref.train(xb)
    ref.add(xb)
    q = tfaiss.IndexFlatL2(D)
    q.add(ref.quantizer.reconstruct_n(0, ref.nlist))
    ours = tfaiss.IndexIVFFlat(q, D, ref.nlist)
    ours.add(xb)
    return ours, ref


def test_preassigned_searches_match_faiss(data):
    xb, xq = data
    ours, ref = _pair("IVF16,Flat", xb)
    ours.nprobe = ref.nprobe = 3  # Faiss takes assign of shape (nq, index.nprobe)
    Dq, Iq = ref.quantizer.search(xq, 3)
    Iq = Iq[:, ::-1].copy()  # lists in an order of our own choosing
    got, want = ours.search_preassigned(xq, 10, Iq, Dq), ref.search_preassigned(xq, 10, Iq, Dq)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    got, want = ours.range_search_preassigned(xq, 0.6, Iq, Dq), ref.range_search_preassigned(xq, 0.6, Iq, Dq)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-5)
    with pytest.raises(RuntimeError):
        ours.search_preassigned(xq, 10, Iq + 100, Dq)


def test_search_and_reconstruct_needs_no_direct_map(data):
    xb, xq = data
    ours, ref = _pair("IVF16,Flat", xb)
    for index in (ours, ref):
        index.nprobe = 4
    (D1, I1, R1), (D2, I2, R2) = ours.search_and_reconstruct(xq, 5), ref.search_and_reconstruct(xq, 5)
    np.testing.assert_array_equal(I1, I2)
    np.testing.assert_array_equal(R1, R2)


def test_nprobe_zero_is_refused_at_search(data):
    xb, xq = data
    for index in _pair("IVF16,Flat", xb):
        index.nprobe = 0
        with pytest.raises(RuntimeError):
            index.search(xq, 5)
        index.nprobe = 2
        with pytest.raises(AssertionError):
            index.search(xq, -10)


@pytest.mark.parametrize("group", ["shards", "replicas"])
def test_shards_and_replicas_call_forms(data, group):
    xb, xq = data
    out = []
    for lib in (tfaiss, faiss):
        subs = [lib.IndexIVFFlat(lib.IndexFlatL2(D), D, 8) for _ in range(2)]
        index = lib.IndexShards(D, True) if group == "shards" else lib.IndexReplicas(D, True)
        add = index.add_shard if group == "shards" else index.add_replica
        for sub in subs:
            add(sub)
        assert not index.is_trained
        index.train(xb)
        assert index.is_trained and index.ntotal == 0
        index.add(xb)
        sizes = [index.ntotal]
        (index.remove_shard if group == "shards" else index.remove_replica)(subs[1])
        sizes.append(index.ntotal)
        out.append(sizes)
    assert out[0] == out[1]


@pytest.mark.parametrize("cls,args", [("IndexFlatL2Panorama", (8, 128)), ("IndexFlatIPPanorama", (4,)),
                                      ("IndexFlatPanorama", (faiss.METRIC_L2, 8, 128))])
def test_flat_panorama_matches_faiss(data, cls, args):
    xb, xq = data
    out = []
    for lib in (tfaiss, faiss):
        index = getattr(lib, cls)(D, *args)
        assert index.is_trained
        index.add(xb)
        index.remove_ids(np.arange(0, 100, 3))  # renumbered by position
        dist, ids = index.search(xq, 10)
        r = float(np.median(dist[:, -1]))
        out.append((ids, *index.range_search(xq, r), index.reconstruct(7)))
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    ours = getattr(tfaiss, cls)(D, *args)
    ours.add(xb)
    back = tfaiss.deserialize_index(tfaiss.serialize_index(ours))
    assert type(back) is type(ours) and back.n_levels == ours.n_levels
    np.testing.assert_array_equal(back.search(xq, 5)[1], ours.search(xq, 5)[1])


def test_search_parameters_ivf_early_stop_fields(data):
    xb, xq = data
    ours, ref = _pair("IVF16,Flat", xb)
    p, rp = tfaiss.SearchParametersIVF(), faiss.SearchParametersIVF()
    for name in ("max_lists_num", "ensure_topk_full", "max_empty_result_buckets"):
        assert getattr(p, name) == getattr(rp, name)
    p.max_lists_num = 3  # kept, not applied: every probed list is scanned
    np.testing.assert_array_equal(ours.search(xq, 10, params=p)[1], ours.search(xq, 10)[1])
    p, rp = tfaiss.SearchParametersIVF(nprobe=16), faiss.SearchParametersIVF(nprobe=16)
    p.max_empty_result_buckets = rp.max_empty_result_buckets = 1
    full = ours.range_search(xq, 1.2, params=tfaiss.SearchParametersIVF(nprobe=16))
    early = ours.range_search(xq, 1.2, params=p)
    assert np.all(np.diff(early[0].astype(int)) <= np.diff(full[0].astype(int)))
    assert early[0][-1] < full[0][-1]  # some query stopped early
    for a, b in zip(early, ref.range_search(xq, 1.2, params=rp)):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    for index in (ours, ref):
        index.parallel_mode = 1
    for index, params in ((ours, p), (ref, rp)):
        with pytest.raises(RuntimeError):
            index.range_search(xq, 0.5, params=params)
    with pytest.raises(ValueError, match="max_lists_num"):
        ours.search(xq, 5, params=tfaiss.SearchParametersIVF(max_lists_num=-1))


def test_ensure_topk_full_fills_every_row(data):
    xb, xq = data
    ours, _ = _pair("IVF16,Flat", xb)
    sel = tfaiss.IDSelectorBatch(np.arange(0, len(xb), 10).astype(np.int64))
    p = tfaiss.SearchParametersIVF(nprobe=16, max_codes=5, sel=sel)
    assert (ours.search(xq, 10, params=p)[1] == -1).any()
    p.ensure_topk_full = True
    assert not (ours.search(xq, 10, params=p)[1] == -1).any()


def test_flat_1d_matches_faiss():
    rs = np.random.RandomState(8)
    xb, xq = rs.rand(200, 1).astype("float32"), rs.rand(30, 1).astype("float32") * 1.2 - 0.1
    out = []
    for lib in (tfaiss, faiss):
        index = lib.IndexFlat1D()
        empty = index.search(xq, 3)[1]
        index.add(xb)
        index.update_permutation()
        out.append((empty, *index.search(xq, 5)))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    assert (out[0][2] != out[1][2]).mean() < 0.05  # near-ties may come in another order
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-4, atol=1e-4)
    back = tfaiss.deserialize_index(tfaiss.serialize_index(tfaiss.IndexFlat1D()))
    assert type(back) is tfaiss.IndexFlat1D


def test_update_vectors_matches_faiss(data):
    xb, xq = data
    ours, ref = _pair("IVF16,Flat", xb)
    ids = np.array([3, 100, 999], dtype=np.int64)
    new = np.random.RandomState(10).rand(3, D).astype("float32")
    for index in (ours, ref):
        with pytest.raises(RuntimeError):
            index.update_vectors(ids, new)  # no direct map yet
        index.make_direct_map()
        index.update_vectors(ids, new)
        index.nprobe = 16
    np.testing.assert_array_equal(ours.search(xq, 10)[1], ref.search(xq, 10)[1])
    np.testing.assert_array_equal(ours.reconstruct(100), new[1])
    with pytest.raises(RuntimeError):
        ours.update_vectors(np.array([5000], dtype=np.int64), new[:1])


@pytest.mark.parametrize("d,levels", [(65, 4), (63, 8), (100, 7), (33, 32)])
@pytest.mark.parametrize("metric", [faiss.METRIC_L2, faiss.METRIC_INNER_PRODUCT])
def test_panorama_levels_need_not_divide_d(d, levels, metric):
    rs = np.random.RandomState(d)
    xb, xq = rs.rand(2000, d).astype("float32"), rs.rand(20, d).astype("float32")
    ref = faiss.IndexIVFFlatPanorama(faiss.IndexFlat(d, metric), d, 8, levels, metric)
    ref.train(xb)
    ref.add(xb)
    q = tfaiss.IndexFlat(d, metric)
    q.add(ref.quantizer.reconstruct_n(0, 8))
    ours = tfaiss.IndexIVFFlatPanorama(q, d, 8, levels, metric)
    ours.add(xb)
    exact = tfaiss.IndexIVFFlat(q, d, 8, metric)
    exact.add(xb)
    for index in (ours, ref, exact):
        index.nprobe = 3
    (D1, I1), (D2, I2), (D3, I3) = ours.search(xq, 10), ref.search(xq, 10), exact.search(xq, 10)
    np.testing.assert_allclose(D1, D2, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(D1, D3, rtol=1e-5, atol=1e-4)  # pruning is exact
    assert (I1 == I2).mean() > 0.98  # near-ties aside
    with pytest.raises(ValueError, match="divide"):
        tfaiss.IndexIVFFlatPanorama(d, 8, levels, transform=True)
    for lib in (tfaiss, faiss):
        with pytest.raises(RuntimeError):  # more levels than dimensions
            lib.IndexIVFFlatPanorama(lib.IndexFlatL2(d), d, 8, d + 1, lib.METRIC_L2)
