"""IVFPQ: faiss parity through from_faiss (same centroids, codebooks, codes), recall parity when
self-trained, nbits 4/8, persistence, mutation, factory and bad input."""

import numpy as np
import pytest
import torch
from conftest import clustered, devices, exact_knn, minilm_sample, recall_at_k

import torch_ivf as ti
from torch_ivf.interop import from_faiss, to_faiss
from torch_ivf.pq import ProductQuantizer, pack_codes, unpack_codes

faiss = pytest.importorskip("faiss")
D_ = 32


def assert_knn_equal(D, I, De, Ie, *, rtol=1e-5, atol=1e-3):
    """Same distances; ids equal except inside groups tied within tolerance (the k-th included)."""
    D, I, De, Ie = (np.asarray(a) for a in (D, I, De, Ie))
    np.testing.assert_allclose(D, De, rtol=rtol, atol=atol)
    tol = atol + rtol * np.abs(De)
    for r in np.nonzero((I != Ie).any(1))[0]:
        for c in np.nonzero(I[r] != Ie[r])[0]:
            tied = np.abs(De[r] - De[r, c]) <= tol[r]
            assert tied.sum() >= 2 or c == I.shape[1] - 1, (r, c, D[r], De[r])


@pytest.fixture(scope="module")
def data():
    xb = clustered(8000, D_, centres=100, seed=21)
    xq = clustered(300, D_, centres=100, seed=22)
    return xb, xq


def _faiss_ivfpq(xb, nlist, M, nbits=8, metric=faiss.METRIC_L2, by_residual=True):
    q = faiss.IndexFlat(xb.shape[1], metric)
    f = faiss.IndexIVFPQ(q, xb.shape[1], nlist, M, nbits, metric)
    f.by_residual = by_residual
    f.cp.niter = 10
    f.pq.cp.niter = 10
    f.train(xb[:4000])
    f.add(xb)
    f.__dict__["_keep"] = q
    return f


@pytest.fixture(scope="module")
def faiss_l2(data):
    return _faiss_ivfpq(data[0], 32, 8)


@pytest.mark.parametrize("mode", ["grouped", "matrix"])
def test_from_faiss_returns_faiss_results(data, faiss_l2, mode):
    xb, xq = data
    ours = from_faiss(faiss_l2)
    ours.search_mode = mode
    for nprobe in (1, 4, 16):
        faiss_l2.nprobe = nprobe
        Df, If = faiss_l2.search(xq, 10)
        D, I = ours.search(xq, 10, params=ti.SearchParams(nprobe=nprobe))
        assert_knn_equal(D, I, Df, If, rtol=1e-5, atol=1e-3)
        assert (I == If).mean() > 0.9
    for max_codes in (5, 250):  # the last list scanned is cut short where max_codes runs out
        Df, If = faiss_l2.search(xq, 10, params=faiss.SearchParametersIVF(nprobe=8, max_codes=max_codes))
        D, I = ours.search(xq, 10, params=ti.SearchParams(nprobe=8, max_codes=max_codes))
        assert_knn_equal(D, I, Df, If, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("metric,by_residual,nbits", [(faiss.METRIC_INNER_PRODUCT, True, 8),
                                                      (faiss.METRIC_L2, False, 8), (faiss.METRIC_L2, True, 4)])
def test_from_faiss_variants(data, metric, by_residual, nbits):
    xb, xq = data
    f = _faiss_ivfpq(xb, 16, 8, nbits, metric, by_residual)
    ours = from_faiss(f)
    assert ours.nbits == nbits and ours.by_residual == by_residual
    for nprobe in (1, 8):
        f.nprobe = nprobe
        Df, If = f.search(xq, 10)
        D, I = ours.search(xq, 10, params=ti.SearchParams(nprobe=nprobe))
        assert_knn_equal(D, I, Df, If, rtol=1e-5, atol=1e-3)


def test_to_faiss_round_trip(data, faiss_l2):
    xb, xq = data
    ours = from_faiss(faiss_l2)
    ours.remove_ids(np.arange(0, 8000, 3))
    ours.nprobe = 4
    f = to_faiss(ours)
    Df, If = f.search(xq, 10)
    D, I = ours.search(xq, 10)
    assert_knn_equal(D, I, Df, If, rtol=1e-5, atol=1e-3)
    assert np.array_equal(from_faiss(f).search(xq, 10)[1], I)


@pytest.mark.parametrize("nbits", [8, 4])
def test_product_quantizer_matches_faiss_api(data, nbits):
    """faiss.ProductQuantizer's calls on numpy: same code_size, compute_codes (bit-packed) and decode."""
    xb, _ = data
    M = 8
    pq = ti.ProductQuantizer(D_, M, nbits, niter=5)
    pq.train(xb[:2000])
    fpq = faiss.ProductQuantizer(D_, M, nbits)
    faiss.copy_array_to_vector(pq.centroids.numpy().ravel(), fpq.centroids)
    assert pq.code_size == fpq.code_size == (M * nbits + 7) // 8
    codes, fcodes = pq.compute_codes(xb), fpq.compute_codes(xb)
    assert isinstance(codes, np.ndarray) and codes.dtype == np.uint8 and codes.shape == fcodes.shape
    assert (codes == fcodes).all(1).mean() > 0.999  # nearest sub-centroid: float ties aside
    rec = pq.decode(fcodes)
    assert isinstance(rec, np.ndarray) and np.allclose(rec, fpq.decode(fcodes), atol=1e-6)
    assert np.array_equal(pq.decode(torch.from_numpy(unpack_codes(fcodes, M, nbits))).numpy(), rec)
    with pytest.raises(ValueError, match="codes"):
        pq.decode(codes[:, :-1] if nbits == 8 else np.zeros((2, M + 1), np.uint8))
    with pytest.raises(ValueError, match="trained"):
        ti.ProductQuantizer(D_, M, nbits).compute_codes(xb)
    index = ti.IndexIVFPQ(D_, 16, M, nbits)
    assert index.code_size == pq.code_size
    for ours, theirs in ((pq.compute_distance_tables, fpq.compute_distance_tables),
                         (pq.compute_inner_prod_tables, fpq.compute_inner_prod_tables)):
        tables = np.empty((5, M, pq.ksub), np.float32)
        theirs(5, faiss.swig_ptr(np.ascontiguousarray(xb[:5])), faiss.swig_ptr(tables))
        np.testing.assert_allclose(ours(xb[:5]), tables, rtol=1e-4, atol=1e-4)


def test_pack_unpack_codes_round_trip():
    rng = np.random.default_rng(0)
    for nbits in (1, 3, 4, 5, 8):
        codes = rng.integers(0, 1 << nbits, (50, 7)).astype(np.uint8)
        assert np.array_equal(unpack_codes(pack_codes(codes, nbits), 7, nbits), codes)


def tie_aware_recall(I, xb, xq, gtD, metric):
    """Recall@k counting a returned id as a hit when its exact distance is no worse than the exact k-th:
    real corpora hold duplicates, and which of several tied ids comes back is arbitrary."""
    xb64, xq64 = xb.astype(np.float64), xq.astype(np.float64)
    if metric == "cosine":
        xb64 /= np.linalg.norm(xb64, axis=1, keepdims=True)
        xq64 /= np.linalg.norm(xq64, axis=1, keepdims=True)
    hits = 0
    for r in range(len(I)):
        v = xb64[I[r][I[r] >= 0]]
        if metric == "l2":
            hits += (((v - xq64[r]) ** 2).sum(1) <= gtD[r, -1] + 1e-6).sum()
        else:
            hits += (v @ xq64[r] >= gtD[r, -1] - 1e-6).sum()
    return hits / I.size


def _recall_pair(xb, xq, nlist, M, metric, nprobes):
    fm = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    f = _faiss_ivfpq(xb, nlist, M, 8, fm)
    ours = ti.IndexIVFPQ(xb.shape[1], nlist, M, 8, metric, niter=10, pq_niter=10)
    ours.train(xb[:4000])
    ours.add(xb)
    gtD, _ = exact_knn(xb, xq, 10, metric)
    out = []
    for nprobe in nprobes:
        f.nprobe = ours.nprobe = nprobe
        out.append(tuple(tie_aware_recall(ix.search(xq, 10)[1], xb, xq, gtD, metric) for ix in (ours, f)))
    return out


def test_self_trained_recall_within_002_of_faiss_clustered(data):
    xb, xq = data
    for ro, rf in _recall_pair(xb, xq, 32, 8, "l2", (2, 8)):
        assert ro >= rf - 0.02, (ro, rf)


def test_self_trained_recall_within_002_of_faiss_minilm():
    x = minilm_sample(8300)
    xb, xq = x[:8000], x[8000:]
    for ro, rf in _recall_pair(xb, xq, 32, 24, "ip", (2, 8)) + _recall_pair(xb, xq, 32, 48, "l2", (4,)):
        assert ro >= rf - 0.02, (ro, rf)


@pytest.fixture(scope="module")
def trained(data):
    xb, _ = data
    index = ti.IndexIVFPQ(D_, 16, 8, niter=5, pq_niter=5)
    index.train(xb[:3000])
    return index


def _fresh(trained, metric=None):
    index = ti.IndexIVFPQ(D_, 16, 8, metric=metric or trained.metric, niter=5, pq_niter=5)
    index.centroids = trained.centroids.clone()
    index.pq.set_centroids(trained.pq.centroids)
    return index


@pytest.mark.parametrize("device", devices())
def test_modes_agree_bitwise(data, trained, device):
    xb, xq = data
    index = _fresh(trained).to(device)
    index.add(xb)
    out = {}
    for mode in ("grouped", "matrix"):
        index.search_mode = mode
        out[mode] = index.search(xq, 10, params=ti.SearchParams(nprobe=5))
    if device == "cpu":  # both modes sum the look-ups left to right; ties go to the first in the slab
        (D1, I1), (D2, I2) = out["grouped"], out["matrix"]
        assert np.array_equal(D1, D2)
        assert all(sorted(zip(*a)) == sorted(zip(*b)) for a, b in zip(zip(D1, I1), zip(D2, I2)))
    else:  # GPU matrix = the Triton scan, which adds the sub-quantizers in order m = 0 .. M-1
        assert_knn_equal(*out["grouped"], *out["matrix"], rtol=1e-5, atol=1e-4)


def test_add_remove_reconstruct_merge(data, trained, tmp_path):
    xb, xq = data
    a, b = _fresh(trained), _fresh(trained)
    a.add_with_ids(xb[:4000], np.arange(4000))
    b.add_with_ids(xb[4000:], np.arange(4000))
    rec = a.reconstruct_batch([0, 1, 2]).numpy()
    assert np.abs(rec - xb[:3]).mean() < np.abs(xb[:3]).mean() * 0.5  # decoded, not exact
    a.merge_from(b, add_id=4000)
    assert a.ntotal == 8000 and b.ntotal == 0
    assert a.remove_ids(np.arange(100)) == 100 and a.ntotal == 7900
    D, I = a.search(xq, 10)
    assert (I >= 100).all()
    a.save(tmp_path / "pq.tivf")
    back = ti.IndexIVFPQ.load(tmp_path / "pq.tivf")
    D2, I2 = back.search(xq, 10)
    assert np.array_equal(D, D2) and np.array_equal(I, I2)
    with pytest.raises(ValueError, match="reset"):
        a.train(xb[:3000])


def test_factory_and_cosine(data):
    xb, xq = data
    index = ti.index_factory(D_, "IVF16,PQ8x6", "cosine", niter=5, pq_niter=5)
    assert isinstance(index, ti.IndexIVFPQ) and index.nbits == 6 and index.M == 8
    index.train(xb[:3000])
    index.add(xb)
    index.nprobe = 16
    _, gt = exact_knn(xb, xq, 10, "cosine")
    D, I = index.search(xq, 10)
    assert recall_at_k(I, gt) > 0.2 and (np.diff(D, axis=1) <= 1e-6).all()
    assert isinstance(ti.index_factory(D_, "IVF16,PQ8"), ti.IndexIVFPQ)


def test_bad_input_names_the_argument(trained, data):
    with pytest.raises(ValueError, match="M"):
        ti.IndexIVFPQ(D_, 16, 5)
    with pytest.raises(ValueError, match="nbits"):
        ti.IndexIVFPQ(D_, 16, 8, 9)
    with pytest.raises(TypeError, match="by_residual"):
        ti.IndexIVFPQ(D_, 16, 8, by_residual="yes")
    index = _fresh(trained)
    with pytest.raises(ValueError, match="x"):
        index.add(np.zeros((3, D_ + 1), np.float32))
    assert index.ntotal == 0
    with pytest.raises(ValueError, match="centroids"):
        ProductQuantizer(D_, 8).set_centroids(torch.zeros(8, 256, 3))


def _faiss_ivfflat(xb, nlist):
    f = faiss.IndexIVFFlat(faiss.IndexFlatL2(xb.shape[1]), xb.shape[1], nlist)
    f.cp.niter = 5
    f.train(xb[:4000])
    f.__dict__["_keep"] = f.quantizer
    return f


@pytest.mark.parametrize("kind", ["flat", "ivfflat-300", "ivfpq8", "ivfpq4", "ivfpq-ip-no-residual"])
def test_sa_encode_decode_match_faiss(data, kind):
    """Standalone codes: same bytes as Faiss (list number little-endian in coarse_code_size bytes, then
    the codec's code) and the same decoded vectors, for indexes converted with from_faiss."""
    xb, xq = data
    if kind == "flat":
        f, ours = faiss.IndexFlatL2(D_), ti.IndexFlat(D_)
    elif kind == "ivfflat-300":  # 300 lists: two bytes of list number
        f = _faiss_ivfflat(xb, 300)
        ours = from_faiss(f)
    else:
        ip = kind.endswith("no-residual")
        f = _faiss_ivfpq(xb, 32, 8, 4 if kind == "ivfpq4" else 8,
                         faiss.METRIC_INNER_PRODUCT if ip else faiss.METRIC_L2, by_residual=not ip)
        ours = from_faiss(f)
    assert ours.sa_code_size() == f.sa_code_size()
    codes = f.sa_encode(xq)
    np.testing.assert_array_equal(ours.sa_encode(xq), codes)
    np.testing.assert_allclose(ours.sa_decode(codes), f.sa_decode(codes), rtol=1e-6, atol=1e-6)
    t = ours.sa_encode(torch.from_numpy(xq))  # tensors in, tensors out
    assert isinstance(t, torch.Tensor) and torch.equal(t.cpu(), torch.from_numpy(codes))


@pytest.mark.parametrize("make", [
    lambda: ti.IndexIVFFlat(D_, 16, dtype=torch.float16, niter=5),
    lambda: ti.IndexIVFPQPanorama(D_, 16, 8, 8, 4, niter=5, pq_niter=5),
    lambda: ti.IndexIVFFlatPanorama(D_, 16, 4, transform=True, niter=5),
    lambda: ti.IndexIVFPQ(D_, 16, 8, 8, "cosine", niter=5, pq_niter=5),
])
def test_sa_codes_decode_like_the_stored_vectors(data, make):
    """Types Faiss lacks: decoding a standalone code gives what add() + reconstruct() gives."""
    xb, xq = data
    index = make()
    index.train(xb[:4000])
    index.add(xq)
    codes = index.sa_encode(xq)
    assert codes.dtype == np.uint8 and codes.shape == (len(xq), index.sa_code_size())
    np.testing.assert_allclose(index.sa_decode(codes), index.reconstruct_n(0, len(xq)).cpu().numpy(),
                               rtol=1e-5, atol=1e-5)


def test_sa_bad_input(trained, data):
    codes = trained.sa_encode(data[1][:3])
    with pytest.raises(TypeError, match="codes must be uint8"):
        trained.sa_decode(codes.astype(np.int32))
    with pytest.raises(ValueError, match=r"codes must have shape \(n, 9\)"):
        trained.sa_decode(codes[:, :5])
    bad = codes.copy()
    bad[0, 0] = 200  # list 200 of 16
    with pytest.raises(ValueError, match="nlist=16"):
        trained.sa_decode(bad)
    with pytest.raises(ValueError, match="trained"):
        ti.IndexIVFPQ(D_, 16, 8).sa_encode(data[1][:3])
