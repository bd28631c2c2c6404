"""One GPU call for IVFFlat / Flat small and large batches (issue 16): correctness of the query-major
kernel against the torch path and exact ground truth, then p50 / QPS of auto and forced kernels
against nq, GPU kernel time, and where the host time of one query goes. JSONL as it goes; new work
stops past --budget seconds.

    python -m benchmarks.latency.flat_small --out results/h200-gpuflat-2.jsonl --budget 68 --big   # ~95 s

Data: benchmarks.datasets.TorchMixture (the clustered law, generated on the GPU, seed 0), 1M x d
for d in --dims, IVF1024 nprobe 16; then 10M x 128 IVF4096 nprobe 32 at nq = 1 when time is left.
Variants: auto; qm<R> (the query-major kernel with R-row tiles, at any nq; -d<D>-w<W>: its dimensions
per step and warps); lm (the list-major kernel, its own row chunks); lm-n32 (its 32-row tiles);
torch (kernels off); Flat "kernel" / "gemm". Rows: {"index", "variant", "nq", "p50_ms", "qps", ...}.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import time

import torch

import torch_ivf as ti
from benchmarks.datasets import TorchMixture, exact_top_torch
from benchmarks.latency import bench, gpu_run
from torch_ivf import kernels
from torch_ivf.kernels import flat_scan
from torch_ivf.search import cost

SMOKE = bool(os.environ.get("FLAT_SMALL_SMOKE"))  # tiny sizes on the CPU: checks the script, not the speed
DEV = torch.device("cpu" if SMOKE else "cuda")
NQS = (1, 4, 16, 64) if SMOKE else (1, 4, 16, 64, 256, 1024, 4096, 19600)
SCALE = 50 if SMOKE else 1  # base sizes divided by this


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, nq):
    fn()  # the first call captures the graph; bench.timed warms once more, then times
    return bench.timed(fn, nq, sync, budget_s=0.12, min_reps=6, max_reps=300)


class Forced:
    """rows: the query-major kernel's tile rows at any nq (0: the list-major kernel); tiles: entries of
    its PROBE_TILES; lm_tiles: the list-major kernel's TILES; exact_nq: Flat's kernel limit; Triton off."""

    def __init__(self, rows=None, triton=True, tiles=None, exact_nq=None, lm_tiles=None):
        self.rows, self.triton, self.tiles, self.exact_nq, self.lm_tiles = rows, triton, tiles, exact_nq, lm_tiles

    def __enter__(self):
        f = cost.figures(DEV)
        self.saved = (cost.flat_probe_rows, kernels.enabled, flat_scan.PROBE_TILES, dict(f), flat_scan.TILES)
        if self.lm_tiles is not None:
            flat_scan.TILES = self.lm_tiles
        if self.rows is not None:
            cost.flat_probe_rows = lambda *a, _r=self.rows, **kw: _r
        kernels.enabled = self.triton
        if self.tiles is not None:
            flat_scan.PROBE_TILES = {**flat_scan.PROBE_TILES, **self.tiles}
        if self.exact_nq is not None:
            f["flat_exact_kernel_nq"] = self.exact_nq

    def __exit__(self, *exc):
        cost.flat_probe_rows, kernels.enabled, flat_scan.PROBE_TILES, saved, flat_scan.TILES = self.saved
        cost.figures(DEV).update(saved)


class Run(gpu_run.Run):
    def __init__(self, path, budget):
        super().__init__(open(path, "a"), budget)


def kernel_table(fn, rows=8):
    if SMOKE:
        return None, []
    fn()
    sync()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        sync()
    ev = [e for e in prof.key_averages() if e.device_time_total > 0]
    total = sum(e.self_device_time_total for e in ev) / 1e3
    ev.sort(key=lambda e: -e.self_device_time_total)
    return round(total, 4), [(e.key[:50], round(e.self_device_time_total / 1e3, 4), e.count) for e in ev[:rows]]


def host_profile(fn, reps=300, rows=14):
    fn()
    sync()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(reps):
        fn()
    sync()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(rows)
    return s.getvalue().splitlines()[-rows - 2:]


def same_ids(a, b):
    return round(float((a == b).float().mean()), 5)


def recall(I, gt):
    hit = (I[:, :, None] == gt[:, None, :]).any(2).float().sum(1)
    return round(float(hit.mean()) / gt.shape[1], 4)


def ivf_part(run, name, index, q, gt, nqs, variants, profile_nq=(1, 64, 19600)):
    k = 10
    for nq in nqs:
        if run.left() < 0:
            run.emit({"skipped": f"{name} nq={nq} and after (budget)"})
            return
        x = q[:nq]
        with Forced(triton=False):
            ref = index.search(x, k)
        for vname, forced in variants(nq).items():
            try:
                index.__dict__.pop("_graphs", None)
                with forced:
                    D, I = index.search(x, k)
                    row = {"index": name, "variant": vname, "nq": nq, "same_ids_vs_torch": same_ids(I, ref[1]),
                           "max_dD": round(float((D - ref[0]).abs().max()), 6), "recall": recall(I, gt[:nq]),
                           "recall_torch": recall(ref[1], gt[:nq]), **timed(lambda: index.search(x, k), nq)}
                    if nq in profile_nq and vname == "auto":
                        row["gpu_ms"], row["kernels"] = kernel_table(lambda: index.search(x, k))
                run.emit(row)
            except Exception as e:  # keep going; the row says what failed
                run.emit({"index": name, "variant": vname, "nq": nq, "error": f"{type(e).__name__}: {e}"[:300]})


def build(d, n, nlist, nprobe, nq, seed=0, train=200_000):
    t = time.time()
    mix = TorchMixture(d, seed, device=DEV)
    n, train = n // SCALE, train // SCALE
    xb = mix.sample(n)
    xq = mix.sample(nq)
    index = ti.IndexIVFFlat(d, nlist, nprobe=nprobe, niter=10, device=DEV)
    index.train(xb[:train])
    index.add(xb)
    gt = exact_top_torch(xb, xq, 10, chunk=1 << 17)
    return xb, xq, index, gt, round(time.time() - t, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=250)
    ap.add_argument("--dims", default="128,384")
    ap.add_argument("--big", action="store_true", help="also 10M x 128 IVF4096 nprobe 32 at nq = 1")
    args = ap.parse_args()
    run = Run(args.out, args.budget)
    dev = DEV
    run.emit({"gpu": torch.cuda.get_device_name(0) if not SMOKE else "cpu smoke", "torch": torch.__version__, "sms": cost._sms(dev),
              "triton": __import__("triton").__version__, "figures": cost.figures(dev)})
    for d in [int(v) for v in args.dims.split(",")]:
        if run.left() < 30:
            break
        xb, q, index, gt, secs = build(d, 1_000_000, 1024, 16, max(NQS))
        run.emit({"built": f"ivfflat-1M-{d}", "s": secs, "max_list": index.invlists.max_size,
                  "longest16": int(index.invlists.sizes.topk(16).values.sum())})
        name = f"IVFFlat-1M-{d}"
        x1 = q[:1]
        # where one query's host time goes (graph replayed)
        index.search(x1, 10)
        run.emit({"index": name, "host_profile_nq1": host_profile(lambda: index.search(x1, 10))})

        def variants(nq, d=d):
            lm32 = Forced(rows=0, lm_tiles=(32, 16, 4, "tf32x3"))  # 1.5-2.3x faster with the two-sort merge
            v = {"auto": Forced()}
            if nq <= 1024:
                v["lm"] = Forced(rows=0)
            if nq in (1, 64):
                v["qm64"] = Forced(rows=64)
                v["qm256"] = Forced(rows=256)
                if d == 128:
                    v["qm128-d64-w4"] = Forced(rows=128, tiles={128: (64, 4)})
                    v["qm128-d128-w8"] = Forced(rows=128, tiles={128: (128, 8)})
            if nq == 1:
                v["torch"] = Forced(triton=False)
            if nq >= 256:
                v["lm-n32"] = lm32
            if nq in (1024,) or (nq == 256 and d == 384):
                v["qm-auto"] = Forced(rows=128)
            return v

        ivf_part(run, name, index, q, gt, NQS if d == 128 else tuple(n for n in NQS if n != 4096), variants,
                 profile_nq=(1, 64) if d == 128 else (1,))
        # exact search on the same rows
        if run.left() > 20:
            flat = ti.IndexFlat(d, device=DEV)
            flat.add(xb)
            for nq in (1, 4):
                x = q[:nq]
                with Forced(triton=False):
                    ref = flat.search(x, 10)
                for vname, forced in {"kernel": Forced(exact_nq=64), "gemm": Forced(exact_nq=0)}.items():
                    flat.__dict__.pop("_graphs", None)
                    with forced:
                        D, I = flat.search(x, 10)
                        row = {"index": f"Flat-1M-{d}", "variant": vname, "nq": nq, "same_ids_vs_torch": same_ids(I, ref[1]),
                               "recall": recall(I, gt[:nq]), **timed(lambda: flat.search(x, 10), nq)}
                        if nq == 1:
                            row["gpu_ms"], row["kernels"] = kernel_table(lambda: flat.search(x, 10))
                    run.emit(row)
            del flat
        del xb, index, q, gt
        if DEV.type == "cuda":
            torch.cuda.empty_cache()
    if args.big and run.left() > 40:
        xb, q, index, gt, secs = build(128, 10_000_000, 4096, 32, 64, train=500_000)
        run.emit({"built": "ivfflat-10M-128", "s": secs, "max_list": index.invlists.max_size})
        del xb
        ivf_part(run, "IVFFlat-10M-128", index, q, gt, (1, 64),
                 lambda nq: {"auto": Forced(), "lm": Forced(rows=0)}, profile_nq=(1,))
    run.emit({"done": True})


if __name__ == "__main__":
    main()
