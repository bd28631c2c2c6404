"""SQ on a GPU: the CUDA results against the CPU (torch reference) results of the same trained index,
recall@10 against exact ground truth, and search time by batch size, beside IVFFlat.

    python -m benchmarks.sq.gpu_check OUT.jsonl
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

import torch_ivf as ti
from benchmarks.common import recall_at_k
from benchmarks.datasets import DatasetUnavailable, exact_knn, make_clustered, make_minilm

K = 10
DEV = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: a smoke run of this script


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def timed(index, q, reps=7):
    index.search(q, K)
    sync()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        index.search(q, K)
        sync()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main(out_path, n="100000"):
    sets = {f"clustered-{int(n) // 1000}k-d64": make_clustered(int(n), 64, 1000, seed=3)[:2]}
    try:
        sets["minilm-19k-d384"] = make_minilm(1000, max_shards=1)[:2] if int(n) >= 100000 else None
    except DatasetUnavailable as e:
        print(e)
    rows = []
    for name, pair in sets.items():
        if pair is None:
            continue
        xb, xq = pair
        truth = exact_knn(xb, xq, K, "l2")[1]
        nlist = 256 if len(xb) > 50000 else 128
        for desc in [f"IVF{nlist},Flat", f"IVF{nlist},SQ8", f"IVF{nlist},SQ4", f"IVF{nlist},SQfp16", "SQ8"]:
            cpu = ti.index_factory(xb.shape[1], desc)
            cpu.train(xb)
            cpu.add(xb)
            if hasattr(cpu, "nprobe"):
                cpu.nprobe = 16
            gpu = ti.clone_index(cpu).to(DEV)
            Dc, Ic = cpu.search(xq, K)
            Dg, Ig = gpu.search(torch.from_numpy(xq).to(DEV), K)
            Ig = Ig.cpu().numpy()
            row = {"data": name, "index": desc, "bytes_per_vector": int(sum(
                t.element_size() * (t[0].numel() if t.ndim else 1) for n, t in gpu.invlists.fields().items()
                if n != "labels")), "recall_cpu": recall_at_k(Ic, truth, K), "recall_cuda": recall_at_k(Ig, truth, K),
                "ids_equal_cpu_cuda": float((Ic == Ig).mean()),
                "max_rel_D_diff": float(np.abs(Dg.cpu().numpy() - Dc).max() / max(1e-9, np.abs(Dc).max()))}
            for b in (1, 100, 1000):
                q = torch.from_numpy(xq[:b]).to(DEV)
                row[f"qps_nq{b}"] = b / timed(gpu, q)
            rows.append(row)
            print(json.dumps(row), flush=True)
    with open(out_path, "w") as f:
        for r in rows:
            f.write(json.dumps({**r, "device": torch.cuda.get_device_name() if DEV == "cuda" else "cpu"}) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
