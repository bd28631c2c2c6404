"""IndexShards / IndexReplicas against one index over the same rows: identical (D, I), ties included."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import torch_ivf as ti
from conftest import assert_same_knn as assert_same
from conftest import grid_data


_data = grid_data


def _flat_shards(n, d, metric="l2", **kw):
    sh = ti.IndexShards(d, **kw)
    for _ in range(n):
        sh.add_shard(ti.IndexFlat(d, metric))
    return sh


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("threaded", [False, True])
def test_flat_shards_match_one_index(metric, threaded):
    xb, xq = _data()
    one = ti.IndexFlat(16, metric)
    one.add(xb)
    sh = _flat_shards(3, 16, metric, threaded=threaded)
    sh.train(xb)
    sh.add(xb)
    assert sh.ntotal == one.ntotal == len(xb)
    assert [s.ntotal for s in sh.shards] == [400, 400, 400]
    for k in (1, 10, 50):
        D, I = sh.search(xq, k)
        De, Ie = one.search(xq, k)
        assert isinstance(D, np.ndarray) and D.dtype == np.float32 and I.dtype == np.int64
        assert_same(D, I, De, Ie, largest=metric == "ip")


def test_ivf_shards_with_the_same_centroids_match_one_index():
    xb, xq = _data(2000, 16)
    one = ti.IndexIVFFlat(16, 16, nprobe=4)
    one.train(xb)
    one.add(xb)
    sh = ti.IndexShards(16)
    for _ in range(3):
        sh.add_shard(ti.IndexIVFFlat(16, 16, nprobe=4))
    sh.train(xb)
    for s in sh.shards:  # training is handed from the first shard to the others
        assert torch.equal(s.centroids, one.centroids)
    sh.add(torch.from_numpy(xb))
    for nprobe in (1, 4, 16):
        p = ti.SearchParams(nprobe=nprobe)
        D, I = sh.search(torch.from_numpy(xq), 10, params=p)
        De, Ie = one.search(torch.from_numpy(xq), 10, params=p)
        assert isinstance(I, torch.Tensor)
        assert_same(D, I, De, Ie, exact=False)


def test_ivfpq_shards_match_one_index():
    xb, xq = _data(2000, 16)
    one = ti.IndexIVFPQ(16, 8, 4, 6, nprobe=8)
    one.train(xb)
    one.add(xb)
    sh = ti.IndexShards(16)
    for _ in range(2):
        sh.add_shard(ti.IndexIVFPQ(16, 8, 4, 6, nprobe=8))
    sh.train(xb)
    sh.add(xb)
    D, I = sh.search(xq, 10)
    De, Ie = one.search(xq, 10)
    assert_same(D, I, De, Ie, exact=False)


def test_uneven_rows_more_k_than_rows_and_empty_shard():
    xb, xq = _data(7, 16)
    one = ti.IndexFlatL2(16)
    one.add(xb)
    sh = ti.IndexShards(16)
    for _ in range(4):
        sh.add_shard(ti.IndexFlatL2(16))
    sh.add(xb[:2])
    sh.add(xb[2:])  # a second add keeps labels successive
    D, I = sh.search(xq, 12)
    De, Ie = one.search(xq, 12)
    assert_same(D, I, De, Ie)
    assert (I[:, 7:] == -1).all() and (D[:, 7:] == np.finfo(np.float32).max).all()
    D0, I0 = sh.search(xq[:0], 3)
    assert D0.shape == I0.shape == (0, 3)


def test_prefilled_shards_get_successive_labels():
    xb, xq = _data(900, 16)
    one = ti.IndexFlatL2(16)
    one.add(xb)
    sh = ti.IndexShards(16)
    for part in np.split(xb, [250, 600]):
        s = ti.IndexFlatL2(16)
        s.add(part)  # labels 0.. inside the shard
        sh.add_shard(s)
    assert sh.offsets == [0, 250, 600] and sh.next_label == 900
    assert_same(*sh.search(xq, 10), *one.search(xq, 10))
    np.testing.assert_array_equal(sh.reconstruct(700).numpy(), xb[700])
    # filters and removals speak global labels
    sel = ti.IDSelectorRange(240, 610)
    Ds, Is = sh.search(xq, 10, params=ti.SearchParams(sel=sel))
    Dr, Ir = one.search(xq, 10, params=ti.SearchParams(sel=sel))
    assert_same(Ds, Is, Dr, Ir)
    mask = np.zeros(900, dtype=bool)
    mask[::3] = True
    assert_same(*sh.search(xq, 5, params=ti.SearchParams(allowed=mask)),
                *one.search(xq, 5, params=ti.SearchParams(allowed=mask)))
    assert sh.remove_ids(np.array([3, 251, 899, 5000])) == 3 == one.remove_ids(np.array([3, 251, 899, 5000]))
    assert sh.ntotal == 897
    assert_same(*sh.search(xq, 10), *one.search(xq, 10))
    assert sh.remove_ids(ti.IDSelectorRange(600, 650)) == 50
    with pytest.raises(ValueError, match="251"):
        sh.reconstruct(251)


def test_add_with_ids_and_duplicates_rejected_state_unchanged():
    xb, xq = _data(300, 16)
    ids = np.arange(300, dtype=np.int64) * 7 + 3
    one = ti.IndexFlatL2(16)
    one.add_with_ids(xb, ids)
    sh = _flat_shards(2, 16, successive_ids=False)
    sh.add_with_ids(xb, ids)
    assert_same(*sh.search(xq, 10), *one.search(xq, 10))
    before = [s.ntotal for s in sh.shards]
    with pytest.raises(ValueError, match="already present"):
        sh.add_with_ids(xb[:4], np.array([1, 2, 4, ids[-1]]))  # the last lands in shard 1, already there
    assert [s.ntotal for s in sh.shards] == before
    with pytest.raises(ValueError, match="successive_ids=False"):
        _flat_shards(2, 16).add_with_ids(xb, ids)
    bad = xb[:4].copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sh.add(bad)
    assert [s.ntotal for s in sh.shards] == before
    sh.add(xb[:2])  # labels after the largest id, as one index's add
    one.add(xb[:2])
    assert_same(*sh.search(xq, 10), *one.search(xq, 10))


def test_reset_reconstruct_and_bad_inputs():
    xb, _ = _data(100, 16)
    sh = _flat_shards(3, 16)
    sh.add(xb)
    np.testing.assert_array_equal(sh.reconstruct(99).numpy(), xb[99])
    sh.reset()
    assert sh.ntotal == 0 and sh.next_label == 0
    sh.add(xb[:10])
    assert sh.search(xb[:1], 1)[1][0, 0] == 0
    with pytest.raises(ValueError, match="d=16"):
        sh.add_shard(ti.IndexFlatL2(8))
    with pytest.raises(ValueError, match="metric"):
        sh.add_shard(ti.IndexFlatIP(16))
    with pytest.raises(ValueError, match=r"shape \(n, 16\)"):
        sh.search(np.zeros((2, 8), np.float32), 1)
    with pytest.raises(ValueError, match="k must be"):
        sh.search(xb[:1], 0)
    with pytest.raises(ValueError, match="no sub-index"):
        ti.IndexShards(16).search(xb[:1], 1)
    ivf = ti.IndexShards(16)
    ivf.add_shard(ti.IndexIVFFlat(16, 4))
    with pytest.raises(ValueError, match="trained"):
        ivf.add(xb)


@pytest.mark.parametrize("nq", [0, 1, 2, 41])
def test_replicas_split_the_batch_and_match_one_index(nq):
    xb, xq = _data(1500, 16)
    xq = np.concatenate([xq, xq])[:nq]
    one = ti.IndexIVFFlat(16, 12, nprobe=3)
    one.train(xb)
    one.add(xb)
    rep = ti.IndexReplicas(16)
    for _ in range(3):
        rep.add_replica(ti.IndexIVFFlat(16, 12, nprobe=3))
    rep.train(xb)
    rep.add(xb)
    assert rep.ntotal == 1500
    D, I = rep.search(xq, 5)
    De, Ie = one.search(xq, 5)
    assert D.shape == (nq, 5)
    assert_same(D, I, De, Ie, exact=False)
    assert rep.remove_ids(np.arange(10)) == 10 and all(r.ntotal == 1490 for r in rep.replicas)
    with pytest.raises(ValueError, match="same vectors"):
        rep.add_replica(ti.IndexIVFFlat(16, 12))


@pytest.mark.gpu
def test_shards_on_cpu_and_gpu_merge_on_the_query_device():
    xb, xq = _data()
    one = ti.IndexFlatL2(16)
    one.add(xb)
    sh = ti.IndexShards(16, threaded=True)
    sh.add_shard(ti.IndexFlatL2(16, device="cuda"))
    sh.add_shard(ti.IndexFlatL2(16))
    sh.add(xb)
    D, I = sh.search(torch.from_numpy(xq).cuda(), 10)
    assert I.device.type == "cuda"
    De, Ie = one.search(xq, 10)
    assert_same(D.cpu().numpy(), I.cpu().numpy(), De, Ie)
