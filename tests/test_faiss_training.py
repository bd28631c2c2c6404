"""torch_ivf.faiss against faiss-cpu: clustering parameters (index.cp, pq.cp), flat-code indexes
numbered by position through merge_from, IndexRefine over a filled refine index, the SQ classes."""
import numpy as np
import pytest
import torch

import torch_ivf
import torch_ivf.faiss as tfaiss

faiss = pytest.importorskip("faiss")

D = 16


@pytest.fixture(scope="module")
def data():
    rs = np.random.RandomState(3)
    return rs.rand(600, D).astype("float32"), rs.rand(20, D).astype("float32")


def test_cp_fields_and_defaults_match_faiss():
    ours, ref = tfaiss.IndexIVFFlat(tfaiss.IndexFlatL2(D), D, 8), faiss.IndexIVFFlat(faiss.IndexFlatL2(D), D, 8)
    for name in ("seed", "max_points_per_centroid", "min_points_per_centroid", "spherical", "nredo"):
        assert getattr(ours.cp, name) == getattr(ref.cp, name), name
    ip = tfaiss.IndexIVFFlat(tfaiss.IndexFlatIP(D), D, 8, tfaiss.METRIC_INNER_PRODUCT)
    rip = faiss.IndexIVFFlat(faiss.IndexFlatIP(D), D, 8, faiss.METRIC_INNER_PRODUCT)
    assert ip.cp.spherical == rip.cp.spherical
    assert tfaiss.ProductQuantizer(D, 4, 8).cp.seed == faiss.ProductQuantizer(D, 4, 8).cp.seed


def test_cp_is_honoured(data):
    xb, _ = data

    def centroids(**cp):
        index = torch_ivf.IndexIVFFlat(D, 8)
        for k, v in cp.items():
            setattr(index.cp, k, v)
        index.train(xb)
        return index.centroids.clone()

    base = centroids()
    assert torch.equal(base, centroids())  # seeded
    assert not torch.equal(base, centroids(seed=7))
    assert not torch.equal(base, centroids(niter=1))
    assert torch.equal(centroids(niter=0), centroids(niter=0, seed=1234))
    sph = centroids(spherical=True)
    torch.testing.assert_close(sph.norm(dim=1), torch.ones(8))
    index = torch_ivf.IndexIVFFlat(D, 8)
    index.cp.seed = 5
    assert index.seed == 5 and index.config()["seed"] == 5  # one setting, saved with the index
    index.niter = 3
    assert index.cp.niter == 3


def test_pq_cp_is_honoured(data):
    xb, _ = data
    a, b = torch_ivf.ProductQuantizer(D, 4, 4), torch_ivf.ProductQuantizer(D, 4, 4)
    b.cp.niter = 0  # initial sample only
    a.train(xb)
    b.train(xb)
    assert not torch.equal(a.centroids, b.centroids)
    ivfpq = torch_ivf.IndexIVFPQ(D, 4, 4, 4)
    ivfpq.pq.cp.niter = 2
    assert ivfpq.pq_niter == 2 and ivfpq.config()["pq_niter"] == 2


@pytest.mark.parametrize("name,value,exc", [("niter", -1, ValueError), ("seed", 1.5, ValueError),
                                            ("spherical", 1, TypeError), ("nbits", 3, AttributeError)])
def test_cp_refuses_bad_values(name, value, exc):
    cp = tfaiss.ClusteringParameters()
    with pytest.raises(exc, match=name):
        setattr(cp, name, value)


@pytest.mark.parametrize("key", ["Flat", "PQ4np", "SQ8"])
def test_flat_codes_merge_numbers_after_this_index(data, key):
    xb, xq = data
    got = []
    for lib in (tfaiss, faiss):
        a = lib.index_factory(D, key)
        a.train(xb)
        b = lib.clone_index(a)
        a.add(xb[:200])
        b.add(xb[200:])
        a.merge_from(b)
        assert a.ntotal == len(xb) and b.ntotal == 0
        got.append(a.search(xq, 5)[1])
        assert type(a).__name__ == {"Flat": "IndexFlat", "PQ4np": "IndexPQ", "SQ8": "IndexScalarQuantizer"}[key]
    if key != "PQ4np":  # PQ codebooks are trained differently
        np.testing.assert_array_equal(got[0], got[1])
    ours = tfaiss.index_factory(D, key)
    ours.train(xb)
    with pytest.raises(RuntimeError):  # Faiss refuses add_id on flat-code indexes too
        ours.merge_from(tfaiss.clone_index(ours), 10)


def test_positional_remove_and_add_with_ids_on_sq(data):
    xb, xq = data
    ours, ref = tfaiss.IndexScalarQuantizer(D, tfaiss.ScalarQuantizer.QT_8bit), \
        faiss.IndexScalarQuantizer(D, faiss.ScalarQuantizer.QT_8bit)
    for index in (ours, ref):
        index.train(xb)
        index.add(xb)
        assert index.remove_ids(np.arange(0, 600, 3)) == 200
    np.testing.assert_array_equal(ours.search(xq, 5)[1], ref.search(xq, 5)[1])
    for index in (ours, ref):
        with pytest.raises(RuntimeError):
            index.add_with_ids(xb[:2], np.array([1000, 1001]))


def test_ivf_sq_shared_quantizer(data):
    xb, xq = data
    q = tfaiss.IndexFlatL2(D)
    index = tfaiss.IndexIVFScalarQuantizer(q, D, 8, tfaiss.ScalarQuantizer.QT_8bit)
    index.train(xb)
    assert q.ntotal == 8
    index.add(xb)
    index.nprobe = 8
    exact = tfaiss.IndexFlatL2(D)
    exact.add(xb)
    assert (index.search(xq, 1)[1] == exact.search(xq, 1)[1]).mean() > 0.9


def test_refine_over_filled_indexes(data):
    xb, xq = data
    got = []
    for lib in (tfaiss, faiss):
        base = lib.index_factory(D, "PQ4x4np")
        base.train(xb)
        base.add(xb)
        flat = lib.IndexFlatL2(D)
        flat.add(xb)
        refine = lib.IndexRefine(base, flat)
        refine.k_factor = 600  # every vector is a candidate: exact results
        got.append(refine.search(xq, 5))
        lims, dist, ids = refine.range_search(xq, 1.0)
        np.testing.assert_allclose(dist, ((xq[np.repeat(np.arange(len(xq)), np.diff(lims).astype(int))]
                                           - xb[ids]) ** 2).sum(1), rtol=1e-4)
    np.testing.assert_array_equal(got[0][1], got[1][1])
    np.testing.assert_allclose(got[0][0], got[1][0], rtol=1e-5)
    short = tfaiss.IndexFlatL2(D)
    short.add(xb[:10])
    with pytest.raises(ValueError, match="same ids"):
        tfaiss.IndexRefine(tfaiss.index_factory(D, "Flat"), short)


@pytest.mark.parametrize("nbits", [3, 8, 10, 12, 16])
def test_pq_codes_up_to_16_bits_match_faiss(nbits):
    rs = np.random.RandomState(nbits)
    ours, ref = tfaiss.ProductQuantizer(16, 2, nbits), faiss.ProductQuantizer(16, 2, nbits)
    assert ours.code_size == ref.code_size
    centroids = rs.rand(2, 1 << nbits, 8).astype("float32")
    faiss.copy_array_to_vector(centroids.ravel(), ref.centroids)
    ours.set_centroids(torch.from_numpy(centroids))
    idx = rs.randint(1 << nbits, size=(100, 2))
    x = np.hstack((centroids[0, idx[:, 0]], centroids[1, idx[:, 1]]))
    codes = ours.compute_codes(x)
    np.testing.assert_array_equal(codes, ref.compute_codes(x))
    np.testing.assert_array_equal(ours.decode(codes), x)  # exactly encodable
    np.testing.assert_array_equal(ours.encode(x).numpy(), idx)


def test_pq_10_bits_trains_and_beats_8_bits():
    x = np.random.RandomState(7).rand(1200, 16).astype("float32")
    errs = []
    for nbits in (8, 10):
        pq = tfaiss.ProductQuantizer(16, 4, nbits)
        pq.cp.niter = 4
        pq.train(x)
        errs.append(((pq.decode(pq.compute_codes(x)) - x) ** 2).sum())
    assert errs[1] < errs[0]
    with pytest.raises(ValueError, match="16"):
        tfaiss.ProductQuantizer(16, 4, 17)
