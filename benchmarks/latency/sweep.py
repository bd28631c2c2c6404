"""GPU sweep of the small-batch paths: correctness against the torch path, then p50 per forced setting
and batch size, and where the time of one query goes (GPU kernel time vs wall).

    python -m benchmarks.latency.sweep --out results.jsonl [--quick]
Forced settings: IVFFlat's row chunk (cost.flat_chunk_rows), the PQ scans' row span (cost.pq_span),
graphs off, Triton off. Rows: {"index", "variant", "nq", "p50_ms", "p99_ms", "qps"}; checks:
{"check", "same_ids", ...}. Feeds the constants of torch_ivf/search/cost.py.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

import torch_ivf as ti
from benchmarks.datasets import make_clustered
from benchmarks.latency.gpu_run import panorama_and_ivfpq
from benchmarks.pq.bench_pq import load_minilm
from benchmarks.pq.gpu_profile import kernel_table
from torch_ivf import kernels
from torch_ivf.search import cost, graphs

NQS = (1, 4, 16, 64, 256, 1024, 4096, 19600)


def timed(fn, nq, budget_s=0.4, min_reps=5, max_reps=40):
    fn()
    torch.cuda.synchronize()
    times = []
    t_end = time.perf_counter() + budget_s
    while len(times) < min_reps or (len(times) < max_reps and time.perf_counter() < t_end):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    p50 = statistics.median(times)
    return {"p50_ms": round(p50 * 1e3, 4), "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))] * 1e3, 4),
            "qps": round(nq / p50, 1), "reps": len(times)}


def kernel_ms(fn):
    total, top = kernel_table(fn, 8)
    return round(total, 4), top


class Forced:
    """Context: cost functions returning a fixed value, graphs or Triton off."""

    def __init__(self, chunk=None, span=None, graphs_on=True, triton=True):
        self.chunk, self.span, self.graphs_on, self.triton = chunk, span, graphs_on, triton

    def __enter__(self):
        self.saved = (cost.flat_chunk_rows, cost.pq_span, graphs.GRAPH_MAX_NQ, kernels.enabled)
        if self.chunk is not None:
            cost.flat_chunk_rows = lambda *a, _c=self.chunk: _c
        if self.span is not None:
            cost.pq_span = lambda *a, _s=self.span: _s
        if not self.graphs_on:
            graphs.GRAPH_MAX_NQ = 0
        kernels.enabled = self.triton

    def __exit__(self, *exc):
        cost.flat_chunk_rows, cost.pq_span, graphs.GRAPH_MAX_NQ, kernels.enabled = self.saved


def emit(out, row):
    line = json.dumps(row)
    print(line, flush=True)
    out.write(line + "\n")
    out.flush()


def sweep(out, name, index, q, variants, nqs, k=10, profile_nq=(1, 64)):
    for nq in nqs:
        x = q[:nq]
        with Forced(triton=False):
            ref = index.search(x, k)
        for vname, forced in variants.items():
            try:
                _one(out, name, index, x, k, nq, vname, forced, ref, profile_nq)
            except Exception as e:  # keep the sweep going; the row says what failed
                emit(out, {"index": name, "variant": vname, "nq": nq, "error": f"{type(e).__name__}: {e}"[:400]})


def _one(out, name, index, x, k, nq, vname, forced, ref, profile_nq):
    with forced:
        D, I = index.search(x, k)
        same = float((I == ref[1]).float().mean())
        row = {"index": name, "variant": vname, "nq": nq, "same_ids_vs_torch": round(same, 5),
               **timed(lambda: index.search(x, k), nq)}
        if nq in profile_nq and vname == "auto":
            row["gpu_ms"], row["kernels"] = kernel_ms(lambda: index.search(x, k))
    emit(out, row)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--data-dir", default=".data")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    dev = torch.device("cuda")
    out = open(args.out, "a")
    emit(out, {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "sms": cost._sms(dev)})
    nqs = NQS[:6] if args.quick else NQS
    # --- clustered 1M x 128, IVF1024 nprobe 16 -------------------------------------------------------
    for d in (128, 384):
        n = 1_000_000
        xb, xq, _ = make_clustered(n, d, max(nqs), seed=0)
        t = time.time()
        index = ti.IndexIVFFlat(d, 1024, nprobe=16, niter=10, device=dev)
        index.train(xb[:200_000])
        index.add(xb)
        q = torch.from_numpy(xq).to(dev)
        emit(out, {"built": f"ivfflat-1M-{d}", "s": round(time.time() - t, 1), "max_list": index.invlists.max_size})
        chunks = (0, 128, 512, 2048) if d == 128 else (0, 256, 1024)
        variants = {"auto": Forced(), **{f"chunk{c}": Forced(chunk=c) for c in chunks},
                    "torch": Forced(triton=False), "auto-nographs": Forced(graphs_on=False)}
        sweep(out, f"IVFFlat-1M-{d}", index, q, variants, nqs if d == 128 else nqs[:5])
        del index, xb
    # --- MiniLM: IVFPQ96, Panorama, FlatPanorama, refine ---------------------------------------------
    mini = load_minilm(args.data_dir, 2000, 0, 2)
    xb, xq, metric, _ = mini
    q = torch.from_numpy(xq).to(dev)
    nlist = 256
    pano, pq = panorama_and_ivfpq(ti, xb, nlist, metric, dev)
    qt = pano._transform(q)
    nq_m = [n for n in nqs if n <= 2000]
    # identical results: Panorama vs IVFPQ (same codebooks), per path
    for vname, forced in {"auto": Forced(), "span128": Forced(span=128), "span0": Forced(span=0)}.items():
        for nq in nq_m:
            with forced:
                Dp, Ip = pano.search(q[:nq], 10)
                Dq, Iq = pq.search(qt[:nq], 10)
            emit(out, {"check": "pano==ivfpq", "variant": vname, "nq": nq, "D_bitwise": bool(torch.equal(Dp, Dq)),
                       "same_ids": round(float((Ip == Iq).float().mean()), 5), "dims": round(pano.panorama_stats.ratio_dims_scanned, 4)})
    spans = (0, 128, 512)
    pv = {"auto": Forced(), **{f"span{s}": Forced(span=s) for s in spans}, "torch": Forced(triton=False),
          "auto-nographs": Forced(graphs_on=False)}
    sweep(out, "MiniLM-IVFPQ96", pq, qt, pv, nq_m)
    sweep(out, "MiniLM-IVFPQ96Panorama8", pano, q, pv, nq_m)
    fp = ti.IndexIVFFlatPanorama(384, nlist, 8, metric, nprobe=16, niter=10, device=dev)
    fp.train(xb)
    fp.add(xb)
    sweep(out, "MiniLM-IVFFlatPanorama8", fp, q, {"auto": Forced(), "chunk128": Forced(chunk=128),
                                                    "chunk0": Forced(chunk=0), "torch": Forced(triton=False)}, nq_m)
    ref = ti.IndexRefine(ti.IndexIVFPQ(384, nlist, 96, 8, metric=metric, nprobe=16, niter=10, pq_niter=10, device=dev),
                         k_factor=4)
    ref.train(xb)
    ref.add(xb)
    sweep(out, "MiniLM-IVFPQ96+RFlat", ref, q, {"auto": Forced(), "auto-nographs": Forced(graphs_on=False),
                                                 "torch": Forced(triton=False)}, nq_m)
    flat = ti.IndexFlat(384, metric, device=dev)
    flat.add(xb)
    sweep(out, "MiniLM-Flat", flat, q, {"auto": Forced(), "auto-nographs": Forced(graphs_on=False)}, nq_m)


if __name__ == "__main__":
    main()
