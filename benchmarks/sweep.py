"""The sweep loop every library goes through (in this process, or in the earlier torch-ivf's
subprocess). Imports no ``torch_ivf``.

A backend builds one index per storage dtype, then is searched over
  1. the nprobe sweep at a fixed nq (recall-QPS curve), for its "sweep" variants, and
  2. the nq sweep at the headline nprobe, for all its variants,
then 1,000 vectors are added to the index of N (median of 3 such adds).
"""
from __future__ import annotations

import gc
import os
import time
from typing import Callable

import numpy as np

from .common import (CpuWindow, Deadline, QuietGate, TimingPolicy, log, recall_at_k, recall_tie_aware, time_group,
                     timed, to_np, write_row, cpu_busy)
from .datasets import Dataset


class Backend:
    library = "?"
    version = "?"
    ivf = True

    def __init__(self, device: str):
        self.device = device

    # variants: list of dicts with at least "mode" and "dtype"
    def variants(self, dtype: str) -> list[dict]:
        raise NotImplementedError

    def sweep_variants(self, dtype: str) -> list[dict]:
        """Variants drawn on the recall-QPS curve (a subset, to bound run time)."""
        return self.variants(dtype)[:1]

    def dtypes(self) -> list[str]:
        return ["float32"]

    def prepare_queries(self, xq: np.ndarray):
        return xq

    def build(self, ds: Dataset, xt: np.ndarray, xb: np.ndarray, nlist: int, dtype: str) -> dict:
        raise NotImplementedError

    def searcher(self, variant: dict, k: int, nprobe: int) -> Callable:
        raise NotImplementedError

    def add(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def sync(self) -> None:
        pass

    def extra(self, variant: dict, nq: int, nprobe: int | None) -> dict:
        """Row fields known only after a search (e.g. which path ``auto`` took)."""
        return {}

    def threads(self) -> int | None:
        return None

    def free(self) -> None:
        pass


def run_backend(backend: Backend, ds: Dataset, cfg: dict, policy: TimingPolicy, out_path: str | None,
                base_row: dict, deadline: Deadline, gate: QuietGate | None = None) -> None:
    """cfg: nlist, k, nprobe (headline), nprobes (sweep), sweep_nq, nqs, add_test (bool)."""
    xb = ds.load("xb")
    xq_np = ds.load("xq")
    xt = ds.load("xt")
    gt_I = ds.load("gt_I")
    gt_D = ds.load("gt_D")
    k = int(cfg["k"])
    nlist = int(cfg["nlist"])
    xq = backend.prepare_queries(xq_np)
    for dtype in backend.dtypes():
        if deadline.expired():
            log(f"  deadline reached: skipping {backend.library} {dtype}")
            return
        if gate:
            gate.wait()
        t0 = time.perf_counter()
        try:
            binfo = backend.build(ds, xt, xb, nlist, dtype)
        except Exception as e:  # a build failure is a result too
            log(f"  {backend.library} {dtype}: build failed: {e!r}")
            write_row(out_path, dict(base_row, library=backend.library, version=backend.version,
                                     dtype=dtype, error=f"build: {e!r}"))
            continue
        log(f"  {backend.library} {dtype}: built in {time.perf_counter() - t0:.1f} s {binfo}")
        row0 = dict(base_row, library=backend.library, version=backend.version, dtype=dtype,
                    device=backend.device, threads=backend.threads(), nlist=nlist if backend.ivf else None,
                    k=k, **binfo)

        last_qps: dict = {}

        def measure(variants: list[dict], nprobe: int | None, nq: int, sweep: str) -> None:
            """All variants of one (nprobe, nq) point, timed interleaved."""
            if deadline.expired() or nq > xq_np.shape[0]:
                return
            todo = []
            for v in variants:
                # the fastest this variant went at this nprobe (any nq): a conservative prediction
                prev = max(last_qps.get((v["mode"], nprobe), [0.0]), default=0.0) or None
                if prev is not None and nq / prev > policy.max_call_s:
                    log(f"    skip {backend.library}/{v['mode']}/{dtype} nprobe={nprobe} nq={nq}: "
                        f"predicted {nq / prev:.0f} s per call")
                    write_row(out_path, dict(row0, mode=v["mode"], nprobe=nprobe, nq=nq, sweep=sweep,
                                             skipped=f"predicted {nq / prev:.0f} s per call"))
                else:
                    todo.append(v)
            if not todo:
                return
            tries = 0
            best = None                      # (others, results, busy_before): the cleanest try
            while True:
                busy_before = gate.wait() if gate else None
                try:
                    calls = [backend.searcher(v, k, nprobe) for v in todo]
                    with CpuWindow() as win:
                        results = time_group(calls, xq, nq, policy, backend.sync)
                except Exception as e:
                    log(f"    {backend.library}/{dtype} nq={nq}: failed {e!r}")
                    for v in todo:
                        write_row(out_path, dict(row0, mode=v["mode"], nprobe=nprobe, nq=nq, sweep=sweep,
                                                 error=repr(e)))
                    return
                tries += 1
                others = win.others
                if best is None or (others is not None and best[0] is not None and others < best[0]):
                    best = (others, results, busy_before)
                # on a shared CPU machine: measure again when other processes took the cores meanwhile
                if not (gate and gate.enabled) or others is None or others <= gate.threshold \
                        or tries >= gate.max_tries or deadline.expired():
                    break
                log(f"    other processes used {others:.0%} of the CPUs during nprobe={nprobe} nq={nq}:"
                    f" measuring again ({tries}/{gate.max_tries})")
            others, results, busy_before = best
            load = round(os.getloadavg()[0], 2)
            for v, r in zip(todo, results):
                I = to_np(r.pop("I"))
                rec = recall_at_k(I, gt_I, k)
                m = min(I.shape[0], 2000)
                rec_tie = recall_tie_aware(I[:m], xq_np[:m], xb, gt_D, k, ds.metric)
                last_qps.setdefault((v["mode"], nprobe), []).append(r["qps"])
                row = dict(row0, mode=v["mode"], nprobe=nprobe, sweep=sweep, recall=round(rec, 5),
                           recall_tie=round(rec_tie, 5), **r, **backend.extra(v, nq, nprobe),
                           loadavg=load, interleaved_with=len(todo), tries=tries,
                           others_busy_during=None if others is None else round(others, 3),
                           others_busy_before=None if busy_before is None else round(busy_before, 2),)
                write_row(out_path, row)
                lat = f" p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms" if nq == 1 else ""
                log(f"    {backend.library:<12} {v['mode']:<8} {dtype:<8} nprobe={nprobe!s:<4} nq={nq:<6}"
                    f" QPS {r['qps']:>10.0f}  recall {rec:.4f}{lat}"
                    + (f"  (others {others:.0%})" if others is not None and gate and gate.enabled else ""))

        if backend.ivf:
            for nprobe in cfg.get("nprobes", []):
                measure(backend.sweep_variants(dtype), nprobe, cfg["sweep_nq"], "nprobe")
        for nq in cfg["nqs"]:
            measure(backend.variants(dtype), cfg["nprobe"] if backend.ivf else None, nq, "nq")

        if cfg.get("add_test", True) and not deadline.expired():
            xadd = ds.load("xadd")
            try:
                times = []
                for i in range(3):
                    dt, _ = timed(lambda: backend.add(xadd[i * 1000:(i + 1) * 1000]), backend.sync)
                    times.append(dt)
                write_row(out_path, dict(row0, sweep="add", mode="add", add1000_s=float(np.median(times)),
                                         add1000_times_s=times, add_into_n=int(xb.shape[0])))
                log(f"    {backend.library} {dtype}: add 1,000 into {xb.shape[0]:,}: "
                    f"{np.median(times) * 1e3:.1f} ms (median of 3)")
            except Exception as e:
                log(f"    {backend.library} {dtype}: add test failed {e!r}")
        backend.free()
        gc.collect()
