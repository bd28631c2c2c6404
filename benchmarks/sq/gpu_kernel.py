"""IVF-SQ8 on a GPU: the flat-scan Triton kernel reading the 8-bit codes (SQCodec.kernel_rows) against
the torch path (kernels off, the reference) and against IVFFlat's kernel, on clustered 1M x 128
generated on the GPU (benchmarks.datasets.TorchMixture), shared coarse centroids (nlist 1024), nprobe 32.

Checks at every batch size: ids of the kernel and the torch path (fraction equal) and their largest
distance difference; recall@10 against exact float32 ground truth; bytes per vector. Times: median of
repeats (one warm-up; repeats until 0.4 s or 15) at nq 1, 64, 1024, 10000.

    python -m benchmarks.sq.gpu_kernel OUT.jsonl [budget_s]
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

import torch_ivf as ti
from benchmarks.common import recall_tensors
from benchmarks.datasets import TorchMixture, exact_top_torch
from torch_ivf import kernels

N, D, NQ, NLIST, NPROBE, K = 1_000_000, 128, 10_000, 1024, 32, 10
BATCHES = (1, 64, 1024, 10_000)


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_time(fn, reps=15, min_s=0.4):
    fn()
    sync()
    ts, t0 = [], time.perf_counter()
    while len(ts) < reps and (len(ts) < 3 or time.perf_counter() - t0 < min_s):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def search(index, q, use_kernels=True):
    kernels.enabled = use_kernels
    try:
        return index.search(q, K)
    finally:
        kernels.enabled = True


def bytes_per_vector(index) -> float:
    rows = index.invlists.fields()
    return sum(t.element_size() * t[0].numel() for n, t in rows.items() if n != "labels") + 8


def main(out_path, budget_s="100", n=str(N)):
    t0, n = time.perf_counter(), int(n)
    dev = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: a smoke run at toy sizes
    nlist = NLIST if n >= 100_000 else 64
    mix = TorchMixture(D, seed=5, device=dev)
    xb, xq = mix.sample(n), mix.sample(NQ)
    gt = exact_top_torch(xb, xq[:1024], K)
    flat = ti.IndexIVFFlat(D, nlist, nprobe=NPROBE, device=dev, niter=10)
    flat.train(xb[torch.randperm(n, device=dev)[: 64 * nlist]])
    flat.add(xb)
    sq = ti.IndexIVFScalarQuantizer(D, nlist, "QT_8bit", nprobe=NPROBE, device=dev)
    sq.centroids = flat.centroids  # the same lists: only the codec differs
    sq.train(xb[torch.randperm(n, device=dev)[:200_000]])
    sq.add(xb)
    build_s = time.perf_counter() - t0
    rows = []
    info = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "n": n, "d": D, "nlist": nlist,
            "nprobe": NPROBE, "k": K, "build_s": round(build_s, 1),
            "bytes_per_vector": {"IVFFlat": bytes_per_vector(flat), "IVFSQ8": bytes_per_vector(sq)}}
    print(json.dumps(info), flush=True)
    for nq in BATCHES:
        if time.perf_counter() - t0 > float(budget_s):
            print(f"budget spent: nq {nq} not run", flush=True)
            break
        q = xq[:nq]
        Dk, Ik = search(sq, q)
        Dt, It = search(sq, q, use_kernels=False)
        Df, If = search(flat, q)
        m = min(nq, gt.shape[0])
        row = {**{k: info[k] for k in ("device", "n", "d", "nlist", "nprobe", "k")}, "nq": nq,
               "ids_equal_kernel_torch": float((Ik == It).float().mean()),
               "max_abs_D_diff": float((Dk - Dt).abs().max()),
               "max_rel_D_diff": float(((Dk - Dt).abs() / Dt.abs().clamp_min(1e-6)).max()),
               "recall_sq8_kernel": recall_tensors(Ik[:m], gt[:m]), "recall_sq8_torch": recall_tensors(It[:m], gt[:m]),
               "recall_ivfflat": recall_tensors(If[:m], gt[:m]),
               "ms_sq8_kernel": 1e3 * median_time(lambda: search(sq, q)),
               "ms_sq8_torch": 1e3 * median_time(lambda: search(sq, q, use_kernels=False)),
               "ms_ivfflat_kernel": 1e3 * median_time(lambda: search(flat, q))}
        for name in ("sq8_kernel", "sq8_torch", "ivfflat_kernel"):
            row[f"qps_{name}"] = nq / (row[f"ms_{name}"] / 1e3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    with open(out_path, "w") as f:
        f.write(json.dumps({"build": info}) + "\n")
        for r in rows:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
