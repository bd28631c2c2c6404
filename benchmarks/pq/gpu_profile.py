"""GPU breakdown of one PQ search: where the time of IVFPQ, Panorama and Panorama+RFlat goes.

    python -m benchmarks.pq.gpu_profile --data-dir benchmarks/pq/.data --shards 2 --nprobes 16,64
Prints per (index, k, nprobe) the median wall time of a search and the sum of its GPU kernel times
(the gap is host work: launches and synchronisations), then the heaviest kernels of each; with
--sweep, first the search times per setting of kernels.pq_lists (which lists it takes, its tiles).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import torch_ivf as ti
from benchmarks.datasets import make_clustered
from benchmarks.pq.bench_pq import identical, load_minilm, timed_search
from torch_ivf.kernels import pq_lists


def kernel_table(fn, rows):
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    ev = [e for e in prof.key_averages() if e.device_time_total > 0]
    total = sum(e.self_device_time_total for e in ev) / 1e3
    ev.sort(key=lambda e: -e.self_device_time_total)
    top = [(e.key[:60], round(e.self_device_time_total / 1e3, 3), e.count) for e in ev[:rows]]
    return total, top


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--nq", type=int, default=5000)
    ap.add_argument("--M", type=int, default=96)
    ap.add_argument("--nprobes", default="16,64")
    ap.add_argument("--k-factor", type=float, default=8)
    ap.add_argument("--rows", type=int, default=10)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--clustered", type=int, default=0, help="clustered n x 768 data instead of MiniLM (M = 192)")
    args = ap.parse_args()
    if args.clustered:
        xb, xq, _ = make_clustered(args.clustered, 768, args.nq, seed=0)
        metric, args.M = "l2", 192
    else:
        xb, xq, metric, _ = load_minilm(args.data_dir, args.nq, 0, args.shards)
    n, d = xb.shape
    nlist = 2 ** round(np.log2(4 * np.sqrt(n)))
    dev = torch.device("cuda")
    t = time.time()
    pano_r = ti.IndexRefine(ti.IndexIVFPQPanorama(d, nlist, args.M, 8, 8, metric, niter=10, pq_niter=10,
                                                  device=dev), k_factor=args.k_factor)
    pano_r.train(xb)
    pano_r.add(xb)
    pano = pano_r.base
    ref_r = ti.IndexRefine(ti.IndexIVFPQ(d, nlist, args.M, 8, metric=metric, device=dev), k_factor=args.k_factor)
    ref = ref_r.base
    ref.centroids = pano.centroids.clone()
    ref.pq.set_centroids(pano.pq.centroids)
    ref_r.add(pano._transform(torch.from_numpy(xb).to(dev)))  # refine in the (orthogonal) transformed space
    print(json.dumps({"built_s": round(time.time() - t, 1), "n": n, "nlist": nlist, "M": args.M,
                      "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}), flush=True)
    q = torch.from_numpy(xq).to(dev)
    qt = pano._transform(q)
    kk = int(10 * args.k_factor)
    cases = {"ivfpq k10": lambda: ref.search(qt, 10), "pano k10": lambda: pano.search(q, 10),
             f"ivfpq k{kk}": lambda: ref.search(qt, kk), f"pano k{kk}": lambda: pano.search(q, kk),
             "pano+RFlat k10": lambda: pano_r.search(q, 10), "ivfpq+RFlat k10": lambda: ref_r.search(qt, 10)}
    nprobes = [int(v) for v in args.nprobes.split(",")]
    defaults = (pq_lists.MIN_QUERIES, pq_lists.TILES)
    sweep = [(n, pq_lists.TILES) for n in (10**9, 64, 32, 16, 8)]
    sweep += [(32, (64, 64, 16, 4, "tf32x3")), (32, (32, 64, 32, 4, "tf32x3")), (32, (32, 64, 16, 8, "tf32x3"))]
    for min_q, tiles in sweep if args.sweep else ():  # which lists take the decode + GEMM scan, and its tiles
        pq_lists.MIN_QUERIES, pq_lists.TILES = min_q, tiles
        for nprobe in nprobes:
            pano.nprobe = ref.nprobe = nprobe
            row = {"min_queries": min_q, "tiles": tiles, "nprobe": nprobe}
            for name in ("ivfpq k10", "pano k10", f"ivfpq k{kk}", f"pano k{kk}"):
                row[name] = round(timed_search(cases[name], torch.cuda.synchronize, 7)[0] * 1e3, 3)
            row["identical"] = identical(*(tuple(t.cpu().numpy() for t in cases[c]()) for c in (f"pano k{kk}", f"ivfpq k{kk}")))
            print(json.dumps(row), flush=True)
    pq_lists.MIN_QUERIES, pq_lists.TILES = defaults
    for nprobe in nprobes:
        pano.nprobe = ref.nprobe = nprobe
        same = identical(*(tuple(t.cpu().numpy() for t in f()) for f in (cases["pano k10"], cases["ivfpq k10"])))
        for name, fn in cases.items():
            wall, _ = timed_search(fn, torch.cuda.synchronize, 9)
            gpu, top = kernel_table(fn, args.rows)
            row = {"case": name, "nprobe": nprobe, "wall_ms": round(wall * 1e3, 3), "gpu_ms": round(gpu, 3),
                   "identical": same}
            if name.startswith("pano"):
                row["dims_scanned"] = round(pano.panorama_stats.ratio_dims_scanned, 4)
            print(json.dumps(row), flush=True)
            for key, ms, count in top:
                print(f"    {ms:8.3f} ms  x{count:<4d} {key}", flush=True)


if __name__ == "__main__":
    main()
