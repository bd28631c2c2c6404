"""GPU probe of the PQ scan kernel: IVFPQ vs Panorama (same codebooks) on MiniLM, per tile size.

    python -m benchmarks.pq.kernel_probe --data-dir benchmarks/pq/.data --shards 2
Prints one JSON line per (block, warps, nprobe): seconds per search of each, speedup, dims scanned.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import torch_ivf as ti
from benchmarks.pq.bench_pq import identical, load_minilm, timed_search
from torch_ivf.kernels import pq_scan


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--nq", type=int, default=5000)
    ap.add_argument("--M", type=int, default=96)
    args = ap.parse_args()
    xb, xq, metric, _ = load_minilm(args.data_dir, args.nq, 0, args.shards)
    n, d = xb.shape
    nlist = 2 ** round(np.log2(4 * np.sqrt(n)))
    dev = torch.device("cuda")
    t = time.time()
    pano = ti.IndexIVFPQPanorama(d, nlist, args.M, 8, 8, metric, niter=10, pq_niter=10, device=dev)
    pano.train(xb)
    pano.add(xb)
    ref = ti.IndexIVFPQ(d, nlist, args.M, 8, metric=metric, device=dev)
    ref.centroids = pano.centroids.clone()
    ref.pq.set_centroids(pano.pq.centroids)
    ref.add(pano._transform(torch.from_numpy(xb).to(dev)))
    print(json.dumps({"built_s": round(time.time() - t, 1), "n": n, "nlist": nlist, "M": args.M}), flush=True)
    q = torch.from_numpy(xq).to(dev)
    qt = pano._transform(q)
    from torch_ivf.index import ivf_pq
    for plain, pruned, growth in (((128, 4, 16), (64, 2, 16), 4), ((64, 2, 8), (32, 1, 8), 4)):
        pq_scan.PLAIN, pq_scan.PRUNED = plain, pruned
        ivf_pq._WAVE_GROWTH = growth
        for nprobe in (8, 16, 32, 64, 128):
            pano.nprobe = ref.nprobe = nprobe
            tr, (Dr, Ir) = timed_search(lambda: ref.search(qt, 10), torch.cuda.synchronize, 7)
            tp, (Dp, Ip) = timed_search(lambda: pano.search(q, 10), torch.cuda.synchronize, 7)
            same = identical((Dp.cpu().numpy(), Ip.cpu().numpy()), (Dr.cpu().numpy(), Ir.cpu().numpy()))
            print(json.dumps({"plain": plain, "pruned": pruned, "growth": growth, "nprobe": nprobe, "ivfpq_s": round(tr, 5),
                              "pano_s": round(tp, 5), "speedup": round(tr / tp, 3), "identical": same,
                              "dims_scanned": round(pano.panorama_stats.ratio_dims_scanned, 4),
                              "ivfpq_qps": round(len(xq) / tr)}), flush=True)
    pq_scan.PLAIN, pq_scan.PRUNED, ivf_pq._WAVE_GROWTH = (128, 4, 16), (64, 2, 16), 4
    pano.nprobe = ref.nprobe = 64
    for name, fn in (("panorama", lambda: pano.search(q, 10)), ("ivfpq", lambda: ref.search(qt, 10))):
        fn()
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        print(name, "nprobe 64")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=8))


if __name__ == "__main__":
    main()
