"""CPU list workers: the grouped scan's lists spread over a few threads, each running its torch ops on
one OpenMP thread.

torch's own intra-op threads meet at a barrier after every op, and a grouped search is thousands of
small ops: when another process holds a core, every barrier waits for the descheduled thread
(IVFFlat 200k x 128 nq = 64, 2-core machine at load 12: 865 ms on torch's 2 threads, 90 ms on one).
Workers meet once per search instead, and take lists from one shared queue, so a slowed worker
takes fewer. Each list is still scored by one GEMM on one thread, whichever worker runs it, so
results do not depend on the worker count or on the machine's load.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import torch

_pools: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def _pool(n: int) -> ThreadPoolExecutor:
    with _lock:
        if n not in _pools:
            _pools[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="torch_ivf-lists")
        return _pools[n]


def for_each(fn, items, workers: int) -> None:
    """fn(item) for every item, by the calling thread and workers - 1 pool threads; the first error
    raised in any of them is raised here once all have stopped."""
    if workers <= 1 or len(items) < 2:
        for item in items:
            fn(item)
        return
    items = list(items)
    nxt, take, failed = [0], threading.Lock(), []

    def drain(own_thread: bool):
        if own_thread:
            torch.set_num_threads(1)  # this pool thread's OpenMP team, not the caller's setting
        while not failed:
            with take:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(items):
                return
            try:
                fn(items[i])
            except BaseException as e:  # stop the others; re-raised by the caller below
                failed.append(e)
                return

    futures = [_pool(workers - 1).submit(drain, True) for _ in range(workers - 1)]
    drain(False)
    for f in futures:
        f.result()
    if failed:
        raise failed[0]
