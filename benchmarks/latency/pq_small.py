"""One GPU call for the PQ side of issue 16 (IVFPQ, IVFPQPanorama, IVFFlatPanorama, IVFPQ + RFlat on
MiniLM 40k x 384, IVF256): correctness (Panorama's ids and distances against IVFPQ with the same
codebooks, CUDA against the CPU search of the same index) and p50 latency of auto and every forced
path at nq 1 ... 1024, GPU kernel tables at nq 1 and 64, Panorama against IVFPQ at higher nprobe.

    python -m benchmarks.latency.pq_small --out results/h200-gpupq.jsonl --data-dir .data [--code DIR --label old]
    [--large 1000000]

--code DIR imports torch_ivf from DIR instead (an earlier checkout, timed side by side in the same
call); --indexes picks the indexes. Rows: {"label", "index", "variant", "nprobe", "nq", "p50_ms",
"p99_ms", "qps", "reps", "dims_scanned"}; {"check": ...}; {"kernels": ...} (profiler: GPU ms per
search, kernel count, top kernels). GPU_RUN_SMOKE=1 runs tiny sizes on the CPU (checks the script).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys
import time

T0 = time.time()


def _args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--code", default=None, help="import torch_ivf from this directory")
    ap.add_argument("--label", default="new")
    ap.add_argument("--indexes", default="pq,pano,fp,ref")
    ap.add_argument("--budget", type=float, default=150)
    ap.add_argument("--no-triton-max-nq", type=int, default=1024)
    ap.add_argument("--large", type=int, default=0, help="then n x 384 clustered rows with energy front-loaded "
                    "(IVF1024, PQ96, 8 levels): Panorama against IVFPQ at nprobe 16 and 64, auto")
    return ap.parse_args()


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.code:
    sys.path.insert(0, os.path.abspath(ARGS.code))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import torch_ivf as ti  # noqa: E402
from torch_ivf import kernels  # noqa: E402
from torch_ivf.search import graphs  # noqa: E402

SMOKE = bool(os.environ.get("GPU_RUN_SMOKE"))
DEV = torch.device("cpu" if SMOKE else "cuda")
NQS = (1, 4) if SMOKE else (1, 4, 16, 64, 256, 1024)


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


class Out:
    def __init__(self, path, label, budget):
        self.f, self.label, self.budget = open(path, "a"), label, budget

    def emit(self, row):
        row = {"label": self.label, **row, "t": round(time.time() - T0, 1)}
        line = json.dumps(row)
        print(line, flush=True)
        self.f.write(line + "\n")
        self.f.flush()

    def left(self):
        return self.budget - (time.time() - T0)


@contextlib.contextmanager
def forced(index, triton=True, mode=None, graphs_on=True):
    target = getattr(index, "base", index)
    saved = (kernels.enabled, graphs.GRAPH_MAX_NQ, target.search_mode)
    kernels.enabled = triton
    if not graphs_on:
        graphs.GRAPH_MAX_NQ = 0
    if mode:
        target.search_mode = mode
    try:
        yield
    finally:
        kernels.enabled, graphs.GRAPH_MAX_NQ, target.search_mode = saved
        for obj in (index, getattr(index, "base", None)):  # a forced row never replays another's graph
            if obj is not None:
                obj.__dict__.pop("_graphs", None)


def timed(fn, budget_s, max_reps=400, min_reps=5):
    fn()
    fn()
    sync()
    times, end = [], time.perf_counter() + budget_s
    while len(times) < min_reps or (len(times) < max_reps and time.perf_counter() < end):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times


def kernel_table(fn, rows=8):
    """GPU ms per search (profiler), kernel launches, the top kernels."""
    from benchmarks.pq.gpu_profile import kernel_table as table
    total, every = table(fn, 10_000)
    return {"gpu_ms": round(total, 4), "launches": sum(e[2] for e in every), "top": every[:rows]}


VARIANTS = {  # name: forced(...) keywords
    "auto": {}, "matrix": {"mode": "matrix"}, "grouped": {"mode": "grouped"}, "nographs": {"graphs_on": False},
    "no-triton": {"triton": False}, "no-triton matrix": {"triton": False, "mode": "matrix"},
    "no-triton grouped": {"triton": False, "mode": "grouped"},
}


def sweep(out, name, index, q, variants, nqs, nprobe=16, profile=(1, 64)):
    index.nprobe = nprobe
    for nq in nqs:
        x = q[:nq]
        for v in variants:
            if out.left() < 8:
                out.emit({"skipped": f"{name} {v} nq={nq}"})
                return
            if v.startswith("no-triton") and nq > ARGS.no_triton_max_nq:
                continue
            try:
                with forced(index, **VARIANTS[v]):
                    fn = lambda: index.search(x, 10)  # noqa: E731
                    t = timed(fn, 0.25 if nq <= 64 else 0.4)
                    row = {"index": name, "variant": v, "nprobe": nprobe, "nq": nq,
                           "p50_ms": round(1e3 * t[len(t) // 2], 4), "p99_ms": round(1e3 * t[int(0.99 * (len(t) - 1))], 4),
                           "qps": round(nq / t[len(t) // 2], 1), "reps": len(t)}
                    stats = getattr(getattr(index, "base", index), "panorama_stats", None)
                    if stats is not None:
                        row["dims_scanned"] = round(stats.ratio_dims_scanned, 4)
                    if v == "auto" and nq in profile and DEV.type == "cuda":
                        row["kernels"] = kernel_table(fn)
                out.emit(row)
            except Exception as e:  # the row says what failed; the run goes on
                out.emit({"index": name, "variant": v, "nprobe": nprobe, "nq": nq, "error": repr(e)[:300]})


def main():
    out = Out(ARGS.out, ARGS.label, ARGS.budget)
    from benchmarks.latency.bench import machine
    from benchmarks.pq.bench_pq import load_minilm
    out.emit({"machine": machine(DEV), "code": ARGS.code or ".", "torch_ivf": os.path.dirname(ti.__file__)})
    loaded = load_minilm(ARGS.data_dir, 2000, 0, 2)
    if loaded is None:
        out.emit({"skipped": "MiniLM shards not found"})
        return
    xb, xq, metric, _ = loaded
    nlist = 256
    if SMOKE:
        xb, xq, nlist = xb[:4000], xq[:8], 32
    q = torch.from_numpy(xq).to(DEV)
    want = ARGS.indexes.split(",")
    pano = pq = None
    t = time.time()
    if "pano" in want or "pq" in want:
        from benchmarks.latency.gpu_run import panorama_and_ivfpq
        pano, pq = panorama_and_ivfpq(ti, xb, nlist, metric, DEV)
        out.emit({"built": "IVFPQ96Panorama8 + IVFPQ96", "s": round(time.time() - t, 1),
                  "max_list": int(pano.invlists.sizes.max()), "mean_list": round(float(pano.invlists.sizes.float().mean()), 1)})
        qt = pano._transform(q)
        for nprobe in (16, 64):
            pano.nprobe = pq.nprobe = nprobe
            for nq in NQS:
                for triton in (True, False):
                    with forced(pano, triton=triton), forced(pq, triton=triton):
                        Dp, Ip = pano.search(q[:nq], 10)
                        Dq, Iq = pq.search(pano._transform(q[:nq]), 10)  # rotated as Panorama rotates this batch
                    out.emit({"check": "panorama==ivfpq", "triton": triton, "nprobe": nprobe, "nq": nq,
                              "D_bitwise": bool(torch.equal(Dp, Dq)), "same_ids": round(float((Ip == Iq).float().mean()), 5)})
        pano.nprobe = pq.nprobe = 16
    fp = ref = None
    if "fp" in want:
        fp = ti.IndexIVFFlatPanorama(384, nlist, 8, metric, nprobe=16, niter=10, device=DEV)
        fp.train(xb)
        fp.add(xb)
        ivf = ti.IndexIVFFlat(384, nlist, metric, nprobe=16, device=DEV)  # the same centroids
        ivf.centroids = fp.centroids.clone()
        ivf.add(xb)
        for nq in NQS:
            for triton in (True, False):
                with forced(fp, triton=triton), forced(ivf, triton=triton):
                    D1, I1 = fp.search(q[:nq], 10)
                    D2, I2 = ivf.search(q[:nq], 10)
                out.emit({"check": "flatpanorama==ivfflat", "triton": triton, "nq": nq,
                          "same_ids": round(float((I1 == I2).float().mean()), 5), "max_abs_D": float((D1 - D2).abs().max())})
        del ivf
    if "ref" in want:
        ref = ti.IndexRefine(ti.IndexIVFPQ(384, nlist, 96, 8, metric=metric, nprobe=16, niter=10, pq_niter=10,
                                           device=DEV), k_factor=4)
        ref.train(xb)
        ref.add(xb)
    for name, index in (("IVFPQ96Panorama8", pano), ("IVFFlatPanorama8", fp)):
        if index is None or DEV.type != "cuda":
            continue
        try:  # CUDA vs the same index searched on the CPU
            cpu = copy.deepcopy(index).to("cpu")
            Dg, Ig = index.search(q[:8], 10)
            Dc, Ic = cpu.search(q[:8].cpu(), 10)
            out.emit({"check": "cuda-vs-cpu", "index": name, "same_ids": round(float((Ig.cpu() == Ic).float().mean()), 4),
                      "max_abs_D": float((Dg.cpu() - Dc).abs().max())})
            del cpu
        except Exception as e:
            out.emit({"check": "cuda-vs-cpu", "index": name, "error": repr(e)[:300]})
    runs = {"pano": ("IVFPQ96Panorama8", pano, q), "pq": ("IVFPQ96", pq, qt if pq is not None else None),
            "fp": ("IVFFlatPanorama8", fp, q), "ref": ("IVFPQ96+RFlat", ref, q)}
    for key in want:
        name, index, x = runs[key]
        if index is not None:
            sweep(out, name, index, x, list(VARIANTS), NQS)
    if pano is not None and "pq" in want:  # where pruning has more to skip: more lists per query
        for nprobe in (64,):
            sweep(out, "IVFPQ96Panorama8", pano, q, ["auto"], NQS, nprobe=nprobe, profile=(1, 64))
            sweep(out, "IVFPQ96", pq, qt, ["auto"], NQS, nprobe=nprobe, profile=(1, 64))
    if ARGS.large and out.left() > 40:
        large(out, ARGS.large)
    out.emit({"done": True})


def large(out, n):
    """Where pruning has the most to skip: long lists (n / 1024 rows), energy decaying along the
    dimensions (scales 1 / (1 + j / 32)), so the first levels hold most of every score."""
    from benchmarks.datasets import make_clustered
    xb, xq, _ = make_clustered(n, 384, 1024, seed=0)
    scale = (1.0 / (1.0 + np.arange(384) / 32.0)).astype(np.float32)
    xb, xq = xb * scale, xq * scale
    nlist = 64 if SMOKE else 1024
    t = time.time()
    pano = ti.IndexIVFPQPanorama(384, nlist, 96, 8, 8, nprobe=16, niter=10, pq_niter=10, device=DEV)
    pano.train(xb[: max(20 * nlist, 65536)])
    pano.add(xb)
    pq = ti.IndexIVFPQ(384, nlist, 96, 8, nprobe=16, device=DEV)
    pq.centroids = pano.centroids.clone()
    pq.pq.set_centroids(pano.pq.centroids)
    pq.add(pano._transform(torch.from_numpy(xb).to(DEV)))
    name = f"clustered-{n}-384-decaying"
    out.emit({"built": name, "s": round(time.time() - t, 1), "max_list": int(pano.invlists.sizes.max())})
    q = torch.from_numpy(xq).to(DEV)
    for nprobe in (16, 64):
        pano.nprobe = pq.nprobe = nprobe
        for nq in NQS:
            Dp, Ip = pano.search(q[:nq], 10)
            Dq, Iq = pq.search(pano._transform(q[:nq]), 10)
            out.emit({"check": "panorama==ivfpq", "dataset": name, "nprobe": nprobe, "nq": nq,
                      "D_bitwise": bool(torch.equal(Dp, Dq)), "same_ids": round(float((Ip == Iq).float().mean()), 5)})
        sweep(out, f"{name} IVFPQ96Panorama8", pano, q, ["auto"], NQS, nprobe=nprobe, profile=(1, 64))
        sweep(out, f"{name} IVFPQ96", pq, pano._transform(q), ["auto"], NQS, nprobe=nprobe, profile=(1, 64))


if __name__ == "__main__":
    main()
