"""Property-based: random add / add_with_ids / remove_ids / search / save+load sequences against a
reference model (dict label -> vector + brute force). Flat and IVF with nprobe = nlist are exact,
so every search must agree with the model (ties aside)."""
import tempfile
from pathlib import Path

import numpy as np
import torch
from conftest import assert_knn_equal, exact_knn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import torch_ivf as ti

D = 6


class IndexVsModel(RuleBasedStateMachine):
    make_index = None

    @initialize(metric=st.sampled_from(["l2", "ip", "cosine"]), mode=st.sampled_from(["auto", "grouped", "matrix"]))
    def setup(self, metric, mode):
        self.metric = metric
        self.index = type(self).make_index(metric)
        if hasattr(self.index, "search_mode") and self.index.nlist > 1:
            self.index.search_mode = mode
        self.model: dict[int, np.ndarray] = {}
        self.next_label = 0
        self.tmp = Path(tempfile.mkdtemp())

    def _vectors(self, seed, n):
        return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)

    @rule(seed=st.integers(0, 10**6), n=st.integers(0, 30))
    def add(self, seed, n):
        x = self._vectors(seed, n)
        self.index.add(x)
        for i, v in enumerate(x):
            self.model[self.next_label + i] = v
        self.next_label += n

    @rule(seed=st.integers(0, 10**6), ids=st.sets(st.integers(0, 200), min_size=1, max_size=10))
    def add_with_ids(self, seed, ids):
        ids = sorted(ids)
        x = self._vectors(seed, len(ids))
        if any(i in self.model for i in ids):
            try:
                self.index.add_with_ids(x, np.array(ids))
            except ValueError:
                return  # refused, and nothing may have changed: checked by the invariants
            raise AssertionError("duplicate ids were accepted")
        self.index.add_with_ids(x, np.array(ids))
        self.model.update(zip(ids, x))
        self.next_label = max(self.next_label, max(ids) + 1)

    @rule(ids=st.lists(st.integers(0, 220), max_size=15))
    def remove(self, ids):
        expected = len(set(ids) & self.model.keys())
        assert self.index.remove_ids(np.array(ids, dtype=np.int64)) == expected
        for i in ids:
            self.model.pop(i, None)

    @precondition(lambda self: len(self.model) > 0)
    @rule(seed=st.integers(0, 10**6), k=st.integers(1, 12))
    def search(self, seed, k):
        xq = self._vectors(seed, 4)
        Dq, Iq = self.index.search(xq, k)
        labels = np.array(sorted(self.model))
        xb = np.stack([self.model[i] for i in labels])
        De, Ie = exact_knn(xb, xq, len(labels), self.metric)
        kk = min(k, len(labels))
        assert_knn_equal(Dq[:, :kk], Iq[:, :kk], De[:, :kk], labels[Ie[:, :kk]], atol=1e-3, full=(De, labels[Ie]))
        assert (Iq[:, kk:] == -1).all()

    @rule()
    def save_load(self):
        path = self.tmp / "index.tivf"
        ti.write_index(self.index, path)
        self.index = ti.read_index(path)

    @invariant()
    def same_contents(self):
        assert self.index.ntotal == len(self.model)
        assert sorted(self.index.labels().tolist()) == sorted(self.model)
        assert self.index.next_label == self.next_label


def _machine(factory):
    cls = type("Machine", (IndexVsModel,), {"make_index": staticmethod(factory)})
    cls.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None,
                                     suppress_health_check=list(HealthCheck))
    return cls.TestCase


def _ivf(metric):
    index = ti.IndexIVFFlat(D, 5, metric, nprobe=5)
    index.train(np.random.default_rng(123).standard_normal((200, D)).astype(np.float32))
    return index


TestFlatAgainstModel = _machine(lambda metric: ti.IndexFlat(D, metric))
TestIVFFlatAgainstModel = _machine(_ivf)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 45), st.integers(0, 2**31 - 1), st.booleans())
def test_topk_first_is_a_stable_sort_prefix(rows, cols, seed, with_order):
    """topk_first = the first k of a sort by (score descending, order ascending), -inf rows aside: what
    exact search returns when scores tie (few distinct values here, so ties are everywhere)."""
    from torch_ivf.topk import topk_first
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 4, (rows, cols), generator=g).float()
    x[torch.rand(rows, cols, generator=g) < 0.1] = float("-inf")
    order = torch.randperm(cols, generator=g).expand(rows, cols) if with_order else None
    key = order if order is not None else torch.arange(cols).expand(rows, cols)
    for k in {1, min(cols, 3), cols}:
        values, idx = topk_first(x, k, order)
        perm = key.argsort(dim=1)
        ref_v, at = x.gather(1, perm).sort(dim=1, descending=True, stable=True)
        ref_i = perm.gather(1, at)[:, :k]
        assert torch.equal(values, ref_v[:, :k]) and torch.equal(x.gather(1, idx), values)
        finite = values[:, -1] > float("-inf")
        for a, b in zip(idx[finite].tolist(), ref_i[finite].tolist()):
            assert sorted(a) == sorted(b)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(2, 40), st.integers(1, 12), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_running_topk_over_blocks_keeps_the_first_stored(rows, cols, block, k, seed):
    """A list scanned block by block keeps the same set as one stable sort of all its rows: equal
    scores go to the lowest slab position, also when an earlier block's ties straddle a later cut."""
    from torch_ivf.topk import running_topk
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 3, (rows, cols), generator=g).float()
    k = min(k, cols)
    best = None
    for a in range(0, cols, block):
        best = running_topk(best, x[:, a:a + block], 100 + a, k)
    ref_v, ref_i = x.sort(dim=1, descending=True, stable=True)
    assert torch.equal(best[0], ref_v[:, :k])
    for a, b in zip(best[1].tolist(), (ref_i[:, :k] + 100).tolist()):
        assert sorted(a) == sorted(b)
