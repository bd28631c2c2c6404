"""range_search through torch_ivf.faiss against faiss-cpu: results in Faiss's order (storage order;
IVF: probed lists nearest first), empty query batches, lims as Faiss's size_t offsets."""
import numpy as np
import pytest

import torch_ivf.faiss as tfaiss

faiss = pytest.importorskip("faiss")

D = 16


@pytest.fixture(scope="module")
def data():
    rs = np.random.RandomState(1)
    return rs.rand(2000, D).astype("float32"), rs.rand(30, D).astype("float32")


def _same(ours, ref):
    (lims, dist, ids), (rlims, rdist, rids) = ours, ref
    assert lims.dtype == rlims.dtype
    np.testing.assert_array_equal(lims, rlims)
    np.testing.assert_array_equal(ids, rids)  # same ids in the same order, not only the same sets
    np.testing.assert_allclose(dist, rdist, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("metric,radius", [(faiss.METRIC_L2, 1.2), (faiss.METRIC_INNER_PRODUCT, 5.0)])
def test_flat_range_search_in_storage_order(data, metric, radius):
    xb, xq = data
    ours, ref = tfaiss.IndexFlat(D, metric), faiss.IndexFlat(D, metric)
    for index in (ours, ref):
        index.add(xb)
        index.remove_ids(np.arange(0, 2000, 7))  # renumbered after removal, order kept
    _same(ours.range_search(xq, radius), ref.range_search(xq, radius))


def test_idmap_range_search_in_insertion_order(data):
    xb, xq = data
    ids = np.random.RandomState(2).permutation(10 * len(xb))[:len(xb)].astype(np.int64)
    ours, ref = tfaiss.index_factory(D, "IDMap,Flat"), faiss.index_factory(D, "IDMap,Flat")
    for index in (ours, ref):
        index.add_with_ids(xb, ids)
    _same(ours.range_search(xq, 1.2), ref.range_search(xq, 1.2))


@pytest.mark.parametrize("metric,radius", [(faiss.METRIC_L2, 1.2), (faiss.METRIC_INNER_PRODUCT, 5.0)])
def test_ivf_range_search_probes_nearest_list_first(data, metric, radius):
    xb, xq = data
    ref = faiss.IndexIVFFlat(faiss.IndexFlat(D, metric), D, 16, metric)
    ref.train(xb)
    ref.add(xb)
    q = tfaiss.IndexFlat(D, metric)
    q.add(ref.quantizer.reconstruct_n(0, 16))  # the same centroids: the same lists
    ours = tfaiss.IndexIVFFlat(q, D, 16, metric)
    ours.add(xb)
    for nprobe in (1, 4, 16):
        ours.nprobe = ref.nprobe = nprobe
        _same(ours.range_search(xq, radius), ref.range_search(xq, radius))
    params, rparams = tfaiss.SearchParametersIVF(nprobe=3), faiss.SearchParametersIVF(nprobe=3)
    _same(ours.range_search(xq, radius, params=params), ref.range_search(xq, radius, params=rparams))


@pytest.mark.parametrize("key", ["Flat", "IVF8,Flat", "IDMap,Flat"])
def test_empty_query_batch(data, key):
    xb, _ = data
    index = tfaiss.index_factory(D, key)
    index.train(xb)
    if key.startswith("IDMap"):
        index.add_with_ids(xb, np.arange(len(xb), dtype=np.int64))
    else:
        index.add(xb)
    empty = np.empty((0, D), dtype=np.float32)
    lims, dist, ids = index.range_search(empty, 1.0)
    np.testing.assert_array_equal(lims, np.zeros(1, dtype=np.uint64))
    assert lims.dtype == np.uint64 and dist.shape == (0,) and ids.shape == (0,)
    dist, ids = index.search(empty, 10)
    assert dist.shape == (0, 10) and ids.shape == (0, 10)


def test_core_range_search_keeps_int64_lims(data):
    import torch_ivf
    xb, xq = data
    index = torch_ivf.IndexFlatL2(D)
    index.add(xb)
    lims, _, _ = index.range_search(xq, 1.0)
    assert lims.dtype == np.int64
    lims, _, _ = index.range_search(xq[:0], 1.0)
    np.testing.assert_array_equal(lims, [0])


def test_core_order_option(data):
    import torch_ivf
    xb, xq = data
    index = torch_ivf.IndexFlatL2(D)
    index.add(xb)
    lims, dist, _ = index.range_search(xq, 1.2)
    assert all(np.all(np.diff(dist[a:b]) >= 0) for a, b in zip(lims[:-1], lims[1:]))  # best first
    _, _, ids = index.range_search(xq, 1.2, order="storage")
    assert all(np.all(np.diff(ids[a:b]) > 0) for a, b in zip(lims[:-1], lims[1:]))
    with pytest.raises(ValueError, match="order"):
        index.range_search(xq, 1.2, order="sorted")


def test_storage_order_across_query_chunks(data, monkeypatch):
    import torch_ivf.index.base as base
    xb, xq = data
    ours, ref = tfaiss.IndexFlatL2(D), faiss.IndexFlatL2(D)
    for index in (ours, ref):
        index.add(xb)
    monkeypatch.setattr(base, "_RANGE_BUDGET", 4 * len(xb))  # 4 queries per chunk
    _same(ours.range_search(xq, 1.2), ref.range_search(xq, 1.2))
