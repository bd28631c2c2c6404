"""IVFPQPanorama: identical results to IndexIVFPQ with the same centroids and codebooks (several data
sets, metrics, scan modes, filters, fp16 norms), real pruning, the transform, stats, persistence."""
import numpy as np
import pytest
import torch
from conftest import clustered, devices, minilm_sample

import torch_ivf as ti
from torch_ivf.panorama import panorama_stats, round_up_half
from torch_ivf.transforms import PanoramaTransform


def _pair(xb, metric, *, M=16, L=4, nlist=16, norm_dtype="float32", device="cpu", transform=True):
    d = xb.shape[1]
    pano = ti.IndexIVFPQPanorama(d, nlist, M, 8, L, metric, niter=4, pq_niter=4, norm_dtype=norm_dtype,
                                 transform=transform, device=device)
    pano.train(xb[:2000])
    pano.add(xb)
    ref = ti.IndexIVFPQ(d, nlist, M, 8, metric="ip" if metric == "cosine" else metric, device=device)
    ref.centroids = pano.centroids.clone()
    ref.pq.set_centroids(pano.pq.centroids)
    ref.add(pano._transform(pano._vectors(xb)[0]))  # (normalised for cosine, then transformed)
    return pano, ref


def assert_identical(pano, ref, xq, k=10, **kw):
    """Distances bitwise equal; ids equal except among exactly tied distances."""
    D, I = pano.search(xq, k, **kw)
    xqt = pano._transform(pano._vectors(xq)[0])
    Dr, Ir = ref.search(xqt, k, **kw)
    D, I, Dr, Ir = (np.asarray(t.cpu() if isinstance(t, torch.Tensor) else t) for t in (D, I, Dr, Ir))
    assert np.array_equal(D, Dr)
    for r, c in zip(*np.nonzero(I != Ir)):
        assert (D[r] == D[r, c]).sum() >= 2 or c == k - 1, (r, c)
    return D, I


@pytest.fixture(scope="module")
def clustered_data():
    return clustered(4000, 64, centres=60, seed=5), clustered(200, 64, centres=60, seed=6)


@pytest.fixture(scope="module")
def minilm_data():
    x = minilm_sample(5200)
    return x[:5000], x[5000:]


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_identical_to_ivfpq_clustered(clustered_data, metric):
    xb, xq = clustered_data
    pano, ref = _pair(xb, metric)
    for mode in ("grouped", "matrix"):
        pano.search_mode = ref.search_mode = mode
        for nprobe in (1, 5):
            assert_identical(pano, ref, xq, params=ti.SearchParams(nprobe=nprobe))
    assert pano.panorama_stats.ratio_dims_scanned < 1.0


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_identical_to_ivfpq_minilm_and_prunes(minilm_data, metric, device):
    """On a GPU "matrix" is the Triton wave scan on both sides, "grouped" the torch reference."""
    xb, xq = minilm_data
    pano, ref = _pair(xb, metric, M=48, L=8, norm_dtype="float16", device=device)
    for mode in ("grouped", "matrix"):
        pano.search_mode = ref.search_mode = mode
        for nprobe in (3, 8):
            assert_identical(pano, ref, xq, params=ti.SearchParams(nprobe=nprobe))
        assert pano.panorama_stats.ratio_dims_scanned < 0.6, pano.panorama_stats  # seed list included


@pytest.mark.parametrize("device", devices())
def test_identical_without_transform_filters_and_max_codes(clustered_data, device):
    xb, xq = clustered_data
    pano, ref = _pair(xb, "l2", transform=False, device=device)
    allowed = np.arange(0, len(xb), 7)
    for mode in ("grouped", "matrix"):
        pano.search_mode = ref.search_mode = mode
        D, I = assert_identical(pano, ref, xq, params=ti.SearchParams(nprobe=8, allowed=allowed))
        assert np.isin(I[I >= 0], allowed).all()
        assert_identical(pano, ref, xq, params=ti.SearchParams(nprobe=8, max_codes=700))
    for mode in ("grouped", "matrix"):  # same mode on both sides: on GPUs, matrix sums in the kernel's order
        pano.search_mode = ref.search_mode = mode
        D, I = assert_identical(pano, ref, xq[:3], k=5000, params=ti.SearchParams(nprobe=2))  # k > candidates
        assert ((I == -1) == (D == np.finfo(np.float32).max)).all() and (I[:, -1] == -1).all()


@pytest.mark.parametrize("device", devices())
def test_identical_on_device(clustered_data, device):
    xb, xq = clustered_data
    pano, ref = _pair(xb, "l2", device=device)
    for mode in ("grouped", "matrix"):
        pano.search_mode = ref.search_mode = mode
        assert_identical(pano, ref, torch.as_tensor(xq, device=device), params=ti.SearchParams(nprobe=4))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_identical_across_k_on_device(clustered_data, metric, device, monkeypatch):
    """Every k around the GPU switch from the running top-k scan (k <= 32) to the waves stays identical;
    on GPUs both with the lists many queries probe decoded by kernels.pq_lists and with every list pruned."""
    xb, xq = clustered_data
    pano, ref = _pair(xb, metric, device=device)
    pano.search_mode = ref.search_mode = "matrix"
    q = torch.as_tensor(xq, device=device)
    for min_queries in ((8, 10**9) if device == "cuda" else (None,)):  # the kernel module needs Triton
        if min_queries:
            monkeypatch.setattr("torch_ivf.kernels.pq_lists.MIN_QUERIES", min_queries)
        for k in (1, 31, 32, 33, 80):
            for nprobe in (1, 7, 16):
                assert_identical(pano, ref, q, k=k, params=ti.SearchParams(nprobe=nprobe))


def test_stats_persistence_factory_and_mutation(clustered_data, tmp_path):
    xb, xq = clustered_data
    pano, _ = _pair(xb, "l2")
    before = panorama_stats.total_dims
    pano.nprobe = 4
    D, I = pano.search(xq, 10)
    s = pano.panorama_stats
    assert 0 < s.total_dims_scanned < s.total_dims and panorama_stats.total_dims > before
    pano.save(tmp_path / "p.tivf")
    back = ti.read_index(tmp_path / "p.tivf")
    assert type(back) is ti.IndexIVFPQPanorama
    for ix in (pano, back):  # level-major: a level of a list is one contiguous block
        codes = ix.invlists.field("codes")
        assert codes.shape[1:] == (4, 4) and codes.stride() == (4, codes.shape[0] * 4, 1)
    D2, I2 = back.search(xq, 10)
    assert np.array_equal(D, D2) and np.array_equal(I, I2)
    assert pano.remove_ids(np.arange(100)) == 100
    assert not np.isin(pano.search(xq, 10)[1], np.arange(100)).any()
    rec = pano.reconstruct(500).numpy()
    assert np.linalg.norm(rec - xb[500]) < np.linalg.norm(xb[500])  # decoded back in the input space
    f = ti.index_factory(64, "PanoramaT,IVF16,PQ16x8Panorama4")
    assert isinstance(f, ti.IndexIVFPQPanorama) and f.n_levels == 4 and f.ptransform is not None
    assert ti.index_factory(64, "IVF16,PQ16Panorama8").ptransform is None


def test_transform_is_orthogonal_and_front_loads(minilm_data):
    xb, _ = minilm_data
    t = PanoramaTransform(384, 8)
    t.train(torch.from_numpy(xb[:3000]))
    m = t.matrix.double()
    assert torch.allclose(m @ m.T, torch.eye(384, dtype=torch.float64), atol=1e-5)
    e = t.level_energy(torch.from_numpy(xb[3000:]))
    assert e[0] > e[-1] * 4 and abs(float(e.sum()) - 1) < 1e-5


def test_fp16_norms_round_up():
    t = torch.rand(10000) * 3
    h = round_up_half(t)
    assert h.dtype == torch.float16 and (h.float() >= t).all()


def test_bad_input(clustered_data):
    with pytest.raises(ValueError, match="n_levels"):
        ti.IndexIVFPQPanorama(64, 16, 16, 8, 5)
    with pytest.raises(ValueError, match="norm_dtype"):
        ti.IndexIVFPQPanorama(64, 16, 16, 8, 4, norm_dtype="int8")
    with pytest.raises(TypeError, match="transform"):
        ti.IndexIVFPQPanorama(64, 16, 16, 8, 4, transform="yes")
    with pytest.raises(ValueError, match="n_levels"):
        PanoramaTransform(64, 5)


def test_transform_faiss_style_calls(clustered_data):
    """train / apply / reverse_transform on numpy give numpy back; distances are kept; bad input is named."""
    xb, xq = clustered_data
    t = ti.PanoramaTransform(64, 4)
    with pytest.raises(ValueError, match="trained"):
        t.apply(xq)
    t.train(xb)
    assert t.is_trained and t.d_in == t.d_out == 64
    y = t.apply(xq)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    np.testing.assert_allclose(t.reverse_transform(y), xq, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(y[:, None] - y[None], axis=-1),
                               np.linalg.norm(xq[:, None] - xq[None], axis=-1), rtol=1e-4, atol=1e-3)
    assert torch.equal(t.apply(torch.from_numpy(xq)), torch.from_numpy(y))
    with pytest.raises(ValueError, match=r"\(n, 64\)"):
        t.apply(xq[:, :10])
    with pytest.raises(TypeError, match="x must"):
        t.apply([[1.0] * 64])


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("nbits", [8, 5])
@pytest.mark.parametrize("bags", [True, False])
def test_identical_on_long_lists_with_ties(metric, nbits, bags, monkeypatch):
    """Lists of 500-4500 rows (IndexIVFPQ's grouped scan reads them as one bag per row with all the
    list's queries at once) and 5-bit codes (many exactly equal scores): still identical, and both of
    IndexIVFPQ's modes return the same distances and the same ids per tied score. bags=False: the
    sums of devices without embedding_bag (DirectML, MPS)."""
    if not bags:
        monkeypatch.setattr("torch_ivf.index.ivf_pq._BAG_DEVICES", ())
    xb, xq = clustered(6000, 64, centres=60, seed=5), clustered(200, 64, centres=60, seed=6)
    pano = ti.IndexIVFPQPanorama(64, 4, 16, nbits, 4, metric, niter=4, pq_niter=4)
    pano.train(xb[:3000])
    pano.add(xb)
    ref = ti.IndexIVFPQ(64, 4, 16, nbits, metric="ip" if metric == "cosine" else metric)
    ref.centroids = pano.centroids.clone()
    ref.pq.set_centroids(pano.pq.centroids)
    ref.add(pano._transform(pano._vectors(xb)[0]))
    assert int(ref.invlists.sizes.max()) >= 2 * ref.pq.ksub
    out = {}
    for mode in ("grouped", "matrix"):
        pano.search_mode = ref.search_mode = mode
        for nprobe in (1, 3):
            out[mode, nprobe] = assert_identical(pano, ref, xq, params=ti.SearchParams(nprobe=nprobe))
    for nprobe in (1, 3):
        (D1, I1), (D2, I2) = out["grouped", nprobe], out["matrix", nprobe]
        assert np.array_equal(D1, D2)
        assert all(sorted(zip(*a)) == sorted(zip(*b)) for a, b in zip(zip(D1, I1), zip(D2, I2)))
    assert pano.panorama_stats.ratio_dims_scanned < 0.9


@pytest.mark.gpu
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_identical_with_long_list_kernel(metric):
    """A catch-all list near the data's mean that every query probes takes kernels.pq_lists (decode +
    GEMM) in both indexes: still identical, and equal to the torch path to rounding."""
    from conftest import assert_knn_equal

    from torch_ivf import kernels
    from torch_ivf.kernels.pq_lists import busy_lists
    rng = np.random.default_rng(7)
    xb = clustered(4000, 64, centres=60, seed=5)
    xb = np.concatenate([xb, xb.mean(0) + 0.05 * rng.standard_normal((2000, 64)).astype(np.float32)])
    xq = clustered(300, 64, centres=60, seed=6)
    pano, ref = _pair(xb, metric, device="cuda")
    pano.search_mode = ref.search_mode = "matrix"
    q = torch.as_tensor(xq, device="cuda")
    probe = pano._coarse(pano._transform(q), 4)[0]
    assert busy_lists(pano.nlist, probe).any()
    for params in (ti.SearchParams(nprobe=4), ti.SearchParams(nprobe=4, allowed=np.arange(0, len(xb), 3)),
                   ti.SearchParams(nprobe=4, max_codes=2500)):
        for k in (10, 80):
            D, I = assert_identical(pano, ref, q, k=k, params=params)
            kernels.enabled = False
            try:
                Dt, It = pano.search(q, k, params=params)
            finally:
                kernels.enabled = True
            assert_knn_equal(D, I, Dt.cpu().numpy(), It.cpu().numpy(), rtol=1e-4, atol=1e-2)


def test_search_transform_is_the_public_one_without_its_checks():
    """Panorama's search applies its rotation without apply()'s input checks (one of them waits for
    the device, which a CUDA-graph capture of the search cannot): the same product, bitwise."""
    x = clustered(600, 16, centres=10, seed=9)
    pano = ti.IndexIVFPQPanorama(16, 8, 4, 8, 4, nprobe=4)
    pano.train(x)
    q = torch.as_tensor(x[:20])
    assert torch.equal(pano._transform(q), torch.as_tensor(pano.ptransform.apply(q)))
