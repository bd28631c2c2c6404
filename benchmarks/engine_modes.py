"""Engine tuning on a GPU: every search mode x nq x dtype on clustered data, recall vs exact, plus
add timings and a profile of the slowest paths. Writes JSONL to $OUT (or ./gpu_modes.jsonl).

    python -m benchmarks.engine_modes [--d 128] [--n 1000000] [--old-site DIR] [--profile] [--bruteforce]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

import torch_ivf as ti

from .common import recall_at_k
from .datasets import exact_knn, make_clustered


def recall(I, G):
    return recall_at_k(I.cpu().numpy() if hasattr(I, "cpu") else I, G, 10)


def timed(fn, reps):
    fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), ts, out


OLD = r"""
import sys, time, json, numpy as np, torch
sys.path.insert(0, sys.argv[1])
from torch_ivf.index import IndexIVFFlat
xb = torch.from_numpy(np.load(sys.argv[2])).cuda(); xq = torch.from_numpy(np.load(sys.argv[3])).cuda()
nlist, nprobe, k = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
idx = IndexIVFFlat(xb.shape[1], metric="l2", nlist=nlist, nprobe=nprobe, device="cuda")
t = time.perf_counter(); idx.train(xb[:nlist * 256]); torch.cuda.synchronize(); tt = time.perf_counter() - t
t = time.perf_counter(); idx.add(xb); torch.cuda.synchronize(); ta = time.perf_counter() - t
for mode in ("auto", "csr"):
    idx.search_mode = mode
    for nq in (1, 64, 1024, len(xq)):
        q = xq[:nq]; idx.search(q, k); torch.cuda.synchronize(); ts = []
        for _ in range(5 if nq > 1 else 30):
            t = time.perf_counter(); D, I = idx.search(q, k); torch.cuda.synchronize(); ts.append(time.perf_counter() - t)
        np.save(f"/tmp/old_I_{mode}_{nq}.npy", I.cpu().numpy())
        print(json.dumps({"lib": "torch-ivf-0.1.1", "mode": mode, "nq": nq, "qps": nq / float(np.median(ts)),
                          "train_s": tt, "add_s": ta, "ids": f"/tmp/old_I_{mode}_{nq}.npy"}), flush=True)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--old-site", default=None)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--bruteforce", action="store_true")
    a = ap.parse_args()
    out_dir = os.environ.get("OUT", ".")
    sink = open(os.path.join(out_dir, f"gpu_modes_d{a.d}.jsonl"), "a")
    dev = torch.device("cuda")
    info = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}

    def emit(**row):
        row.update(info, d=a.d, n=a.n, nlist=a.nlist, nprobe=a.nprobe, k=10)
        print(json.dumps(row), flush=True)
        sink.write(json.dumps(row) + "\n")

    xb_np, xq_np, extra_np = make_clustered(a.n, a.d, 19600, n_centres=4000, seed=0)
    xb, xq = torch.from_numpy(xb_np).to(dev), torch.from_numpy(xq_np).to(dev)
    G = exact_knn(xb_np, xq_np, 10, "l2", device="cuda")[1]
    for dtype in (torch.float32, torch.float16):
        index = ti.IndexIVFFlat(a.d, a.nlist, nprobe=a.nprobe, device=dev, dtype=dtype)
        t = time.perf_counter(); index.train(xb); torch.cuda.synchronize(); tt = time.perf_counter() - t
        t = time.perf_counter(); index.add(xb); torch.cuda.synchronize(); ta = time.perf_counter() - t
        extra = torch.from_numpy(extra_np).to(dev)
        adds = []
        for i in range(3):
            t = time.perf_counter(); index.add(extra[i * 1000:(i + 1) * 1000]); torch.cuda.synchronize()
            adds.append(time.perf_counter() - t)
        index.remove_ids(torch.arange(a.n, a.n + 3000, device=dev))
        mem = index.invlists.nbytes()
        emit(kind="build", dtype=str(dtype), train_s=tt, add_1m_s=ta, add_1000_ms=[x * 1e3 for x in adds],
             bytes_per_vector_capacity=mem / index.ntotal, raw=a.d * (4 if dtype == torch.float32 else 2))
        for nq in (1, 64, 1024, 19600):
            q = xq[:nq]
            for mode in ("matrix", "matrix-torch", "grouped", "auto"):
                if mode == "matrix-torch" and nq > 64:
                    continue
                index.search_mode = mode.split("-")[0]
                ti.kernels.enabled = mode != "matrix-torch"
                med, ts, (D, I) = timed(lambda: index.search(q, 10), 30 if nq == 1 else 5)
                emit(kind="search", lib="ours", dtype=str(dtype), mode=mode, nq=nq, qps=nq / med,
                     p50_ms=med * 1e3, p99_ms=float(np.percentile(ts, 99)) * 1e3, recall=recall(I, G[:nq]))
        if a.profile and dtype == torch.float32:
            from torch.profiler import ProfilerActivity, profile
            for mode, nq in (("matrix", 1), ("grouped", 19600), ("grouped", 64), ("matrix", 1024)):
                index.search_mode = mode
                with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                    for _ in range(3):
                        index.search(xq[:nq], 10)
                    torch.cuda.synchronize()
                with open(os.path.join(out_dir, f"profile_d{a.d}.txt"), "a") as f:
                    f.write(f"--- profile {mode} nq={nq}\n")
                    f.write(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15) + "\n")
        del index
    for dtype in (torch.float32, torch.float16) if a.bruteforce else ():
        xbd, xn = xb.to(dtype), (xb * xb).sum(1)
        for nq in (1, 64, 1024, 19600):
            q = xq[:nq].to(dtype)
            def bf():
                res = []
                for i in range(0, nq, 2048):
                    s = (2 * (q[i:i + 2048] @ xbd.T)).float() - xn
                    res.append(s.topk(10, dim=1).indices)
                return torch.cat(res)
            med, ts, I = timed(bf, 10 if nq == 1 else 3)
            emit(kind="search", lib="bruteforce", dtype=str(dtype), nq=nq, qps=nq / med, p50_ms=med * 1e3,
                 recall=recall(I, G[:nq]))
    if a.old_site:
        np.save("/tmp/xb.npy", xb.cpu().numpy()); np.save("/tmp/xq.npy", xq.cpu().numpy())
        p = subprocess.run([sys.executable, "-c", OLD, a.old_site, "/tmp/xb.npy", "/tmp/xq.npy", str(a.nlist),
                            str(a.nprobe), "10"], capture_output=True, text=True, timeout=400)
        for line in p.stdout.splitlines():
            row = json.loads(line)
            row["recall"] = recall(np.load(row.pop("ids")), G[: row["nq"]])
            emit(kind="search", **row)
        if p.returncode:
            print(p.stderr[-3000:])


if __name__ == "__main__":
    main()
