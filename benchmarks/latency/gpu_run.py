"""One GPU call for issue 16: correctness and p50/p99/QPS of every index type and forced path against
nq, side by side with exact search, torch-ivf 0.1.1 and faiss-cpu, kernel tables where figures are
missed. Writes JSONL as it goes and stops starting new work past --budget seconds.

    python -m benchmarks.latency.gpu_run --out results/h200-run2.jsonl --data-dir .data --old-dir /tmp/old

Rows: {"dataset", "index", "library", "variant", "nq", "p50_ms", "p99_ms", "qps", "recall",
"same_ids_vs_torch"}; {"check": ...} rows compare CUDA results with the CPU search of the same index;
{"kernels": ...} rows hold GPU kernel time per search (profiler) next to the wall time.
Variants: auto; no-triton (torch_ivf.kernels.enabled = False, the path of GPUs without Triton);
whole-lists (IVFFlat's kernel without row chunks); nographs (no CUDA-graph replay). Graphs are
dropped between variants, so a forced row never replays another variant's graph.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from benchmarks.latency.bench import exact_gt, machine, recall, timed

NQS = (1, 4, 16, 64, 256, 1024, 4096, 19600)
T0 = time.time()
SMOKE = bool(os.environ.get("GPU_RUN_SMOKE"))  # tiny sizes on the CPU: checks the script, not the speed
DEV = torch.device("cpu" if SMOKE else "cuda")
N_BASE = 20_000 if SMOKE else 1_000_000


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


class Run:
    def __init__(self, out, budget):
        self.out, self.budget = out, budget

    def emit(self, row):
        row["t"] = round(time.time() - T0, 1)
        line = json.dumps(row)
        print(line, flush=True)
        self.out.write(line + "\n")
        self.out.flush()

    def left(self) -> float:
        return self.budget - (time.time() - T0)


class Forced:
    """A forced path: Triton on/off, IVFFlat's row chunk, graph replay, and the search mode (None: the
    index's own, i.e. auto), applied to the index by sweep()."""

    def __init__(self, triton=True, chunk=None, graphs_on=True, mode=None):
        self.triton, self.chunk, self.graphs_on, self.mode = triton, chunk, graphs_on, mode

    def __enter__(self):
        from torch_ivf import kernels
        from torch_ivf.search import cost, graphs
        self.saved = (kernels.enabled, cost.flat_chunk_rows, graphs.GRAPH_MAX_NQ)
        kernels.enabled = self.triton
        if self.chunk is not None:
            cost.flat_chunk_rows = lambda *a, _c=self.chunk: _c
        if not self.graphs_on:
            graphs.GRAPH_MAX_NQ = 0

    def __exit__(self, *exc):
        from torch_ivf import kernels
        from torch_ivf.search import cost, graphs
        kernels.enabled, cost.flat_chunk_rows, graphs.GRAPH_MAX_NQ = self.saved


# the paths of a GPU without Triton: auto's choice, and each mode forced
NO_TRITON = {"no-triton": Forced(triton=False), "no-triton grouped": Forced(triton=False, mode="grouped"),
             "no-triton matrix": Forced(triton=False, mode="matrix")}


@contextlib.contextmanager
def search_mode(index, mode):
    target = getattr(index, "base", index)  # IndexRefine: its base index scans
    saved = getattr(target, "search_mode", None)
    if mode is not None and saved is not None:
        target.search_mode = mode
    try:
        yield
    finally:
        if saved is not None:
            target.search_mode = saved


def drop_graphs(index):
    for obj in (index, getattr(index, "base", None)):
        if obj is not None:
            obj.__dict__.pop("_graphs", None)


def kernel_ms(fn, rows=8):
    from benchmarks.pq.gpu_profile import kernel_table
    total, top = kernel_table(fn, rows)
    return round(total, 4), top


def sweep(run, dataset, iname, index, q, gt, variants, nqs, profile=(1, 64)):
    for nq in nqs:
        if run.left() < 20:
            run.emit({"skipped": f"{dataset}/{iname} nq>={nq}: time budget"})
            return
        x = q[:nq]
        with Forced(triton=False):
            drop_graphs(index)
            ref = index.search(x, 10)[1]
        for vname, forced in variants.items():
            try:
                with forced, search_mode(index, forced.mode):
                    drop_graphs(index)
                    fn = lambda: index.search(x, 10)  # noqa: E731
                    I = fn()[1]
                    row = timed(fn, nq, sync, budget_s=0.2, min_reps=3, max_reps=30)
                    row["recall"] = recall(I.cpu().numpy(), gt[:nq])
                    row["same_ids_vs_torch"] = round(float((I == ref).float().mean()), 5)
                    if vname == "auto" and nq in profile and DEV.type == "cuda":
                        row["gpu_ms"], row["kernels"] = kernel_ms(fn)
                    stats = getattr(index, "panorama_stats", None)
                    if stats is not None:
                        row["dims_scanned"] = round(stats.ratio_dims_scanned, 4)
                run.emit({"dataset": dataset, "index": iname, "library": "torch-ivf", "variant": vname, "nq": nq, **row})
            except Exception as e:  # the row says what failed; the run goes on
                run.emit({"dataset": dataset, "index": iname, "variant": vname, "nq": nq, "error": repr(e)[:300]})
        drop_graphs(index)


def cpu_check(run, dataset, iname, index, q, n=8):
    """CUDA results vs the same index searched on the CPU (torch path): ids and distances."""
    try:
        import copy
        drop_graphs(index)
        cpu = copy.deepcopy(index).to("cpu")
        Dg, Ig = index.search(q[:n], 10)
        Dc, Ic = cpu.search(q[:n].cpu(), 10)
        run.emit({"check": "cuda-vs-cpu", "dataset": dataset, "index": iname,
                  "same_ids": round(float((Ig.cpu() == Ic).float().mean()), 4),
                  "max_abs_D": float((Dg.cpu() - Dc).abs().max())})
        del cpu
    except Exception as e:
        run.emit({"check": "cuda-vs-cpu", "dataset": dataset, "index": iname, "error": repr(e)[:300]})


def faiss_rows(run, dataset, xb, xq, gt, metric, nlist, centroids, nqs, with_pq):
    try:
        import faiss
    except ImportError as e:
        run.emit({"faiss": repr(e)})
        return
    from benchmarks.latency.bench import _faiss_indexes

    class _C:
        pass
    holder = _C()
    holder.centroids = centroids
    faiss.omp_set_num_threads(os.cpu_count())
    for iname, fi in _faiss_indexes(xb, metric, nlist, holder, with_pq):
        for nq in nqs:
            if nq > 4096 or (iname == "Flat" and nq > 256) or run.left() < 15:
                continue
            fn = lambda: fi.search(xq[:nq], 10)  # noqa: E731
            row = timed(fn, nq, lambda: None, budget_s=0.2, min_reps=2, max_reps=20)
            row["recall"] = recall(fn()[1], gt[:nq])
            run.emit({"dataset": dataset, "index": iname, "library": "faiss-cpu",
                      "variant": f"{os.cpu_count()} threads", "nq": nq, **row})


def old_rows(run, dataset, xb, xq, gt, nlist, metric, old_dir, nqs):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.npz")
        np.savez(path, xb=xb, xq=xq, gt=gt)
        try:
            p = subprocess.run([sys.executable, "-m", "benchmarks.latency.old_ivf", "--old-dir", old_dir, "--data", path,
                                "--nlist", str(nlist), "--nprobe", "16", "--metric", metric,
                                "--nqs", ",".join(map(str, nqs))], capture_output=True, text=True,
                               timeout=max(10, min(90, run.left() - 30)))
        except subprocess.TimeoutExpired:
            run.emit({"dataset": dataset, "library": "torch-ivf-0.1.1", "error": "timeout"})
            return
        for line in p.stdout.splitlines():
            try:
                run.emit({"dataset": dataset, "index": "IVFFlat", "library": "torch-ivf-0.1.1", "variant": "default",
                          **json.loads(line)})
            except ValueError:
                pass
        if p.returncode:
            run.emit({"dataset": dataset, "library": "torch-ivf-0.1.1", "error": p.stderr[-600:]})


def clustered(run, args, d):
    import torch_ivf as ti
    from benchmarks.datasets import make_clustered
    dev = DEV
    name = f"clustered-1M-{d}"
    xb, xq, _ = make_clustered(N_BASE, d, max(NQS) if not SMOKE else 300, seed=0)
    gt = exact_gt(xb, xq, "l2", dev)
    q = torch.from_numpy(xq).to(dev)
    t = time.time()
    ivf = ti.IndexIVFFlat(d, 1024, nprobe=16, niter=10, device=dev)
    ivf.train(xb[:200_000])
    nqs_all = [n for n in NQS if n <= len(xq)]
    ivf.add(xb)
    run.emit({"built": name, "s": round(time.time() - t, 1), "max_list": ivf.invlists.max_size})
    cpu_check(run, name, "IVFFlat", ivf, q)
    variants = {"auto": Forced(), "whole-lists": Forced(chunk=0), **NO_TRITON}
    nqs = [n for n in NQS if n in nqs_all]
    sweep(run, name, "IVFFlat", ivf, q, gt, variants, nqs)
    flat = ti.IndexFlat(d, device=dev)
    flat.add(xb)
    sweep(run, name, "Flat", flat, q, gt, {"auto": Forced()}, nqs, profile=(1,))
    del flat
    if d == 128:
        if args.old_dir and run.left() > 120:
            old_rows(run, name, xb, xq, gt, 1024, "l2", args.old_dir, tuple(n for n in (1, 4, 16, 64, 256, 1024) if n in nqs_all))
        faiss_rows(run, name, xb, xq, gt, "l2", 1024, ivf.centroids.cpu(), [n for n in (1, 4, 16, 64, 256, 1024) if n in nqs_all], False)
    del ivf
    torch.cuda.empty_cache()


def ten_million(run, args):
    """10M x 128 clustered (sampled on the GPU), IVF4096, nprobe 32: the issue's large-list nq = 1 point."""
    import torch_ivf as ti
    from benchmarks.datasets import TorchMixture, exact_top_torch
    n, nqs = (200_000, (1, 4)) if SMOKE else (10_000_000, (1, 4, 16, 64, 256, 1024))
    mix = TorchMixture(128, seed=1, device=str(DEV))
    xb, q = mix.sample(n), mix.sample(max(nqs))
    gt = exact_top_torch(xb, q, 10).cpu().numpy()
    name = f"clustered-{n}-128"
    t = time.time()
    ivf = ti.IndexIVFFlat(128, 4096, nprobe=32, niter=10, device=DEV)
    ivf.train(xb[:1_000_000])
    ivf.add(xb)
    run.emit({"built": name, "s": round(time.time() - t, 1), "max_list": ivf.invlists.max_size})
    del xb
    sweep(run, name, "IVFFlat nprobe32", ivf, q, gt, {"auto": Forced(), **NO_TRITON}, nqs)
    del ivf
    torch.cuda.empty_cache()


def panorama_and_ivfpq(ti, xb, nlist, metric, dev):
    """IVFPQ96Panorama8 on xb, and an IVFPQ96 with its coarse centroids and codebooks holding its
    rotated vectors: the pair whose ids (and distances) must be equal. ti: the torch_ivf module to use."""
    pano = ti.IndexIVFPQPanorama(384, nlist, 96, 8, 8, metric, nprobe=16, niter=10, pq_niter=10, device=dev)
    pano.train(xb)
    pano.add(xb)
    pq = ti.IndexIVFPQ(384, nlist, 96, 8, metric=metric, nprobe=16, device=dev)
    pq.centroids = pano.centroids.clone()
    pq.pq.set_centroids(pano.pq.centroids)
    pq.add(pano._transform(torch.from_numpy(xb).to(dev)))
    return pano, pq


def minilm(run, args):
    import torch_ivf as ti
    from benchmarks.pq.bench_pq import load_minilm
    dev = DEV
    loaded = load_minilm(args.data_dir, 2000, 0, 2)
    if loaded is None:
        run.emit({"skipped": "MiniLM shards not found"})
        return
    xb, xq, metric, _ = loaded
    name = "minilm-40k-384"
    gt = exact_gt(xb, xq, metric, dev)
    q = torch.from_numpy(xq).to(dev)
    nlist, nqs = 256, (1, 4, 16, 64, 256, 1024)
    if SMOKE:
        xb, xq, nlist, nqs = xb[:6000], xq[:16], 64, (1, 4)
    both = {"auto": Forced(), **NO_TRITON}
    ivf = ti.IndexIVFFlat(384, nlist, metric, nprobe=16, niter=10, device=dev)
    ivf.train(xb)
    ivf.add(xb)
    sweep(run, name, "IVFFlat", ivf, q, gt, both, nqs)
    pano, pq = panorama_and_ivfpq(ti, xb, nlist, metric, dev)
    qt = pano._transform(q)
    for nq in nqs:
        Dp, Ip = pano.search(q[:nq], 10)
        Dq, Iq = pq.search(qt[:nq], 10)
        run.emit({"check": "panorama==ivfpq", "nq": nq, "D_bitwise": bool(torch.equal(Dp, Dq)),
                  "same_ids": round(float((Ip == Iq).float().mean()), 5)})
    cpu_check(run, name, "IVFPQ96Panorama8", pano, q)
    sweep(run, name, "IVFPQ96", pq, qt, gt, both, nqs)
    sweep(run, name, "IVFPQ96Panorama8", pano, q, gt, {**both, "nographs": Forced(graphs_on=False)}, nqs)
    del pq
    fp = ti.IndexIVFFlatPanorama(384, nlist, 8, metric, nprobe=16, niter=10, device=dev)
    fp.train(xb)
    fp.add(xb)
    cpu_check(run, name, "IVFFlatPanorama8", fp, q)
    sweep(run, name, "IVFFlatPanorama8", fp, q, gt, {**both, "whole-lists": Forced(chunk=0)}, nqs)
    del fp
    ref = ti.IndexRefine(ti.IndexIVFPQ(384, nlist, 96, 8, metric=metric, nprobe=16, niter=10, pq_niter=10, device=dev),
                         k_factor=4)
    ref.train(xb)
    ref.add(xb)
    sweep(run, name, "IVFPQ96+RFlat", ref, q, gt, {**both, "nographs": Forced(graphs_on=False)}, nqs)
    del ref
    flat = ti.IndexFlat(384, metric, device=dev)
    flat.add(xb)
    sweep(run, name, "Flat", flat, q, gt, {"auto": Forced()}, nqs, profile=(1,))
    faiss_rows(run, name, xb, xq, gt, metric, nlist, ivf.centroids.cpu(), nqs, True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--old-dir", default=None)
    ap.add_argument("--budget", type=float, default=420)
    ap.add_argument("--parts", default="c128,minilm,c384,c10m,c768")
    args = ap.parse_args()
    with open(args.out, "a") as out:
        run = Run(out, args.budget)
        run.emit({"machine": machine(DEV), "smoke": SMOKE,
                  "sms": torch.cuda.get_device_properties(0).multi_processor_count if DEV.type == "cuda" else 0})
        for part in args.parts.split(","):
            if run.left() < 40:
                run.emit({"skipped": part})
                continue
            try:
                {"c128": lambda: clustered(run, args, 128), "c384": lambda: clustered(run, args, 384),
                 "c768": lambda: clustered(run, args, 768), "c10m": lambda: ten_million(run, args),
                 "minilm": lambda: minilm(run, args)}[part]()
            except Exception as e:
                run.emit({"part": part, "error": repr(e)[:500]})
        run.emit({"done": True})


if __name__ == "__main__":
    main()
