"""torch_ivf.faiss against faiss-cpu on the same data: same ids, same order, same exception types."""
import numpy as np
import pytest

import torch_ivf.faiss as tfaiss

faiss = pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def data():
    rs = np.random.RandomState(0)
    return rs.rand(1000, 16).astype("float32"), rs.rand(20, 16).astype("float32")


@pytest.mark.parametrize("metric", [faiss.METRIC_L2, faiss.METRIC_INNER_PRODUCT])
def test_flat_search_and_range_search_match_faiss(data, metric):
    xb, xq = data
    ours, ref = tfaiss.IndexFlat(16, metric), faiss.IndexFlat(16, metric)
    ours.add(xb)
    ref.add(xb)
    np.testing.assert_array_equal(ours.search(xq, 5)[1], ref.search(xq, 5)[1])
    r = 1.0 if metric == faiss.METRIC_L2 else 5.0
    lims, _, ids = ours.range_search(xq, r)
    rlims, _, rids = ref.range_search(xq, r)
    np.testing.assert_array_equal(lims, rlims)
    np.testing.assert_array_equal(np.sort(ids), np.sort(rids))


def test_flat_remove_renumbers_and_reconstruct_is_numpy(data):
    xb, xq = data
    ours, ref = tfaiss.IndexFlatL2(16), faiss.IndexFlatL2(16)
    for index in (ours, ref):
        index.add(xb)
        assert index.remove_ids(np.array([0, 5, 7])) == 3
    np.testing.assert_array_equal(ours.search(xq, 5)[1], ref.search(xq, 5)[1])
    rec = ours.reconstruct(10)
    assert isinstance(rec, np.ndarray)
    np.testing.assert_array_equal(rec, ref.reconstruct(10))
    np.testing.assert_array_equal(ours.reconstruct_n(0, 4), ref.reconstruct_n(0, 4))


def test_idmap_and_selectors_match_faiss(data):
    xb, xq = data
    ids = np.arange(len(xb), dtype=np.int64) * 3 + 1
    ours, ref = tfaiss.index_factory(16, "IDMap,Flat"), faiss.index_factory(16, "IDMap,Flat")
    for index in (ours, ref):
        index.add_with_ids(xb, ids)
    for sel_ours, sel_ref in ((tfaiss.IDSelectorRange(100, 900), faiss.IDSelectorRange(100, 900)),
                              (tfaiss.IDSelectorBatch(ids[::2]), faiss.IDSelectorBatch(ids[::2]))):
        got = ours.search(xq, 5, params=tfaiss.SearchParameters(sel=sel_ours))[1]
        want = ref.search(xq, 5, params=faiss.SearchParameters(sel=sel_ref))[1]
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ours.id_map, faiss.vector_to_array(ref.id_map))


def test_ivf_shared_quantizer_and_serialize_round_trip(data):
    xb, xq = data
    q = tfaiss.IndexFlatL2(16)
    index = tfaiss.IndexIVFFlat(q, 16, 8)
    index.train(xb)
    index.add(xb)
    assert q.ntotal == 8  # training filled the caller's quantizer, as in Faiss
    index.nprobe = 3
    back = tfaiss.deserialize_index(tfaiss.serialize_index(index))
    assert type(back) is tfaiss.IndexIVFFlat
    np.testing.assert_array_equal(back.search(xq, 5)[1], index.search(xq, 5)[1])
    with pytest.raises(RuntimeError):  # no direct map yet, as in Faiss
        index.reconstruct(0)
    index.make_direct_map()
    np.testing.assert_allclose(index.reconstruct(3), xb[3], rtol=1e-6)


@pytest.mark.parametrize("key", ["IVF3k,Flat", "IVF32,PQ4x4", "PQ8", "IVF32,Flat,RFlat", "Flat,IDMap2"])
def test_factory_strings_build(key):
    index = tfaiss.index_factory(16, key)
    if key == "IVF3k,Flat":
        assert index.nlist == 3072


def test_errors_are_both_kinds(data):
    xb, _ = data
    ours, ref = tfaiss.IndexFlatL2(16), faiss.IndexFlatL2(16)
    for index in (ours, ref):
        with pytest.raises(AssertionError):
            index.add(np.zeros((3, 5), "float32"))
    with pytest.raises(ValueError):
        ours.add(np.zeros((3, 5), "float32"))
    for index in (ours, ref):
        with pytest.raises(RuntimeError):
            index.add_with_ids(xb[:2], np.array([1, 2]))
    assert ours.ntotal == 0


def test_knn_and_normalize_match_faiss(data):
    xb, xq = data
    np.testing.assert_array_equal(tfaiss.knn(xq, xb, 4)[1], faiss.knn(xq, xb, 4)[1])
    a, b = xb[:10].copy(), xb[:10].copy()
    tfaiss.normalize_L2(a)
    faiss.normalize_L2(b)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_small_faiss_names_match_faiss(tmp_path):
    assert isinstance(tfaiss.__version__, str) and tfaiss.__version__.count(".") == 2
    for key in ("IVF10,PQ4", "IVF10,PQ4np", "PQ4", "PQ4np"):
        assert tfaiss.index_factory(12, key).do_polysemous_training == faiss.index_factory(12, key).do_polysemous_training
    for lib in (tfaiss, faiss):
        with pytest.raises(RuntimeError):
            lib.index_factory(10, "PQ4")
    x = np.random.RandomState(4).rand(500, 12).astype("float32")
    pq = tfaiss.IndexPQ(12, 4, 4)
    pq.train(x)
    tfaiss.write_ProductQuantizer(pq.pq, tmp_path / "pq")
    back = tfaiss.read_ProductQuantizer(str(tmp_path / "pq"))
    assert (back.M, back.nbits, back.dsub, back.ksub) == (4, 4, 3, 16)
    np.testing.assert_array_equal(tfaiss.vector_to_array(back.centroids), tfaiss.vector_to_array(pq.pq.centroids))
    (tmp_path / "bad").write_bytes(b"not a file")
    with pytest.raises(RuntimeError):
        tfaiss.read_ProductQuantizer(str(tmp_path / "bad"))
    idx = tfaiss.read_index(_written(pq, tmp_path), tfaiss.IO_FLAG_SKIP_PRECOMPUTE_TABLE)
    assert idx.ntotal == 0


def _written(index, tmp_path):
    path = str(tmp_path / "index")
    tfaiss.write_index(index, path)
    return path


def test_idmap2_consistency_and_translated_selector():
    x = np.random.RandomState(5).rand(50, 8).astype("float32")
    ids = np.arange(50, dtype=np.int64) * 7
    got = []
    for lib in (tfaiss, faiss):
        index = lib.index_factory(8, "IDMap2,Flat")
        index.add_with_ids(x, ids)
        index.check_consistency()
        sel = lib.IDSelectorTranslated(index, lib.IDSelectorBatch(ids[::3]))
        got.append(index.search(x[:5], 4, params=lib.SearchParameters(sel=sel))[1])
    np.testing.assert_array_equal(got[0], got[1])


@pytest.mark.parametrize("imin,imax", [(10, 20), (-10, 20), (10, 40), (30, 80)])
def test_sorted_range_bounds_match_faiss(imin, imax):
    for seed in range(5):
        ids = np.sort(np.random.RandomState(seed).choice(30, 50).astype(np.int64))
        got = []
        for lib in (tfaiss, faiss):
            j = np.zeros(2, dtype=np.uint64)
            lib.IDSelectorRange(imin, imax, True).find_sorted_ids_bounds(
                len(ids), lib.swig_ptr(ids), lib.swig_ptr(j[:1]), lib.swig_ptr(j[1:]))
            got.append(j)
        np.testing.assert_array_equal(*got)


def test_callback_selector_matches_batch(data):
    xb, xq = data
    subset = np.random.RandomState(9).choice(len(xb), 50, replace=False)
    got = []
    for lib in (tfaiss, faiss):
        index = lib.index_factory(16, "IVF8,Flat")
        index.train(xb)
        index.add(xb)
        ref = index.search(xq, 5, params=lib.SearchParametersIVF(sel=lib.IDSelectorBatch(subset), nprobe=8))[1]
        sel = lib.PyCallbackIDSelector(lambda i: i in subset)
        new = index.search(xq, 5, params=lib.SearchParametersIVF(sel=sel, nprobe=8))[1]
        np.testing.assert_array_equal(ref, new)
        got.append(new)
    assert np.isin(got[0][got[0] >= 0], subset).all()
