"""Tile settings of IVFFlat's Triton list scan (torch_ivf/kernels/flat_scan.py TILES) on a GPU:
median search time per (rows per tile, dims per step, warps, dot precision) and nprobe, and the torch bucketed scan.

    python -m benchmarks.flat_tiles --data-dir benchmarks/pq/.data [--clustered 1000000,128 --nq 19600]
"""
from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import torch

import torch_ivf as ti
from benchmarks.datasets import make_clustered
from benchmarks.pq.bench_pq import load_minilm, timed_search
from benchmarks.pq.gpu_profile import kernel_table
from torch_ivf.kernels import flat_scan


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--nq", type=int, default=5000)
    ap.add_argument("--nprobes", default="16,64")
    ap.add_argument("--nlist", type=int, default=0, help="0: ~4 sqrt(n)")
    ap.add_argument("--clustered", default="", help="n,d: clustered data instead of MiniLM")
    args = ap.parse_args()
    if args.clustered:
        n, d = (int(v) for v in args.clustered.split(","))
        xb, xq, _ = make_clustered(n, d, args.nq, seed=0)
        metric = "l2"
    else:
        xb, xq, metric, _ = load_minilm(args.data_dir, args.nq, 0, 4)
    n, d = xb.shape
    nlist = args.nlist or 2 ** round(np.log2(4 * np.sqrt(n)))
    index = ti.IndexIVFFlat(d, nlist, metric, niter=10, device="cuda")
    index.train(xb)
    index.add(xb)
    q = torch.from_numpy(xq).cuda()
    default = flat_scan.TILES
    for nprobe in [int(v) for v in args.nprobes.split(",")]:
        index.nprobe = nprobe
        index.search_mode = "matrix"
        ref = index.search(q, 10)[1]
        for tiles in itertools.product((64, 128), (16, 32), (4,), ("ieee", "tf32x3")):
            flat_scan.TILES = tiles
            try:
                secs, (_, I) = timed_search(lambda: index.search(q, 10), torch.cuda.synchronize, 5)
            except Exception as e:  # out of registers / shared memory for this tile shape
                print(json.dumps({"nprobe": nprobe, "tiles": tiles, "error": type(e).__name__}), flush=True)
                continue
            print(json.dumps({"n": n, "nprobe": nprobe, "tiles": tiles, "ms": round(secs * 1e3, 3),
                              "same_ids": round(float((I == ref).float().mean()), 4)}), flush=True)
        flat_scan.TILES = default
        total, top = kernel_table(lambda: index.search(q, 10), 6)
        print(json.dumps({"nprobe": nprobe, "profile_gpu_ms": round(total, 3), "kernels": top}))
        index.search_mode = "grouped"
        secs, _ = timed_search(lambda: index.search(q, 10), torch.cuda.synchronize, 5)
        print(json.dumps({"n": n, "nprobe": nprobe, "mode": "grouped (torch buckets)", "ms": round(secs * 1e3, 3)}))


if __name__ == "__main__":
    main()
