"""Raw indexes under hostile or careless input: every refusal comes before any state changes, inputs
straight from a model work, and label values never size an allocation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import torch_ivf as ti
from torch_ivf.shards import copy_training

D = 16
RNG = np.random.default_rng(14)
XB = RNG.standard_normal((400, D)).astype(np.float32)
XQ = RNG.standard_normal((5, D)).astype(np.float32)


_TRAINED = {}


def _build(kind, make):
    """A fresh index of this kind holding XB[:200]; k-means runs once per kind (the shared machine is slow)."""
    if kind not in _TRAINED:
        _TRAINED[kind] = make()
        _TRAINED[kind].train(XB)
    index = make()
    copy_training(_TRAINED[kind], index)
    index.add(XB[:200])
    return index


def _flat():
    return _build("flat", lambda: ti.IndexFlat(D))


def _ivf():
    return _build("ivfflat", lambda: ti.IndexIVFFlat(D, 8, nprobe=8))


def _ivfpq():
    return _build("ivfpq", lambda: ti.IndexIVFPQ(D, 4, 4, nbits=4, nprobe=4))


BUILDERS = {"flat": _flat, "ivfflat": _ivf, "ivfpq": _ivfpq}


@pytest.fixture(scope="module", params=list(BUILDERS))
def built(request):
    return request.param, BUILDERS[request.param]()


def _state(index):
    D_, I_ = index.search(XQ, 5)
    return index.ntotal, index.next_label, torch.sort(index.labels()).values.clone(), D_.copy(), I_.copy()


def _same(a, b):
    assert a[0] == b[0] and a[1] == b[1]
    assert torch.equal(a[2], b[2])
    np.testing.assert_array_equal(a[3], b[3])
    np.testing.assert_array_equal(a[4], b[4])


# Each case: (what is called, the exception expected). They run against every index type; the tally
# at the end is the count reported for issue 14.
def _cases(index):
    x2 = XB[200:202]
    big = np.full((2, D), 1e20, np.float32)
    nan = x2.copy()
    nan[0, 3] = np.nan
    inf = x2.copy()
    inf[1, 0] = -np.inf
    cases = {
        "add complex": (lambda: index.add(x2.astype(np.complex64)), TypeError),
        "add complex tensor": (lambda: index.add(torch.from_numpy(x2).to(torch.complex64)), TypeError),
        "add object": (lambda: index.add(x2.astype(object)), TypeError),
        "add bool": (lambda: index.add(x2 > 0), TypeError),
        "add bool tensor": (lambda: index.add(torch.from_numpy(x2 > 0)), TypeError),
        "add str": (lambda: index.add(np.full((2, D), "a")), TypeError),
        "add list": (lambda: index.add(x2.tolist()), TypeError),
        "add NaN": (lambda: index.add(nan), ValueError),
        "add Inf": (lambda: index.add(inf), ValueError),
        "add 1e20": (lambda: index.add(big), ValueError),
        "add 1e19 (squares overflow)": (lambda: index.add(np.full((2, D), 1e19, np.float32)), ValueError),
        "add float64 1e200": (lambda: index.add(np.full((2, D), 1e200)), ValueError),
        "add wrong d": (lambda: index.add(XB[:2, :D - 1]), ValueError),
        "add_with_ids float ids": (lambda: index.add_with_ids(x2, np.array([1000.0, 1001.0])), TypeError),
        "add_with_ids bool ids": (lambda: index.add_with_ids(x2, np.array([True, False])), TypeError),
        "add_with_ids str ids": (lambda: index.add_with_ids(x2, np.array(["1", "2"])), TypeError),
        "add_with_ids str": (lambda: index.add_with_ids(x2, "12"), TypeError),
        "add_with_ids negative": (lambda: index.add_with_ids(x2, np.array([-5, 1000])), ValueError),
        "add_with_ids duplicate": (lambda: index.add_with_ids(x2, np.array([1000, 1000])), ValueError),
        "add_with_ids stored": (lambda: index.add_with_ids(x2, np.array([3, 1000])), ValueError),
        "add_with_ids uint64 > int64": (lambda: index.add_with_ids(x2, np.array([2**63, 1], np.uint64)), ValueError),
        "add_with_ids NaN x": (lambda: index.add_with_ids(nan, np.array([1000, 1001])), ValueError),
        "search complex": (lambda: index.search(XQ.astype(np.complex64), 3), TypeError),
        "search NaN": (lambda: index.search(nan, 3), ValueError),
        "search 1e20": (lambda: index.search(big, 3), ValueError),
        "search k=0": (lambda: index.search(XQ, 0), ValueError),
        "search k=1.5": (lambda: index.search(XQ, 1.5), ValueError),
        "search k='3'": (lambda: index.search(XQ, "3"), ValueError),
        "search k=10**9 (padding of GBs)": (lambda: index.search(XQ, 10**9), ValueError),
        "search max_codes=-1": (lambda: index.search(XQ, 3, params=ti.SearchParams(max_codes=-1)), ValueError),
        "search max_codes=1.5": (lambda: index.search(XQ, 3, params=ti.SearchParams(max_codes=1.5)), ValueError),
        "search nprobe=0": (lambda: index.search(XQ, 3, params=ti.SearchParams(nprobe=0)), ValueError),
        "search nprobe=-1": (lambda: index.search(XQ, 3, params=ti.SearchParams(nprobe=-1)), ValueError),
        "search nprobe=2.0": (lambda: index.search(XQ, 3, params=ti.SearchParams(nprobe=2.0)), ValueError),
        "search params dict": (lambda: index.search(XQ, 3, params={"nprobe": 2}), TypeError),
        "search allowed str": (lambda: index.search(XQ, 3, params=ti.SearchParams(allowed="abc")), TypeError),
        "search allowed floats": (lambda: index.search(XQ, 3, params=ti.SearchParams(allowed=[1.5, 2.0])), TypeError),
        "search allowed float array": (lambda: index.search(XQ, 3, params=ti.SearchParams(allowed=np.array([1.5]))), TypeError),
        "range_search NaN": (lambda: index.range_search(nan, 1.0), ValueError),
        "range_search radius str": (lambda: index.range_search(XQ, "1"), TypeError),
        "range_search radius NaN": (lambda: index.range_search(XQ, float("nan")), ValueError),
        "assign complex": (lambda: index.assign(XQ.astype(np.complex128), 1), TypeError),
        "train NaN": (lambda: index.train(np.vstack([XB, nan])), ValueError),
        "train complex": (lambda: index.train(XB.astype(np.complex64)), TypeError),
        "reconstruct 1.5": (lambda: index.reconstruct(1.5), TypeError),
        "reconstruct '3'": (lambda: index.reconstruct("3"), TypeError),
        "reconstruct True": (lambda: index.reconstruct(True), TypeError),
        "reconstruct missing": (lambda: index.reconstruct(10**6), ValueError),
        "reconstruct_n float": (lambda: index.reconstruct_n(0.5, 2), TypeError),
        "reconstruct_n negative n": (lambda: index.reconstruct_n(0, -1), ValueError),
        "reconstruct_batch floats": (lambda: index.reconstruct_batch(np.array([1.0, 2.0])), TypeError),
        "remove_ids floats": (lambda: index.remove_ids(np.array([1.5])), TypeError),
        "remove_ids str": (lambda: index.remove_ids("3"), TypeError),
        "remove_ids float tensor": (lambda: index.remove_ids(torch.tensor([1.0])), TypeError),
    }
    if isinstance(index, ti.IndexIVF):
        bad_c = index.centroids.clone()
        bad_c[0, 0] = float("nan")
        cases.update({
            "set centroids NaN": (lambda: setattr(index, "centroids", bad_c), ValueError),
            "set centroids wrong rows": (lambda: setattr(index, "centroids", index.centroids[:2]), ValueError),
            "set max_codes=-1": (lambda: setattr(index, "max_codes", -1), ValueError),
            "set nprobe=0": (lambda: setattr(index, "nprobe", 0), ValueError),
            "ParameterSpace max_codes=-1": (lambda: ti.ParameterSpace().set_index_parameter(index, "max_codes", -1), ValueError),
            "ParameterSpace nprobe=1.5": (lambda: ti.ParameterSpace().set_index_parameter(index, "nprobe", 1.5), ValueError),
            "get_list_size 1.5": (lambda: index.get_list_size(1.5), ValueError),
            "search_preassigned k=10**9": (lambda: index.search_preassigned(XQ, 10**9, np.zeros((5, 2), np.int64)), ValueError),
            "search_preassigned NaN": (lambda: index.search_preassigned(nan, 3, np.zeros((2, 2), np.int64)), ValueError),
            "search_preassigned float lists": (lambda: index.search_preassigned(XQ, 3, np.zeros((5, 2))), ValueError),
            "search_preassigned list 99": (lambda: index.search_preassigned(XQ, 3, np.full((5, 2), 99)), ValueError),
        })
    return cases


TALLY = {"tried": 0, "refused cleanly": 0, "silently wrong": 0}


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_bad_inputs_refused_before_any_change(kind):
    index = BUILDERS[kind]()
    before = _state(index)
    wrong = []
    for name, (call, exc) in _cases(index).items():
        TALLY["tried"] += 1
        try:
            call()
        except exc:
            TALLY["refused cleanly"] += 1
        except Exception as e:  # noqa: BLE001 - any other exception type is a failure to report
            wrong.append(f"{name}: {type(e).__name__}: {e}")
        else:
            TALLY["silently wrong"] += 1
            wrong.append(f"{name}: accepted")
        _same(before, _state(index))
    assert not wrong, wrong


def test_tally_reported():
    print(f"\nissue 14 raw-index bad inputs: {TALLY}")


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_gradient_inputs_detach(kind):
    index = BUILDERS[kind]()
    xg = torch.from_numpy(XB[200:210]).requires_grad_(True)
    index.add(xg)
    index.add_with_ids(torch.from_numpy(XB[210:212]).requires_grad_(True), torch.tensor([5000, 5001]))
    D_, I_ = index.search(XQ, 4)  # numpy out: raised RuntimeError once stored tensors carried gradients
    assert isinstance(D_, np.ndarray) and (I_ >= 0).all()
    Dt, It = index.search(torch.from_numpy(XQ).requires_grad_(True), 4)
    assert not Dt.requires_grad and np.array_equal(It.numpy(), I_)
    lims, Dr, Ir = index.range_search(torch.from_numpy(XQ).requires_grad_(True), 1e9)
    assert not Dr.requires_grad
    assert not index.reconstruct(5000).requires_grad
    if kind != "flat":
        fresh = BUILDERS[kind]()
        fresh.reset()
        fresh.train(torch.from_numpy(XB).requires_grad_(True))


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_k_beyond_stored_is_padded(kind):
    index = BUILDERS[kind]()
    n = index.ntotal
    D_, I_ = index.search(XQ[:2], n + 50)
    assert D_.shape == (2, n + 50)
    assert (I_[:, n:] == -1).all() and (D_[:, n:] == np.finfo(np.float32).max).all()
    D2, I2 = index.search(XQ[:2], n)
    np.testing.assert_array_equal(I_[:, :n], I2)
    # big k over few rows: clamped work, small padded output
    small = ti.IndexFlat(D)
    small.add(XB[:3])
    D3, I3 = small.search(XQ[:1], 100_000)
    assert I3.shape == (1, 100_000) and (I3[0, 3:] == -1).all()
    if kind != "flat":  # the same padding over lists chosen by the caller
        Dp, Ip = index.search_preassigned(XQ[:2], n + 50, np.tile(np.arange(index.nlist), (2, 1)))
        assert Ip.shape == (2, n + 50) and (Ip[:, n:] == -1).all()
    empty = ti.IndexFlat(D)
    assert (empty.search(XQ, 7)[1] == -1).all()


HUGE = 2**62


def _hashed(kind):
    """An index whose labels are hashed 64-bit ids near 2**62."""
    index = BUILDERS[kind]()
    index.reset()
    ids = HUGE + np.arange(0, 300 * 7919, 7919, dtype=np.int64)
    index.add_with_ids(XB[:300], ids)
    return index, ids


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_huge_labels_filter_without_label_sized_masks(kind):
    index, ids = _hashed(kind)
    keep = ids[::3]
    mid = ids[(ids >= ids[50]) & (ids < ids[60])]
    for allowed, expected in ((keep, keep), (torch.from_numpy(keep), keep), (set(keep.tolist()), keep),
                              (ti.IDSelectorBatch(keep), keep), (ti.IDSelectorRange(int(ids[50]), int(ids[60])), mid),
                              (ti.IDSelectorAnd(ti.IDSelectorBatch(keep), ti.IDSelectorRange(0, 2**63 - 1)), keep),
                              (ti.IDSelectorNot(ti.IDSelectorBatch(np.setdiff1d(ids, keep))), keep)):
        params = ti.SearchParams(sel=allowed) if isinstance(allowed, ti.IDSelector) else ti.SearchParams(allowed=allowed)
        _, I_ = index.search(XQ, 10, params=params)
        got = I_[I_ >= 0]
        assert got.size and np.isin(got, expected).all(), type(allowed).__name__
    lims, _, Ir = index.range_search(XQ, 1e9, params=ti.SearchParams(sel=ti.IDSelectorBatch(keep)))
    assert np.isin(Ir, keep).all()
    assert index.remove_ids(ti.IDSelectorRange(int(ids[100]), int(ids[200]))) == 100
    assert index.ntotal == 200
    assert index.remove_ids(ti.IDSelectorBatch(ids[:10])) == 10
    assert index.remove_ids(ids[10:20]) == 10
    assert index.ntotal == 180
    assert torch.equal(torch.sort(index.labels()).values, torch.from_numpy(np.concatenate([ids[20:100], ids[200:]])))


def test_selector_select_matches_mask():
    labels = torch.tensor([0, 3, 7, 12, 40, 41, 99], dtype=torch.int64)
    sels = [ti.IDSelectorRange(3, 41), ti.IDSelectorBatch([7, 99, 1000]), ti.IDSelectorNot(ti.IDSelectorRange(0, 8)),
            ti.IDSelectorOr(ti.IDSelectorBatch([0]), ti.IDSelectorRange(40, 50))]
    for sel in sels:
        assert torch.equal(sel.select(labels), sel.mask(100, "cpu")[labels])


# ---- a failed train changes nothing -------------------------------------------------------------
def _trained_state(index):
    return {k: v.clone() for k, v in index.state_tensors().items()}, index.is_trained


@pytest.mark.parametrize("make", [lambda: ti.IndexIVFPQ(D, 4, 4, nbits=8, niter=4, pq_niter=4),
                                  lambda: ti.IndexIVFPQPanorama(D, 4, 4, n_levels=2, nbits=8, niter=4, pq_niter=4),
                                  lambda: ti.IndexIVFFlat(D, 8, niter=4)],
                         ids=["ivfpq", "ivfpq-panorama", "ivfflat"])
def test_failed_train_leaves_index_untrained(make):
    index = make()
    if isinstance(index, ti.IndexIVFPQ):  # 100 rows: enough for the coarse k-means, not for 256 PQ centroids
        with pytest.raises(ValueError, match="ksub"):
            index.train(XB[:100])
    else:
        index._train_codec = lambda x, lists: (_ for _ in ()).throw(RuntimeError("codec training failed"))
        with pytest.raises(RuntimeError, match="codec training failed"):
            index.train(XB)
        del index._train_codec
    assert not index.is_trained and index.centroids.shape[0] == 0
    index.train(XB)  # fresh centroids, not the ones the failed train left
    fresh = make()
    fresh.train(XB)
    assert torch.equal(index.centroids, fresh.centroids)
    index.add(XB[:50])
    fresh.add(XB[:50])
    np.testing.assert_array_equal(index.search(XQ, 5)[1], fresh.search(XQ, 5)[1])


def test_failed_retrain_keeps_stored_vectors():
    index = _ivf()
    before = _state(index)
    centroids = index.centroids.clone()
    index.coarse.index.reset()  # untrained quantizer: train re-runs k-means and re-assigns the stored rows
    index.coarse.set_centroids(centroids)

    def broken(*a, **k):
        raise MemoryError("no room to re-assign")

    index._append = broken
    with pytest.raises(MemoryError):
        index.train(XB[200:])
    del index._append
    assert torch.equal(index.centroids, centroids)
    _same(before, _state(index))


def test_shared_quantizer_untouched_by_failed_train():
    q = ti.IndexFlat(D)
    index = ti.IndexIVFPQ(q, D, 4, 4, nbits=8)
    with pytest.raises(ValueError):
        index.train(XB[:100])
    assert q.ntotal == 0


# ---- threads: searches while one thread writes ---------------------------------------------
def _writer_ops(kind, index, make):
    """The writes one thread makes, in order (each a callable)."""
    rng = np.random.default_rng(3)
    fresh = iter(range(9_960, 0, -40))  # below next_label once used: add() never hands them out

    def add_ids():
        a = next(fresh)
        index.add_with_ids(rng.standard_normal((40, D)).astype(np.float32), np.arange(a, a + 40))

    def remove_some():
        stored = index.labels().numpy()
        index.remove_ids(rng.choice(stored, size=min(30, stored.size), replace=False))

    def remove_range():
        stored = np.sort(index.labels().numpy())
        if stored.size > 20:
            index.remove_ids(ti.IDSelectorRange(int(stored[5]), int(stored[20])))

    def merge():
        other = make()
        other.reset()
        a = next(fresh)
        other.add_with_ids(rng.standard_normal((25, D)).astype(np.float32), np.arange(a, a + 25))
        index.merge_from(other)

    def reset_and_refill():
        index.reset()
        index.add(XB[:120])

    ops = [add_ids, remove_some, lambda: index.add(rng.standard_normal((30, D)).astype(np.float32)), remove_range, merge]
    if kind == "ivfflat":
        ops.append(lambda: index.train(XB))  # lossless: stored rows are re-assigned under the new centroids
    ops.append(reset_and_refill)
    return ops * 3


def _race(index, ops, q=XQ[:3], k=8):
    """Three threads search while this one applies ops; every result must equal the results of a
    state the index was in (after some op) during that search, with no exception."""
    import threading

    states = [index.search(q, k)]  # results at each committed state, in order
    committed = [0]  # states[:committed[0] + 1] are final; a change in progress makes the next one
    started = [0]
    done = threading.Event()
    seen, errors = [], []

    def reader(rank):
        r = 0
        while not done.is_set() or r < 5:
            lo = committed[0]
            try:
                D_, I_ = index.search(q, k) if r % 2 else index.search(torch.from_numpy(q), k)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
                return
            hi = started[0]
            seen.append((lo, hi, np.asarray(D_), np.asarray(I_)))
            r += 1

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        for op in ops:
            started[0] += 1
            op()
            states.append(index.search(q, k))
            committed[0] += 1
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert len(seen) >= 15
    for lo, hi, D_, I_ in seen:
        matches = [j for j in range(lo, min(hi, len(states) - 1) + 1) if np.array_equal(states[j][1], I_)]
        assert matches, f"a search saw labels of no state between changes {lo} and {hi}: {I_}"
        np.testing.assert_allclose(D_, states[matches[0]][0], rtol=1e-5, atol=1e-5)
        for row in I_:
            valid = row[row >= 0]
            assert len(np.unique(valid)) == len(valid)


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_searches_while_one_thread_writes(kind):
    index = BUILDERS[kind]()
    if kind != "flat":
        index.nprobe = index.nlist  # every list scanned: k results whenever k vectors are stored
    _race(index, _writer_ops(kind, index, BUILDERS[kind]))


def _plain_ops(index, labels):
    """add / add_with_ids / remove_ids / reset for wrappers (labels(): what is stored)."""
    rng = np.random.default_rng(5)
    fresh = iter(range(9_960, 0, -40))

    def add_ids():
        a = next(fresh)
        index.add_with_ids(rng.standard_normal((40, D)).astype(np.float32), np.arange(a, a + 40))

    def remove_some():
        stored = labels()
        index.remove_ids(rng.choice(stored, size=min(30, stored.size), replace=False))

    def reset_and_refill():
        index.reset()
        index.add(XB[:120])

    return [lambda: index.add(rng.standard_normal((30, D)).astype(np.float32)), add_ids, remove_some,
            reset_and_refill] * 3


def test_searches_while_one_thread_writes_refine():
    base = ti.IndexIVFPQ(D, 4, 4, nbits=4, nprobe=4, niter=4, pq_niter=4)
    index = ti.IndexRefineFlat(base, k_factor=4)
    index.train(XB)
    index.add(XB[:200])
    _race(index, _plain_ops(index, lambda: index.base.labels().numpy()))


def test_searches_while_one_thread_writes_shards():
    index = ti.IndexShards(D)
    for _ in range(2):
        index.add_shard(ti.IndexFlat(D))
    index.add(XB[:200])
    rng = np.random.default_rng(6)

    def remove_some():
        index.remove_ids(rng.choice(index.next_label, size=30, replace=False))

    ops = [lambda: index.add(rng.standard_normal((30, D)).astype(np.float32)), remove_some,
           lambda: (index.reset(), index.add(XB[:120]))] * 3
    _race(index, ops)


def test_rwlock_semantics():
    import threading
    import time

    from torch_ivf.locking import RWLock

    lock = RWLock()
    lock.acquire_read()
    lock.acquire_read()  # re-entrant read
    with pytest.raises(RuntimeError, match="inside a read"):
        lock.acquire_write()
    lock.release_read()
    order = []

    def writer():
        lock.acquire_write()
        order.append("w")
        lock.acquire_read()  # reading inside one's own write
        lock.acquire_write()
        lock.release_write()
        lock.release_read()
        lock.release_write()

    def late_reader():
        lock.acquire_read()
        order.append("r")
        lock.release_read()

    w = threading.Thread(target=writer)
    w.start()
    time.sleep(0.05)  # the writer now waits for our read
    r = threading.Thread(target=late_reader)
    r.start()
    time.sleep(0.05)
    assert order == []  # writer preference: the late reader queues behind the waiting writer
    lock.release_read()
    w.join(5)
    r.join(5)
    assert order == ["w", "r"]


# ---- properties -------------------------------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_labels = st.one_of(st.integers(0, 2000), st.integers(2**62 - 2000, 2**62 + 2000), st.integers(0, 2**63 - 1))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(stored=st.lists(_labels, max_size=60, unique=True), chosen=st.lists(_labels, max_size=30),
       lo=_labels, hi=_labels)
def test_selections_by_stored_labels(stored, chosen, lo, hi):
    labels = torch.tensor(stored, dtype=torch.int64)
    isin = np.isin(np.array(stored, dtype=np.int64), np.array(chosen, dtype=np.int64))
    for sel, expected in ((ti.IDSelectorBatch(np.array(chosen, dtype=np.int64)), isin),
                          (ti.IDSelectorRange(lo, hi), np.array([lo <= v < hi for v in stored], dtype=bool))):
        for s, e in ((sel, expected), (ti.IDSelectorNot(sel), ~expected)):
            got = s.select(labels).numpy()
            np.testing.assert_array_equal(got, e)
            np.testing.assert_array_equal(got, np.array([s.is_member(v) for v in stored], dtype=bool))


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(exponent=st.integers(-40, 40), sign=st.sampled_from([1.0, -1.0]), dtype=st.sampled_from([np.float32, np.float64]))
def test_any_magnitude_refused_or_ranked_finite(exponent, sign, dtype):
    """Vectors of any scale are either refused (ValueError) or give finite distances, never NaN or Inf
    distances that would rank first."""
    index = ti.IndexFlat(D)
    x = (XB[:20] * sign * 10.0 ** exponent).astype(dtype)
    try:
        index.add(x)
    except ValueError:
        assert index.ntotal == 0
        return
    D_, I_ = index.search(x[:3], 5)
    assert np.isfinite(D_).all() and (I_ >= 0).all()


def test_copies_get_their_own_lock():
    import copy

    index = _ivf()
    twin = copy.deepcopy(index)
    assert twin._rw is not index._rw
    np.testing.assert_array_equal(twin.search(XQ, 5)[1], index.search(XQ, 5)[1])
    twin.add(XB[200:210])
    assert twin.ntotal == index.ntotal + 10


def test_copies_leave_search_caches_behind():
    """What a GPU search caches (captured CUDA graphs and the lock serialising their replay) is not
    copied: a copy, or a copy moved to another device, starts without them."""
    import copy
    import threading

    index = _ivf()
    index.__dict__.update(_graphs={"key": object()}, _graph_lock=threading.Lock(), _graph_stat_scales={})
    twin = copy.deepcopy(index)
    assert not {"_graphs", "_graph_lock", "_graph_stat_scales"} & set(vars(twin))
    assert "_graph_lock" in vars(index)  # the original keeps its caches
    np.testing.assert_array_equal(twin.search(XQ, 5)[1], index.search(XQ, 5)[1])
