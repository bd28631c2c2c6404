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
