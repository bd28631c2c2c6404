"""Cost of the index readers-writer lock (torch_ivf.locking): nq=1 CPU search with the lock and with
its acquire/release swapped for no-ops, in interleaved rounds; median per-call time.

    PYTHONPATH=. python benchmarks/lock_overhead.py
"""
import statistics
import time

import numpy as np
import torch

import torch_ivf as ti
from torch_ivf import locking

torch.set_num_threads(1)
rng = np.random.default_rng(0)
xb = rng.standard_normal((20000, 64)).astype(np.float32)
xq = rng.standard_normal((1, 64)).astype(np.float32)
indexes = {"Flat": ti.IndexFlat(64), "IVFFlat": ti.IndexIVFFlat(64, 64, nprobe=8, niter=5)}
for ix in indexes.values():
    ix.train(xb); ix.add(xb)
real = {n: getattr(locking.RWLock, n) for n in ("acquire_read", "release_read")}
noop = {n: (lambda self: None) for n in real}

def bench(ix, n=300):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); ix.search(xq, 10); ts.append(time.perf_counter() - t)
    return statistics.median(ts)

lock = locking.RWLock()
t = time.perf_counter()
for _ in range(100000):
    lock.acquire_read(); lock.release_read()
pair = (time.perf_counter() - t) / 100000
print(f"uncontended acquire_read+release_read: {pair*1e6:.2f} us")
for name, ix in indexes.items():
    res = {"lock": [], "nolock": []}
    for r in range(6):
        for mode, fns in (("lock", real), ("nolock", noop)):
            for k, f in fns.items(): setattr(locking.RWLock, k, f)
            res[mode].append(bench(ix))
    for k, f in real.items(): setattr(locking.RWLock, k, f)
    a, b = statistics.median(res["lock"]), statistics.median(res["nolock"])
    print(f"{name} nq=1 k=10: with lock {a*1e6:.1f} us, without {b*1e6:.1f} us, diff {(a-b)*1e6:+.1f} us ({(a/b-1)*100:+.1f}%)")
