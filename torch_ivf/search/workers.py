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


def _one_thread() -> None:
    torch.set_num_threads(1)  # this pool thread's OpenMP team and MKL threads


def _pool(n: int) -> ThreadPoolExecutor:
    """n pool threads, each set to one OpenMP thread before the pool is handed out. torch.set_num_threads
    also stores the count as the one new threads start with, so a pool thread setting it after the
    search had restored the caller's count would change what the user's later threads get; the count
    is set once here, all n threads started, and the caller's count stored again after."""
    with _lock:
        if n not in _pools:
            caller = torch.get_num_threads()
            pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="torch_ivf-lists", initializer=_one_thread)
            started = threading.Barrier(n)  # n tasks that wait for each other: n threads, all initialised
            for f in [pool.submit(started.wait) for _ in range(n)]:
                f.result()
            torch.set_num_threads(caller)
            _pools[n] = pool
        return _pools[n]


def for_each(fn, items, workers: int) -> None:
    """fn(item) for every item, by the calling thread and workers - 1 pool threads; the first error
    raised in any of them is raised here once all have stopped.

    The caller waits for the items pool threads took, never for a pool thread to start: on a busy
    machine a woken thread may wait milliseconds for a core (IVFFlat nq = 1, two workers at load 7:
    1.79 ms against 1.01 on one), and by then the caller has taken the remaining items itself; a late
    thread finds none left and returns."""
    if workers <= 1 or len(items) < 2:
        for item in items:
            fn(item)
        return
    items = list(items)
    state = threading.Condition()
    nxt, busy, failed = [0], [0], []

    def drain():
        while True:
            with state:
                i = nxt[0]
                if failed or i >= len(items):
                    return
                nxt[0] += 1
                busy[0] += 1
            try:
                fn(items[i])
            except BaseException as e:  # stop the others; re-raised by the caller below
                with state:
                    failed.append(e)
            finally:
                with state:
                    busy[0] -= 1
                    state.notify_all()

    pool = _pool(workers - 1)
    for _ in range(workers - 1):
        pool.submit(drain)
    drain()
    with state:
        state.wait_for(lambda: busy[0] == 0)
    if failed:
        raise failed[0]
