"""Where the time of one search goes: torch.profiler over this project's IVF-Flat search.

    python -m benchmarks.profile_search --dataset clustered-200k-128 --nq 1024 --mode auto [--preset cpu]
Prints the top operators by self CPU time (and CUDA time on a GPU) and the wall time per call.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from .datasets import get_dataset
from .run import PRESETS


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--nq", type=int, nargs="+", default=[1, 64, 1024])
    ap.add_argument("--mode", nargs="+", default=["auto"])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--nprobe", type=int, default=None)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rows", type=int, default=18)
    a = ap.parse_args(argv)
    preset = PRESETS[a.preset]
    dspec = next(d for d in preset["datasets"] if a.dataset in (None, d["id"]))
    device = "cuda" if preset["device"] == "cuda" else "cpu"
    ds = get_dataset(dspec["spec"])
    cfg = dspec["cfg"]
    nprobe = a.nprobe or cfg["nprobe"]
    from torch_ivf import IndexIVFFlat, SearchParams

    idx = IndexIVFFlat(ds.d, cfg["nlist"], metric=ds.metric, device=device,
                       dtype=getattr(torch, a.dtype))
    idx.train(torch.from_numpy(ds.load("xt")).to(device))
    idx.add(torch.from_numpy(ds.load("xb")).to(device))
    xq = torch.from_numpy(ds.load("xq")).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    acts = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    for mode in a.mode:
        idx.search_mode = mode
        p = SearchParams(nprobe=nprobe)
        for nq in a.nq:
            q = xq[:nq]
            for _ in range(2):
                idx.search(q, cfg["k"], params=p)
            sync()
            t0 = time.perf_counter()
            for _ in range(a.reps):
                idx.search(q, cfg["k"], params=p)
            sync()
            dt = (time.perf_counter() - t0) / a.reps
            picked = idx._pick_mode(nq, nprobe) if hasattr(idx, "_pick_mode") else "?"
            print(f"\n=== mode={mode} (runs {picked}) nq={nq} nprobe={nprobe}: {dt * 1e3:.2f} ms/call, "
                  f"{nq / dt:,.0f} QPS, torch threads {torch.get_num_threads()}")
            with torch.profiler.profile(activities=acts) as prof:
                for _ in range(a.reps):
                    idx.search(q, cfg["k"], params=p)
                sync()
            key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
            print(prof.key_averages().table(sort_by=key, row_limit=a.rows, max_name_column_width=40))


if __name__ == "__main__":
    main()
