"""torch_ivf.bulk (train on a sample, streamed add, memory checks) and IndexRefine's refine_device."""
import numpy as np
import pytest
import torch
from conftest import assert_knn_equal, clustered

import torch_ivf as ti
from torch_ivf import bulk
from torch_ivf.invlists import InvertedLists


@pytest.fixture(scope="module")
def data():
    return clustered(6000, 32, centres=30, seed=41), clustered(60, 32, centres=30, seed=42)


@pytest.fixture
def memmap(tmp_path, data):
    path = tmp_path / "xb.npy"
    np.save(path, data[0])
    return np.load(path, mmap_mode="r")


def _trained(xb, cls=ti.IndexIVFFlat, **kw):
    index = cls(32, 16, nprobe=4, niter=4, **kw) if cls is ti.IndexIVFFlat else cls(32, 16, 8, 6, nprobe=4, niter=4, pq_niter=4)
    index.train(xb[:2000])
    return index


def _same_training(a):
    b = ti.clone_index(a)
    b.reset()
    return b


@pytest.mark.parametrize("cls", [ti.IndexIVFFlat, ti.IndexIVFPQ])
def test_add_in_chunks_from_memmap_equals_one_add(data, memmap, cls, monkeypatch):
    xb, xq = data
    one = _trained(xb, cls)
    chunked = _same_training(one)
    one.add(xb)
    moves = []
    for name in ("_relocate", "compact"):
        real = getattr(InvertedLists, name)
        monkeypatch.setattr(InvertedLists, name, lambda self, *a, _r=real, _n=name: (moves.append(_n), _r(self, *a))[1])
    assert bulk.add_in_chunks(chunked, memmap, chunk_size=777) == len(xb)
    assert moves == ["_relocate"]  # the reserve pass gave every list its room at once; the chunks moved nothing
    assert chunked.ntotal == one.ntotal and chunked.next_label == len(xb)
    assert_knn_equal(*chunked.search(xq, 10), *one.search(xq, 10))
    lists = chunked.invlists
    assert lists.used == int(lists.caps.sum()) and lists.used <= len(xb) * (1 + 1 / 32) + 8 * lists.nlist


def test_add_in_chunks_iterator_tensor_and_ids(data):
    xb, xq = data
    ref = _trained(xb)
    ids = np.arange(len(xb), dtype=np.int64)[::-1].copy() * 3
    from_iter, from_tensor = _same_training(ref), _same_training(ref)
    ref.add_with_ids(xb, ids)
    chunks = (xb[a:a + 1000] for a in range(0, len(xb), 1000))
    assert bulk.add_in_chunks(from_iter, chunks, ids=ids, chunk_size=300) == len(xb)  # chunks split further
    bulk.add_in_chunks(from_tensor, torch.from_numpy(xb), ids=torch.from_numpy(ids), reserve=False)
    for index in (from_iter, from_tensor):
        assert_knn_equal(*index.search(xq, 10), *ref.search(xq, 10))


def test_add_in_chunks_refine_and_shards(data, memmap):
    xb, xq = data
    ref = ti.IndexRefine(ti.IndexIVFPQ(32, 16, 8, 6, nprobe=4, niter=4, pq_niter=4), k_factor=4)
    ref.train(xb[:2000])
    chunked = ti.clone_index(ref)
    ref.add(xb)
    bulk.add_in_chunks(chunked, memmap, chunk_size=1000)
    assert_knn_equal(*chunked.search(xq, 10), *ref.search(xq, 10))
    shards = ti.IndexShards(32)
    for _ in range(2):
        shards.add_shard(ti.IndexFlat(32))
    bulk.add_in_chunks(shards, memmap, chunk_size=2500)
    flat = ti.IndexFlat(32)
    flat.add(xb)
    assert_knn_equal(*shards.search(xq, 5), *flat.search(xq, 5))


def test_add_in_chunks_rejects_bad_input_before_adding(data):
    xb, _ = data
    index = _trained(xb)
    for x, kw, err in [(xb[:, :16], {}, ValueError), ([1, 2], {}, TypeError), (xb, {"chunk_size": 0}, ValueError),
                       (xb, {"ids": np.arange(5)}, ValueError), (xb, {"ids": [1, 2]}, TypeError),
                       (xb, {"progress": "yes"}, TypeError), (iter([xb[:10], xb[:10, :8]]), {}, ValueError)]:
        with pytest.raises(err):
            bulk.add_in_chunks(index, x, **kw)
    assert index.ntotal in (0, 10)  # only the iterator's first good chunk can have gone in
    with pytest.raises(ValueError, match="trained"):
        bulk.add_in_chunks(ti.IndexIVFFlat(32, 16), xb)


def test_bytes_per_vector_and_memory_needed():
    # vectors, the l2 norm term (float32), the int64 label
    assert bulk.bytes_per_vector(ti.IndexFlat(32)) == 32 * 4 + 4 + 8
    assert bulk.bytes_per_vector(ti.IndexIVFFlat(32, 16, dtype=torch.float16)) == 32 * 2 + 4 + 8
    assert bulk.bytes_per_vector(ti.IndexIVFPQ(32, 16, 8)) == 8 + 4 + 8  # codes, per-vector term, label
    refine = ti.IndexRefine(ti.IndexIVFPQ(32, 16, 8), refine_dtype=torch.float16)
    assert bulk.bytes_per_vector(refine) == 20 + 32 * 2 + 4 + 8
    need = bulk.memory_needed(ti.IndexIVFPQ(96, 16384, 48), 100_000_000)
    (dev, b), = need.items()
    # 60 B a vector with the lists' spare rows, plus one 256 MiB chunk's working memory
    assert dev == torch.device("cpu") and 100_000_000 * 60 * 1.03 < b < 100_000_000 * 60 * 1.05 + (1.5 * 2**30)
    with pytest.raises(ValueError, match="n must be"):
        bulk.memory_needed(refine, -1)
    with pytest.raises(TypeError):
        bulk.bytes_per_vector(ti.IndexShards(32))


def test_check_fits_names_bytes_needed_and_free(monkeypatch, data):
    xb, _ = data
    index = _trained(xb)
    assert bulk.check_fits(index, 1000)[torch.device("cpu")] > 1000 * (32 * 4 + 8)
    monkeypatch.setattr(bulk, "free_bytes", lambda device: 1 << 20)
    with pytest.raises(MemoryError, match=r"needs .*GiB.* on cpu .*but .*GiB \(1,048,576 bytes\) is free"):
        bulk.check_fits(index, 10_000_000)
    with pytest.raises(MemoryError):  # the streamed add checks first and adds nothing
        bulk.add_in_chunks(index, np.broadcast_to(np.zeros(32, dtype=np.float32), (10_000_000, 32)))
    assert index.ntotal == 0
    with pytest.raises(ValueError, match="margin"):
        bulk.check_fits(index, 10, margin=1.5)


def test_train_on_sample_from_memmap(data, memmap, capsys):
    xb, xq = data
    a = ti.IndexIVFFlat(32, 16, niter=4)
    rows = bulk.train_on_sample(a, memmap, 3000, seed=5, progress=True)
    assert a.is_trained and len(rows) == 3000 and bool((rows[1:] > rows[:-1]).all())
    b = ti.IndexIVFFlat(32, 16, niter=4)
    b.train(xb[rows.numpy()])
    assert torch.equal(a.centroids, b.centroids)
    assert "train" in capsys.readouterr().err  # the tqdm bar (stderr)
    c = ti.IndexIVFFlat(32, 16, niter=4)
    assert len(bulk.train_on_sample(c, torch.from_numpy(xb))) == len(xb)  # default sample >= 65,536: every row
    with pytest.raises(ValueError, match="n_sample"):
        bulk.train_on_sample(ti.IndexIVFFlat(32, 16), xb, 0)
    with pytest.raises(ValueError, match=r"shape \(n, 32\)"):
        bulk.train_on_sample(ti.IndexIVFFlat(32, 16), xb[:, :5])


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_refine_device_cpu_equals_on_device_refine(data, metric):
    xb, xq = data
    on_device = ti.IndexRefine(ti.IndexIVFPQ(32, 16, 8, 6, metric=metric, nprobe=4, niter=4, pq_niter=4), k_factor=6)
    on_device.train(xb[:2000])
    host = ti.IndexRefine(ti.clone_index(on_device.base), k_factor=6, refine_device="cpu")
    on_device.add(xb)
    host.add(xb)
    assert host.refine.device == torch.device("cpu") and host.config()["refine_device"] == "cpu"
    for params in (None, ti.SearchParams(allowed=np.arange(0, len(xb), 50))):
        D0, I0 = on_device.search(xq, 10, params=params)
        D1, I1 = host.search(xq, 10, params=params)
        np.testing.assert_array_equal(I1, I0)
        np.testing.assert_allclose(D1, D0, rtol=1e-6, atol=1e-6)
    back = ti.clone_index(host)  # the choice is saved with the index
    assert back.refine_device == torch.device("cpu")
    np.testing.assert_array_equal(back.search(xq, 10)[1], host.search(xq, 10)[1])
    with pytest.raises(ValueError, match="refine_device"):
        ti.IndexRefine(ti.IndexIVFPQ(32, 16, 8), refine_device="no-such-device")
