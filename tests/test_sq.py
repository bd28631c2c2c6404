"""Scalar-quantizer codecs: Faiss's codes and ranges bit for bit, the same ids as faiss-cpu on the same
trained index, round trips (persistence, from_faiss/to_faiss, sa codes), remove/reconstruct/merge,
filters, and bad input that leaves the index unchanged."""
from __future__ import annotations

import platform

import numpy as np
import pytest
import torch

import torch_ivf as ti
from conftest import clustered, exact_knn
from torch_ivf.collection import Collection
from torch_ivf.interop import from_faiss, to_faiss

faiss = pytest.importorskip("faiss")

SQ = ti.ScalarQuantizer
QTYPES = [SQ.QT_8bit, SQ.QT_6bit, SQ.QT_4bit, SQ.QT_8bit_uniform, SQ.QT_fp16, SQ.QT_bf16]
FAISS_METRIC = {"l2": faiss.METRIC_L2, "ip": faiss.METRIC_INNER_PRODUCT}


@pytest.fixture(scope="module")
def data():
    x = clustered(4200, 33, centres=30, seed=21)  # d = 33: odd, and not a multiple of 4 (4- and 6-bit packing)
    return x[:4000], x[4000:]


@pytest.mark.parametrize("qtype", QTYPES)
def test_scalar_quantizer_matches_faiss_bit_for_bit(data, qtype):
    xb, xq = data
    ours, ref = SQ(33, qtype), faiss.ScalarQuantizer(33, qtype)
    ours.train(xb)
    ref.train(xb)
    np.testing.assert_array_equal(ours.trained.numpy(), faiss.vector_to_array(ref.trained))
    assert ours.code_size == ref.code_size
    outside = np.concatenate([xq, 3 * xq])  # values beyond the trained range are clamped, as in Faiss
    codes = ours.compute_codes(outside)
    np.testing.assert_array_equal(codes, ref.compute_codes(outside))
    np.testing.assert_allclose(ours.decode(codes), ref.decode(codes), rtol=1e-6, atol=1e-6)


def test_fp16_halfway_values_round_as_faiss():
    rng = np.random.default_rng(1)
    bits = (rng.integers(0x38800000 >> 13, 0x47000000 >> 13, 4096).astype(np.uint32) << 13) | 0x1000
    x = np.where(rng.random(4096) < 0.5, bits | 0x80000000, bits).astype(np.uint32).view(np.float32).reshape(-1, 16)
    np.testing.assert_array_equal(SQ(16, SQ.QT_fp16).compute_codes(x),
                                  faiss.ScalarQuantizer(16, SQ.QT_fp16).compute_codes(x))


def _faiss_ivfsq(xb, qtype, metric, by_residual, nlist=32):
    f = faiss.IndexIVFScalarQuantizer(faiss.IndexFlat(33, FAISS_METRIC[metric]), 33, nlist, qtype,
                                      FAISS_METRIC[metric], by_residual)
    f.train(xb)
    f.add(xb)
    f.nprobe = 6
    return f


def _same_ids(I, If, D, Df, largest):
    """Ids equal wherever faiss's own distances do not tie within float32 noise."""
    diff = I != If
    if not diff.any():
        return
    tol = 1e-4 * np.abs(Df).max()
    assert np.all(np.abs(D[diff] - Df[diff]) <= tol), "ids differ beyond a distance tie"


@pytest.mark.parametrize("qtype,metric,by_residual", [(SQ.QT_8bit, "l2", True), (SQ.QT_8bit, "ip", True),
                                                      (SQ.QT_4bit, "l2", False), (SQ.QT_6bit, "l2", True),
                                                      (SQ.QT_fp16, "ip", False), (SQ.QT_bf16, "l2", True)])
def test_ivfsq_from_faiss_same_codes_and_ids(data, qtype, metric, by_residual):
    xb, xq = data
    f = _faiss_ivfsq(xb, qtype, metric, by_residual)
    ours = from_faiss(f)
    assert type(ours) is ti.IndexIVFScalarQuantizer and ours.by_residual == by_residual and ours.nprobe == 6
    Df, If = f.search(xq, 10)
    D, I = ours.search(xq, 10)
    _same_ids(I, If, D, Df, metric != "l2")
    np.testing.assert_allclose(D, Df, rtol=1e-4, atol=1e-3 * np.abs(Df).max())
    # our encoder gives faiss's standalone codes (list number, then the code)
    np.testing.assert_array_equal(ours.sa_encode(xq), f.sa_encode(xq))
    back = to_faiss(ours)  # and the lists go back unchanged
    for lst in range(f.nlist):
        n = f.invlists.list_size(lst)
        assert back.invlists.list_size(lst) == n
        a = faiss.rev_swig_ptr(f.invlists.get_codes(lst), n * f.code_size).copy()
        b = faiss.rev_swig_ptr(back.invlists.get_codes(lst), n * f.code_size).copy()
        ia = faiss.rev_swig_ptr(f.invlists.get_ids(lst), n).copy()
        ib = faiss.rev_swig_ptr(back.invlists.get_ids(lst), n).copy()
        order_a, order_b = np.argsort(ia), np.argsort(ib)
        np.testing.assert_array_equal(ia[order_a], ib[order_b])
        np.testing.assert_array_equal(a.reshape(n, -1)[order_a], b.reshape(n, -1)[order_b])
    np.testing.assert_array_equal(back.search(xq, 10)[1], If)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_flat_sq_from_and_to_faiss(data, metric):
    xb, xq = data
    f = faiss.IndexScalarQuantizer(33, SQ.QT_8bit, FAISS_METRIC[metric])
    f.train(xb)
    f.add(xb)
    ours = from_faiss(f)
    assert type(ours) is ti.IndexScalarQuantizer
    Df, If = f.search(xq, 10)
    D, I = ours.search(xq, 10)
    _same_ids(I, If, D, Df, metric != "l2")
    back = to_faiss(ours)
    np.testing.assert_array_equal(faiss.vector_to_array(back.codes), faiss.vector_to_array(f.codes))
    ours.remove_ids(np.arange(0, 4000, 2))  # labels no longer 0..n-1: faiss gets an IDMap2
    mapped = to_faiss(ours)
    np.testing.assert_array_equal(mapped.search(xq, 5)[1], ours.search(xq, 5)[1])


@pytest.mark.parametrize("description", ["SQ8", "IVF32,SQ8", "IVF16,SQfp16", "IVF16,SQ4,RFlat", "IVF16,SQ6",
                                         "IVF16,SQbf16", "IDMap,SQ4"])
def test_factory_persistence_remove_reconstruct(data, description, tmp_path):
    xb, xq = data
    index = ti.index_factory(33, description)
    index.train(xb)
    index.add(xb)
    if hasattr(index, "nprobe"):
        index.nprobe = 4
    D, I = index.search(xq, 10)
    index.save(tmp_path / "sq.tivf")
    again = ti.read_index(tmp_path / "sq.tivf")
    assert type(again) is type(index)
    D2, I2 = again.search(xq, 10)
    np.testing.assert_array_equal(I, I2)
    np.testing.assert_array_equal(D, D2)
    assert again.remove_ids(np.arange(0, 4000, 3)) == 1334 and again.ntotal == 4000 - 1334
    assert not np.isin(again.search(xq, 10)[1], np.arange(0, 4000, 3)).any()
    base = getattr(index, "base", index)
    r = base.reconstruct_batch(torch.arange(5)).numpy()
    assert np.abs(r - xb[:5]).max() < (0.2 if "SQ4" in description else 0.05) * np.abs(xb).max()


def test_ivfsq_exact_over_decoded_vectors_with_filters(data):
    """nprobe = nlist: the results are exact search over the decoded vectors, also with a mask."""
    xb, xq = data
    index = ti.IndexIVFScalarQuantizer(33, 16, SQ.QT_8bit, "l2", nprobe=16)
    index.train(xb)
    index.add(xb)
    dec = index.reconstruct_n(0, 4000).numpy()
    allowed = np.zeros(4000, bool)
    allowed[::7] = True
    for mode in ("grouped", "matrix"):
        index.search_mode = mode
        _, I = index.search(xq, 10, params=ti.SearchParams(allowed=allowed))
        rows = np.nonzero(allowed)[0]
        _, Ie = exact_knn(dec[rows], xq, 10)
        assert (I == rows[Ie]).mean() > 0.99


def test_faiss_constructor_form_shares_quantizer_and_merges(data):
    xb, xq = data
    q = ti.IndexFlatL2(33)
    a = ti.IndexIVFScalarQuantizer(q, 33, 16, SQ.QT_8bit, ti.METRIC_L2, True)
    a.train(xb)
    assert a.quantizer is q and q.ntotal == 16
    b = ti.IndexIVFScalarQuantizer(q, 33, 16, SQ.QT_8bit, ti.METRIC_L2, True)
    b.sq.set_trained(a.sq.trained)
    a.add(xb[:2000])
    b.add_with_ids(xb[2000:], np.arange(2000, 4000))
    a.merge_from(b)
    assert a.ntotal == 4000 and b.ntotal == 0
    whole = ti.IndexIVFScalarQuantizer(q, 33, 16, SQ.QT_8bit)
    whole.sq.set_trained(a.sq.trained)
    whole.add(xb)
    a.nprobe = whole.nprobe = 4
    np.testing.assert_array_equal(a.search(xq, 10)[1], whole.search(xq, 10)[1])


def test_bad_input_leaves_the_index_unchanged(data):
    xb, xq = data
    index = ti.IndexIVFScalarQuantizer(33, 16, SQ.QT_8bit)
    with pytest.raises(ValueError, match="qtype"):
        ti.IndexIVFScalarQuantizer(33, 16, 99)
    with pytest.raises(TypeError, match="by_residual"):
        ti.IndexIVFScalarQuantizer(33, 16, SQ.QT_8bit, "l2", 1)
    bad = xb.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        index.train(bad)
    assert not index.is_trained
    index.train(xb)
    index.add(xb[:100])
    before = index.search(xq, 5)
    for x in (xb[:10, :32], bad[:10]):
        with pytest.raises(ValueError):
            index.add(x)
    with pytest.raises(ValueError, match="reset"):
        index.train(xb)  # codes cannot be re-encoded
    assert index.ntotal == 100
    for a, b in zip(before, index.search(xq, 5)):
        np.testing.assert_array_equal(a, b)
    flat = ti.IndexScalarQuantizer(33, SQ.QT_4bit)
    with pytest.raises(ValueError, match="trained"):
        flat.add(xb)
    assert flat.ntotal == 0


def test_collection_spec_sq8(tmp_path):
    x = clustered(3000, d=32, seed=5)
    c = Collection(index="IVF16,SQ8", metric="l2", device="cpu")
    c.upsert(vectors=x, ids=[str(i) for i in range(3000)], metadatas=[{"g": i % 10} for i in range(3000)])
    assert c.index_description.startswith("IVF16,SQ8")
    hits = c.search(x[7], k=5, filter={"g": 7})
    assert hits[0].id == "7" and all(h.metadata["g"] == 7 for h in hits)
    c.save(tmp_path / "c")
    again = Collection.load(tmp_path / "c", device="cpu")
    assert [h.id for h in again.search(x[7], k=5)] == [h.id for h in c.search(x[7], k=5)]


def test_collection_named_sq8_is_ivf_sq8_at_nearly_exact_recall():
    x = clustered(2700, d=32, seed=6)
    ids = [str(i) for i in range(2600)]
    c = Collection(index="sq8", metric="l2", device="cpu")
    c.upsert(vectors=x[:2600], ids=ids)
    assert c.index_description.startswith("IVF") and "SQ8" in c.index_description
    assert isinstance(c.index, ti.IndexIVFScalarQuantizer) and c.index.code_size == 32  # a byte per dimension
    c.index.nprobe = c.index.nlist  # every list scanned: what is left is the codec's error
    exact = Collection(index="Flat", metric="l2", device="cpu")
    exact.upsert(vectors=x[:2600], ids=ids)
    found = [len({h.id for h in c.search(q, k=10)} & {h.id for h in exact.search(q, k=10)}) for q in x[2600:]]
    assert np.mean(found) / 10 >= 0.9
    with pytest.raises(ValueError, match="codec"):
        Collection(index="IVF64,SQ7")  # refused at construction, not when it would first train


@pytest.mark.parametrize("qtype", [SQ.QT_8bit, SQ.QT_6bit, SQ.QT_4bit, SQ.QT_8bit_uniform])
def test_decode_is_within_half_a_bin(qtype):
    from hypothesis import given, settings, strategies as st

    @settings(max_examples=25, deadline=None)
    @given(st.integers(1, 19), st.integers(0, 2**31 - 1))
    def check(d, seed):
        x = np.random.default_rng(seed).standard_normal((64, d)).astype(np.float32) * 5
        sq = SQ(d, qtype)
        sq.train(x)
        err = np.abs(sq.decode(sq.compute_codes(x)) - x)
        n = sq.trained.numel() // 2
        step = (sq.trained[n:].numpy() / ((1 << sq.bits) - 1)).astype(np.float64)
        assert np.all(err <= 0.5 * step + 1e-5 * (1 + np.abs(x)))  # truncated to a bin, decoded to its middle

    check()


DIRECT = [SQ.QT_8bit_direct, SQ.QT_8bit_direct_signed]


def _direct_data(qtype, n, d, seed):
    """Integers in the type's range ([0, 255] or [-128, 127]), the data the direct types are meant for."""
    low = 0 if qtype == SQ.QT_8bit_direct else -128
    return np.random.default_rng(seed).integers(low, low + 256, (n, d)).astype(np.float32)


@pytest.mark.parametrize("qtype", DIRECT)
def test_direct_codes_match_faiss(qtype):
    x = _direct_data(qtype, 300, 33, 1)
    x[:100] += np.random.default_rng(2).random((100, 33), dtype=np.float32) * 0.999  # truncated
    if platform.machine() in ("x86_64", "AMD64"):  # out of range wraps modulo 256 (Faiss's cast on x86)
        x[100:110] = np.linspace(-700, 700, 330, dtype=np.float32).reshape(10, 33)
    ours, ref = SQ(33, qtype), faiss.ScalarQuantizer(33, qtype)
    assert ours.is_trained and ours.code_size == ref.code_size == 33
    ours.train(x)  # nothing to learn, as in Faiss
    assert ours.trained.numel() == 0 == faiss.vector_to_array(ref.trained).size
    codes = ours.compute_codes(x)
    np.testing.assert_array_equal(codes, ref.compute_codes(x))
    np.testing.assert_array_equal(ours.decode(codes), ref.decode(codes))


@pytest.mark.parametrize("qtype", DIRECT)
@pytest.mark.parametrize("metric,by_residual", [("l2", True), ("l2", False), ("ip", True), ("ip", False)])
def test_direct_ivf_same_codes_and_ids_as_faiss(qtype, metric, by_residual):
    xb, xq = _direct_data(qtype, 3000, 33, 3), _direct_data(qtype, 40, 33, 4)
    f = faiss.IndexIVFScalarQuantizer(faiss.IndexFlat(33, FAISS_METRIC[metric]), 33, 16, qtype,
                                      FAISS_METRIC[metric], by_residual)
    f.train(xb)
    f.add(xb)
    f.nprobe = 4
    Df, If = f.search(xq, 10)
    converted = from_faiss(f)
    ours = ti.IndexIVFScalarQuantizer(33, 16, qtype, metric, by_residual, nprobe=4)
    ours.centroids = converted.centroids  # our own encoder on faiss's lists: the same codes
    ours.add(xb)
    np.testing.assert_array_equal(ours.sa_encode(xq), f.sa_encode(xq))
    for index in (converted, ours, to_faiss(ours)):
        D, I = index.search(xq, 10)
        np.testing.assert_array_equal(I, If)
        np.testing.assert_allclose(D, Df, rtol=1e-5, atol=1e-6 * np.abs(Df).max())


@pytest.mark.parametrize("qtype", DIRECT)
def test_direct_flat_from_faiss_factory_and_persistence(qtype, tmp_path):
    xb, xq = _direct_data(qtype, 2000, 33, 5), _direct_data(qtype, 20, 33, 6)
    name = "SQ8_direct" if qtype == SQ.QT_8bit_direct else "SQ8_direct_signed"
    f = faiss.index_factory(33, name)
    f.add(xb)
    ours = ti.index_factory(33, name)
    assert type(ours) is ti.IndexScalarQuantizer and ours.qtype == qtype and ours.is_trained
    ours.add(xb)
    back = to_faiss(ours)  # kept: back.codes lives as long as back
    np.testing.assert_array_equal(faiss.vector_to_array(back.codes), faiss.vector_to_array(f.codes))
    np.testing.assert_array_equal(ours.search(xq, 10)[1], f.search(xq, 10)[1])
    np.testing.assert_array_equal(from_faiss(f).search(xq, 10)[1], f.search(xq, 10)[1])
    np.testing.assert_array_equal(ours.reconstruct_n(0, 50).numpy(), xb[:50])  # integers are exact
    ivf = ti.index_factory(33, f"IVF16,{name}", nprobe=4)
    ref = faiss.downcast_index(faiss.index_factory(33, f"IVF16,{name}"))
    assert ivf.by_residual == bool(ref.by_residual)
    ivf.train(xb)
    ivf.add(xb)
    for index in (ours, ivf):
        index.save(tmp_path / "direct.tivf")
        again = ti.read_index(tmp_path / "direct.tivf")
        assert type(again) is type(index) and again.qtype == qtype
        for a, b in zip(index.search(xq, 10), again.search(xq, 10)):
            np.testing.assert_array_equal(a, b)


def test_qtypes_not_built_are_refused_by_name():
    for qtype, name in ((faiss.ScalarQuantizer.QT_4bit_tqmse, "QT_4bit_tqmse"), (faiss.ScalarQuantizer.QT_0bit, "QT_0bit"),
                        (faiss.ScalarQuantizer.QT_2bit_tq, "QT_2bit_tq"), (faiss.ScalarQuantizer.QT_4bit_eden, "QT_4bit_eden")):
        with pytest.raises(ValueError, match=f"{name} is not supported.*supported: QT_8bit, "):
            SQ(16, qtype)
        with pytest.raises(ValueError, match=f"{name} is not supported"):
            ti.IndexIVFScalarQuantizer(16, 4, name)
        with pytest.raises(ValueError, match=f"{name} is not supported"):
            from_faiss(faiss.IndexScalarQuantizer(16, qtype))
    for description in ("SQtqmse4", "IVF16,SQtq2", "IVF16,SQ0", "SQ7"):
        with pytest.raises(ValueError, match="supported: SQ8, SQ6, SQ4, SQfp16, SQbf16, SQ8_direct, SQ8_direct_signed"):
            ti.index_factory(16, description)
