"""Property-based: random add / add_with_ids / remove_ids / search / save+load sequences against a
reference model (dict label -> vector + brute force). Flat and IVF with nprobe = nlist are exact,
so every search must agree with the model (ties aside)."""
import tempfile
from pathlib import Path

import numpy as np
from conftest import assert_knn_equal, exact_knn
from hypothesis import HealthCheck, settings
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
