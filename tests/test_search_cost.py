"""The search cost model: thread counts chosen and restored, chunk and span choices, stored figures."""
import json

import numpy as np

import pytest
import torch

import torch_ivf as ti
from torch_ivf.search import cost, graphs

CPU = torch.device("cpu")


def test_small_cpu_batches_run_on_one_thread_and_the_setting_is_restored():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with cost.cpu_threads_for(CPU, 1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError):
            with cost.cpu_threads_for(CPU, 1):
                raise RuntimeError("boom")
        assert torch.get_num_threads() == 2  # restored on errors too
        with cost.cpu_threads_for(torch.device("meta"), 1):  # not a CPU search: untouched
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_search_leaves_the_thread_setting_alone():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        index = ti.IndexFlat(8)
        index.add(torch.randn(50, 8))
        index.search(torch.randn(1, 8), 3)
        index.search(torch.randn(40, 8), 3)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_cpu_threads_depend_on_the_batch_only(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert cost.cpu_threads(1) == cost.cpu_threads(cost.SMALL_BATCH) == 1
    assert cost.cpu_threads(cost.SMALL_BATCH + 1) == 2


def test_flat_chunks_split_small_batches_only():
    args = dict(P=16, nlist=1024, ntotal=1_000_000, max_size=10_000, device=CPU)
    one = cost.flat_chunk_rows(1, **args)
    assert cost.DEFAULTS["min_chunk_rows"] <= one < 10_000
    sizes = [cost.flat_chunk_rows(nq, **args) or 10**9 for nq in (1, 16, 256, 4096, 100_000)]
    assert sizes == sorted(sizes)  # larger batches, longer chunks, then whole lists
    assert cost.flat_chunk_rows(100_000, **args) == 0


def test_query_major_kernel_for_small_batches_and_small_k_only():
    rows = cost.flat_probe_rows(1, 128, 10, CPU)
    assert rows in (64, 128, 256)  # kernels.flat_scan.PROBE_TILES
    most = cost.DEFAULTS["flat_query_major_elems"]
    assert cost.flat_probe_rows(most // 128, 128, 10, CPU) == rows
    assert cost.flat_probe_rows(most // 128 + 1, 128, 10, CPU) == 0
    assert cost.flat_probe_rows(1, 384, 10, CPU) == rows and cost.flat_probe_rows(2, 384, 10, CPU) == 0
    assert cost.flat_probe_rows(1, 128, 33, CPU) == 0


def test_longest_chunks_follow_in_place_changes():
    sizes = torch.tensor([5, 300, 129, 1000])
    assert cost.longest_chunks(sizes, 2, 128) == 8 + 3
    sizes[0] = 5000  # an add grows a list in place: the cached bound must not be reused
    assert cost.longest_chunks(sizes, 2, 128) == 40 + 8
    assert cost.longest_chunks(sizes, 9, 128) == 40 + 8 + 3 + 2


def test_pq_span_only_on_gpus():
    assert cost.pq_span(1, 16, 4000, CPU) == 0
    assert not graphs.usable(CPU, 1)


def test_stored_figures_override_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cost.figures.cache_clear()
    try:
        assert cost.figures(CPU) == cost.DEFAULTS
        path = cost.save_figures(CPU, flat_programs_per_sm=4)
        assert json.loads(path.read_text())["flat_programs_per_sm"] == 4
        assert cost.figures(CPU)["flat_programs_per_sm"] == 4
        with pytest.raises(ValueError, match="unknown cost figures"):
            cost.save_figures(CPU, bogus=1)
        path.write_text("not json")
        cost.figures.cache_clear()
        assert cost.figures(CPU) == cost.DEFAULTS  # an unreadable file is ignored
    finally:
        cost.figures.cache_clear()


def test_pq_launches_fill_a_gpu_within_its_memory_share(monkeypatch):
    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(cost, "figures", lambda device: dict(cost.DEFAULTS))
    monkeypatch.setattr(cost, "_sms", lambda device: 132)
    monkeypatch.setattr(cost, "_memory", lambda device: 140 << 30)
    budget, width = 1 << 25, 500_000  # 100M rows, nlist 16384, nprobe 16: the budget alone gives 67 queries
    assert cost.pq_chunk_queries(10_000, 16, width, budget, CPU) == budget // width
    chunk = cost.pq_chunk_queries(10_000, 16, width, budget, gpu)
    assert chunk >= cost.DEFAULTS["pq_programs_per_sm"] * 132  # programs to fill the device
    assert chunk * width * 4 <= (140 << 30) * cost.DEFAULTS["pq_buffer_share"]
    assert cost.pq_chunk_queries(10, 16, width, budget, gpu) == 10  # never more than the batch
    assert cost.pq_chunk_queries(10_000, 16, 1000, budget, gpu) == 10_000  # narrow rows: the budget rule
    monkeypatch.setattr(cost, "_memory", lambda device: 1 << 30)  # a small GPU: its share bounds the buffer
    assert cost.pq_chunk_queries(10_000, 16, width, budget, gpu) == budget // width


# ---- the per-query path (CPU, small batches) ---------------------------------------------------
from conftest import clustered  # noqa: E402
from torch_ivf.search import choose  # noqa: E402


def _ivf(kind, metric="l2"):
    x = clustered(3000, 24, centres=30, seed=3)
    if kind == "flat":
        index = ti.IndexIVFFlat(24, 32, metric, nprobe=6)
    elif kind == "fp16":
        index = ti.IndexIVFFlat(24, 32, metric, nprobe=6, dtype=torch.float16)
    else:
        index = ti.IndexIVFPQ(24, 32, 6, 4, metric=metric, nprobe=6)
    index.train(x)
    index.add(x)
    index.remove_ids(np.arange(0, 3000, 5))  # holes in the slab: lists are not back to back
    return index, clustered(9, 24, centres=30, seed=4)


@pytest.mark.parametrize("kind,metric", [("flat", "l2"), ("flat", "ip"), ("fp16", "l2"), ("pq", "l2"), ("pq", "ip")])
def test_per_query_path_equals_grouped_for_one_query(kind, metric):
    index, xq = _ivf(kind, metric)
    assert choose.choose_path(index, 1, 6) == "query"
    for i in range(len(xq)):
        got = index.search(xq[i:i + 1], 7)
        index.search_mode = "grouped"
        want = index.search(xq[i:i + 1], 7)
        index.search_mode = "auto"
        np.testing.assert_array_equal(got[0], want[0])  # the same scanner call: bitwise
        # equal scores (PQ codes) may come in either order; which rows are returned may not differ
        assert sorted(zip(got[0][0], got[1][0])) == sorted(zip(want[0][0], want[1][0]))


def test_per_query_path_results_do_not_depend_on_the_batch():
    index, xq = _ivf("flat")
    D, I = index.search(xq[:choose.PER_QUERY_MAX_NQ], 5)
    for i in range(choose.PER_QUERY_MAX_NQ):
        Di, Ii = index.search(xq[i:i + 1], 5)
        np.testing.assert_array_equal(Ii[0], I[i])
        np.testing.assert_array_equal(Di[0], D[i])


def test_per_query_path_filters_pads_and_keeps_first_stored_of_ties():
    index, xq = _ivf("flat")
    mask = np.zeros(3000, dtype=bool)
    mask[::4] = True
    params = ti.SearchParams(allowed=mask, nprobe=2)
    D, I = index.search(xq[:2], 400, params=params)  # k beyond the candidates: -1 padding
    index.search_mode = "grouped"
    Dg, Ig = index.search(xq[:2], 400, params=params)
    np.testing.assert_array_equal(I, Ig)
    assert (I == -1).any() and np.isin(I[I >= 0] % 4, [0]).all()
    # duplicates: of equal scores the first stored are returned, as exact search returns them
    dup = ti.IndexIVFFlat(4, 2, nprobe=2)
    v = np.tile(np.eye(4, dtype=np.float32), (6, 1))
    dup.train(v)
    dup.add(v)
    assert sorted(dup.search(v[:1], 3)[1][0]) == [0, 4, 8]


def test_per_query_path_not_taken_for_max_codes_or_large_batches():
    index, _ = _ivf("flat")
    assert choose.choose_path(index, 1, 6, max_codes=100) == "grouped"
    assert choose.choose_path(index, choose.PER_QUERY_MAX_NQ + 1, 6) == "grouped"
    index.search_mode = "matrix"
    assert choose.choose_path(index, 1, 6) == "matrix"  # a forced mode is kept


# ---- CPU list workers: one thread per op, lists spread over workers ----------------------------
from torch_ivf.search import workers  # noqa: E402


def test_ivf_results_do_not_depend_on_threads_or_workers(monkeypatch):
    index, _ = _ivf("flat")
    xq = clustered(40, 24, centres=30, seed=5)
    before = torch.get_num_threads()
    runs = []
    try:
        for threads, n_workers in ((1, 1), (2, 2), (2, 1), (3, 3)):
            torch.set_num_threads(threads)
            monkeypatch.setattr(cost, "cpu_workers", lambda nq, _w=n_workers: _w)
            runs.append(index.search(xq, 6))
            assert torch.get_num_threads() == threads  # the caller's setting is left as it was
    finally:
        torch.set_num_threads(before)
    for D, I in runs[1:]:
        np.testing.assert_array_equal(I, runs[0][1])
        np.testing.assert_array_equal(D, runs[0][0])


def test_cpu_workers_follow_the_callers_setting_and_ivf_ops_run_on_one_thread():
    seen = []
    index, xq = _ivf("flat")
    before = torch.get_num_threads()
    real = cost.cpu_workers
    try:
        torch.set_num_threads(2)
        cost.cpu_workers = lambda nq: seen.append((real(nq), torch.get_num_threads())) or real(nq)
        index.search(clustered(20, 24, centres=30, seed=6), 3)
        index.search(xq[:1], 3)  # small batches take the per-query path: no workers
    finally:
        cost.cpu_workers = real
        torch.set_num_threads(before)
    assert seen == [(2, 1)]  # two workers, each op on one OpenMP thread
    assert cost.cpu_workers(100) == 1  # outside a search: no caller setting recorded


def test_for_each_runs_every_item_once_and_raises_the_first_error():
    got = []
    workers.for_each(got.append, list(range(50)), 3)
    assert sorted(got) == list(range(50))

    def boom(i):
        if i == 7:
            raise ValueError("item 7")
    with pytest.raises(ValueError, match="item 7"):
        workers.for_each(boom, list(range(20)), 2)
    workers.for_each(got.append, [], 2)  # nothing to do


def test_list_workers_leave_the_count_new_threads_start_with():
    import threading
    index, _ = _ivf("flat")
    before = torch.get_num_threads()
    seen = []
    try:
        torch.set_num_threads(2)
        for pool in workers._pools.values():  # the pool is made (its threads set to one OpenMP thread) below
            pool.shutdown(wait=False)
        workers._pools.clear()
        index.search(clustered(40, 24, centres=30, seed=9), 5)
        workers.for_each(lambda i: None, list(range(8)), 3)  # a pool made outside any search
        t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        t.start()
        t.join()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [2]  # a thread started after the searches gets the caller's count, not the workers' 1
