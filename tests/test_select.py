"""The CPU grouped scan that selects over all of a query's lists at once (search/select.py) and the
per-query path with a query's lists shared out to workers: the same results as the per-list scan."""
import numpy as np
import pytest
import torch

import torch_ivf as ti
from conftest import clustered
from torch_ivf.search import cost, grouped, select
from torch_ivf.topk import topk_first


def _index(kind, metric="l2", n=3000, d=24, nlist=32):
    x = clustered(n, d, centres=30, seed=3)
    if kind == "flat":
        index = ti.IndexIVFFlat(d, nlist, metric, nprobe=6)
    elif kind == "fp16":  # residual storage: the coarse term is added to each list's scores
        index = ti.IndexIVFFlat(d, nlist, metric, nprobe=6, dtype=torch.float16)
    elif kind == "sq":
        index = ti.index_factory(d, f"IVF{nlist},SQ8", metric)
        index.nprobe = 6
    else:
        index = ti.IndexIVFPQ(d, nlist, 6, 4, metric=metric, nprobe=6)
    index.train(x)
    index.add(x)
    index.remove_ids(np.arange(0, n, 5))  # holes in the slab: lists are not back to back
    index.search_mode = "grouped"
    return index


def _same(got, want):
    """Bitwise the same distances; the same ids, except that equal distances may come in either order
    (neither path orders the entries of one score among themselves)."""
    np.testing.assert_array_equal(got[0], want[0])
    for D, I, Iw in zip(got[0], got[1], want[1]):
        if not np.array_equal(I, Iw):
            assert sorted(zip(D, I)) == sorted(zip(D, Iw))


def _per_list(index, *args, **kw):
    """The reference: a top-k per list, then per query over the lists' candidates."""
    saved = grouped.GroupedScan._select_across_lists
    grouped.GroupedScan._select_across_lists = lambda self, max_codes: False
    try:
        return index.search(*args, **kw)
    finally:
        grouped.GroupedScan._select_across_lists = saved


@pytest.mark.parametrize("kind,metric", [("flat", "l2"), ("flat", "ip"), ("fp16", "l2"), ("sq", "l2"),
                                         ("pq", "l2"), ("pq", "ip")])
def test_selection_over_all_lists_equals_the_per_list_top_k(kind, metric, monkeypatch):
    index = _index(kind, metric)
    xq = clustered(40, 24, centres=30, seed=5)
    for k in (1, 10, 300):  # 300: more than some queries' candidates, so -1 padding
        _same(index.search(xq, k), _per_list(index, xq, k))  # the same GEMMs: bitwise
    monkeypatch.setattr(select, "BUDGET", 256)  # lists in many chunks, merged
    _same(index.search(xq, 10), _per_list(index, xq, 10))


def test_selection_filters_and_keeps_the_first_stored_of_ties():
    index = _index("flat")
    xq = clustered(12, 24, centres=30, seed=6)
    mask = np.zeros(3000, dtype=bool)
    mask[::3] = True
    params = ti.SearchParams(allowed=mask, nprobe=3)
    got = index.search(xq, 50, params=params)
    _same(got, _per_list(index, xq, 50, params=params))
    assert np.isin(got[1][got[1] >= 0] % 3, [0]).all()
    # many equal scores, across groups and lists: the first stored are returned, as exact search does
    v = np.tile(np.eye(8, dtype=np.float32), (100, 1))
    dup = ti.IndexIVFFlat(8, 4, nprobe=4)
    dup.train(v)
    dup.add(v)
    dup.search_mode = "grouped"
    exact = ti.IndexFlat(8)
    exact.add(v)
    for k in (3, 70, 99, 100, 101, 350):
        D, I = dup.search(v[:6], k)
        _same((D, I), _per_list(dup, v[:6], k))
        if k <= 100:  # ties within one list, stored in label order: the rows exact search returns
            De, Ie = exact.search(v[:6], k)
            np.testing.assert_array_equal(D, De)
            np.testing.assert_array_equal(np.sort(I, 1), np.sort(Ie, 1))


def test_selection_with_empty_lists_and_queries_without_candidates():
    index = _index("flat", nlist=64)
    xq = clustered(10, 24, centres=30, seed=7)
    assert any(index.invlists.list_size(lst) == 0 for lst in range(64))  # some probes meet empty lists
    _same(index.search(xq, 40), _per_list(index, xq, 40))
    index.remove_ids(np.arange(3000))  # every list empty
    D, I = index.search(xq, 5)
    assert (I == -1).all()


def test_group_tournament_is_exact_on_random_ties():
    rng = np.random.default_rng(0)
    for _ in range(30):
        nq, width, k = 3, int(rng.integers(1, 400)), int(rng.integers(1, 40))
        s = torch.from_numpy(rng.integers(0, 5, (nq, width)).astype(np.float32))  # heavy ties
        s[torch.from_numpy(rng.random((nq, width)) < 0.2)] = float("-inf")
        # one list of `width` rows probed by nq queries, scored by a fake scanner
        got = select_topk(s, k)
        want = topk_first(s, min(k, width))
        kk = want[0].shape[1]
        assert torch.equal(got[0][:, :kk], want[0])
        for r in range(nq):  # the same rows for every finite score (in any order among equal ones)
            pairs = [sorted((v, i) for v, i in zip(g[0][r, :kk].tolist(), g[1][r, :kk].tolist()) if v > float("-inf"))
                     for g in (got, want)]
            assert pairs[0] == pairs[1]


class _Rows:
    """The scanner and index surface scan_select reads, over a given (nq, width) score matrix."""

    def __init__(self, s):
        self.s = s
        self.scanner = self
        self.invlists = self
        self.starts = torch.tensor([0])
        self.sizes = torch.tensor([s.shape[1]])

    def score_block(self, ctx, qsel, lst, a, b):
        return self.s[qsel, a:b]


def select_topk(s, k):
    nq = s.shape[0]
    return select.scan_select(_Rows(s), None, torch.zeros((nq, 1), dtype=torch.int64), k, None, 1)


def test_one_query_split_over_workers_equals_one_worker(monkeypatch):
    index = _index("flat")
    index.search_mode = "auto"
    xq = clustered(6, 24, centres=30, seed=8)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        want = [index.search(xq[i:i + 1], 7) for i in range(6)]
        torch.set_num_threads(2)
        monkeypatch.setattr(cost, "QUERY_SPLIT_ELEMENTS", 0)  # split even these small scans
        seen = []
        real = cost.query_workers
        monkeypatch.setattr(cost, "query_workers", lambda e: seen.append(real(e)) or real(e))
        got = [index.search(xq[i:i + 1], 7) for i in range(6)]
        assert torch.get_num_threads() == 2  # the caller's setting is left as it was
    finally:
        torch.set_num_threads(before)
    assert seen and set(seen) == {2}
    for (D, I), (Dw, Iw) in zip(got, want):
        np.testing.assert_array_equal(I, Iw)
        np.testing.assert_array_equal(D, Dw)
