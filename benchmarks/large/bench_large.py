"""Large-corpus figures on one GPU: 10M x 128 IVFFlat and 100M x 96 IVF-PQ + re-ranking.

    python -m benchmarks.large.bench_large --out results/h200.jsonl --budget-s 300
Data is generated on the GPU (a seeded Gaussian mixture, the law of benchmarks.datasets.make_clustered:
3000 centres ~ N(0, 1), spreads log-uniform in [0.15, 0.6], Dirichlet(1) weights), so nothing is
carried. Ground truth: exact float32 top-10 (TF32 off) of the first --nq-gt queries. Each search
times the whole nq = 10,000 batch (median of --repeats after one warm-up); recall@10 is read from
that batch's first --nq-gt rows. Build rows give train/add seconds, bytes per vector (slabs and
centroids over ntotal), the memory check_fits predicted and the allocator's peak during add.
Stages that would overrun --budget-s are skipped (a row says so); rows are appended as produced.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

import torch

import torch_ivf as ti
from benchmarks.common import recall_tensors as recall
from benchmarks.datasets import TorchMixture, exact_top_torch as exact_top
from torch_ivf import bulk
from torch_ivf.search import cost


@contextlib.contextmanager
def _patched(obj, name, value):
    saved = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, saved)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Run:
    def __init__(self, out: str, budget_s: float):
        self.out, self.t0, self.budget = out, time.perf_counter(), budget_s
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def row(self, **row) -> None:
        with open(self.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        log(json.dumps({k: v for k, v in row.items() if k != "kernels"}))


DEV = "cuda"  # --device cpu: a smoke test of the script at toy sizes


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def _cuda_mem(fn_name: str) -> int:
    return getattr(torch.cuda, fn_name)() if DEV == "cuda" else 0


def timed(fn):
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t, out


# ---- data ---------------------------------------------------------------------------------------
def Mixture(d: int, seed: int, n_centres: int = 3000) -> TorchMixture:
    """The make_clustered law, sampled on DEV (benchmarks.datasets.TorchMixture)."""
    return TorchMixture(d, seed, n_centres, device=DEV)


def index_bytes(index) -> int:
    stores = [index.base, index.refine] if isinstance(index, ti.IndexRefine) else [index]
    total = 0
    for s in stores:
        total += s.invlists.nbytes()
        if hasattr(s, "coarse"):
            total += s.centroids.numel() * 4
    return total


def kernel_table(fn, rows: int = 8):
    """(GPU kernel ms summed, wall ms, the heaviest kernels) of one call."""
    fn()
    sync()
    t = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        sync()
    wall = (time.perf_counter() - t) * 1e3
    ev = [e for e in prof.key_averages() if e.self_device_time_total > 0]
    total = sum(e.self_device_time_total for e in ev) / 1e3
    ev.sort(key=lambda e: -e.self_device_time_total)
    return total, wall, [[e.key[:70], round(e.self_device_time_total / 1e3, 2), e.count] for e in ev[:rows]]


# ---- stages -------------------------------------------------------------------------------------
def build(run, name, index, xb, n_sample):
    base_alloc = _cuda_mem("memory_allocated")
    t_train, _ = timed(lambda: bulk.train_on_sample(index, xb, n_sample, progress=False))
    predicted = sum(b for dev, b in bulk.memory_needed(index, xb.shape[0]).items() if dev.type == DEV)
    before = _cuda_mem("memory_allocated")
    _cuda_mem("reset_peak_memory_stats")
    t_add, _ = timed(lambda: bulk.add_in_chunks(index, xb, progress=False))
    peak = _cuda_mem("max_memory_allocated") - before
    held = index_bytes(index)
    run.row(kind="build", index=name, n=xb.shape[0], d=xb.shape[1], train_s=round(t_train, 2),
            add_s=round(t_add, 2), n_sample=n_sample, bytes_per_vector=round(held / index.ntotal, 1),
            bytes_per_vector_nominal=bulk.bytes_per_vector(index), index_gib=round(held / 2**30, 2),
            check_fits_predicted_gib=round(predicted / 2**30, 2), add_peak_extra_gib=round(peak / 2**30, 2),
            other_allocated_gib=round(base_alloc / 2**30, 2))


def sweep(run, name, index, xq, gt, nprobes, repeats, k=10, stop_s=20.0, same_as=None, **extra):
    """Rows of one search curve; returns {nprobe: (D, I) of the first len(gt) queries}. same_as: such
    a dict from another variant, whose results are compared with these (same_ids, max_abs_d)."""
    last, got = 0.0, {}
    for nprobe in nprobes:
        if run.left() < 3 * last + 5:
            run.row(kind="skipped", index=name, nprobe=nprobe, why=f"budget: {run.left():.0f} s left")
            break
        params = ti.IndexRefineSearchParameters(base_index_params=ti.SearchParams(nprobe=nprobe)) \
            if isinstance(index, ti.IndexRefine) else ti.SearchParams(nprobe=nprobe)
        if isinstance(index, ti.IndexRefine):
            params.k_factor = extra.get("k_factor")
        t_first, (D, I) = timed(lambda: index.search(xq, k, params=params))
        times = []
        for _ in range(repeats if t_first < stop_s / 2 else 1):
            t, _ = timed(lambda: index.search(xq, k, params=params))
            times.append(t)
        med = sorted(times)[len(times) // 2]
        last = med
        got[nprobe] = (D[: gt.shape[0]], I[: gt.shape[0]])
        if same_as is not None and nprobe in same_as:
            D0, I0 = same_as[nprobe]
            extra = {**extra, "same_ids": bool(torch.equal(I0, got[nprobe][1])),
                     "max_abs_d": float((D0 - got[nprobe][0]).abs().max())}
        run.row(kind="search", index=name, nprobe=nprobe, nq=xq.shape[0], k=k, ms=round(med * 1e3, 2),
                qps=round(xq.shape[0] / med), recall10=round(recall(I, gt), 4), first_ms=round(t_first * 1e3, 1),
                times_ms=[round(t * 1e3, 1) for t in times], **extra)
    return got


def profile(run, name, index, xq, nprobe, **params_kw):
    if run.left() < 20 or DEV != "cuda":
        return
    if isinstance(index, ti.IndexRefine):
        params = ti.IndexRefineSearchParameters(base_index_params=ti.SearchParams(nprobe=nprobe), **params_kw)
    else:
        params = ti.SearchParams(nprobe=nprobe)
    gpu_ms, wall_ms, top = kernel_table(lambda: index.search(xq, 10, params=params))
    run.row(kind="profile", index=name, nprobe=nprobe, nq=xq.shape[0], gpu_kernel_ms=round(gpu_ms, 2),
            wall_ms=round(wall_ms, 2), kernels=top, **params_kw)


def ceilings(run):
    if DEV != "cuda":
        return
    a = torch.empty(1 << 30, dtype=torch.uint8, device=DEV)
    b = torch.empty_like(a)
    b.copy_(a)
    t, _ = timed(lambda: [b.copy_(a) for _ in range(10)])
    x = torch.randn(8192, 8192, device=DEV)
    x @ x
    tm, _ = timed(lambda: [x @ x for _ in range(5)])
    run.row(kind="ceiling", copy_tb_s=round(2 * 10 * a.numel() / t / 1e12, 2),
            fp32_matmul_tflops=round(5 * 2 * 8192**3 / tm / 1e12, 1),
            allow_tf32=bool(torch.backends.cuda.matmul.allow_tf32))
    del a, b, x


def flat_stage(run, args, nlists=None):
    d = 128
    mix = Mixture(d, seed=1)
    t, xb = timed(lambda: mix.sample(args.n_flat))
    xq = mix.sample(args.nq)
    gt = exact_top(xb, xq[: args.nq_gt], 10)
    log(f"flat data {tuple(xb.shape)} in {t:.1f} s; ground truth done")
    for nlist in [int(v) for v in (nlists or args.flat_nlists).split(",") if v]:
        if run.left() < 60:
            run.row(kind="skipped", index=f"IVF{nlist},Flat", why=f"budget: {run.left():.0f} s left")
            continue
        name = f"IVF{nlist},Flat"
        index = ti.IndexIVFFlat(d, nlist, device=DEV)
        build(run, name, index, xb, min(args.n_flat, 256 * nlist))
        nprobes = [int(v) for v in (args.flat_nprobes if nlists is None else args.flat_extra_nprobes).split(",")]
        base = sweep(run, name, index, xq, gt, nprobes, args.repeats)
        for p in [int(v) for v in args.flat_profile_nprobes.split(",") if v and nlists is None]:
            profile(run, name, index, xq, p)
        if args.flat_sort_nprobes and nlists is None and DEV == "cuda":  # the running top-k by two full sorts
            from torch_ivf.kernels import flat_scan
            with _patched(flat_scan, "GROUPED", False):
                sweep(run, f"{name} two-sort merge", index, xq, gt,
                      [int(v) for v in args.flat_sort_nprobes.split(",")], args.repeats, same_as=base)
                profile(run, f"{name} two-sort merge", index, xq, int(args.flat_sort_nprobes.split(",")[0]))
        for tiles in [v for v in args.flat_tiles.split(",") if v and nlists is None and DEV == "cuda"]:
            from torch_ivf.kernels import flat_scan  # rows per tile x dims per step x warps
            bn, bd, w = (int(v) for v in tiles.split("x"))
            with _patched(flat_scan, "TILES", (bn, bd, w, flat_scan.TILES[3])):
                sweep(run, f"{name} tiles={tiles}", index, xq, gt, [int(v) for v in args.flat_sort_nprobes.split(",")],
                      args.repeats, same_as=base)
        for bq in [int(v) for v in args.flat_block_q.split(",") if v and DEV == "cuda"]:  # BLOCK_Q forced
            from torch_ivf.kernels import flat_scan
            with _patched(flat_scan, "queries_per_program", lambda per_list, bq=bq: bq):
                sweep(run, f"{name} block_q={bq}", index, xq, gt, [int(v) for v in args.flat_ab_nprobes.split(",")],
                      args.repeats)
        if args.flat_unchunked:  # the same sweep with whole lists per program at every nprobe
            with _patched(cost, "flat_chunk_rows", lambda *a, **kw: 0):
                sweep(run, name + " unchunked", index, xq, gt, nprobes, args.repeats)
                profile(run, name + " unchunked", index, xq, int(args.flat_profile_nprobes.split(",")[0]))
        del index
        _cuda_mem("empty_cache")
    del xb, xq
    _cuda_mem("empty_cache")


def pq_size(run, args) -> int:
    """The largest of n_pq, 70M, 50M, 30M, 20M, 10M, 1M whose build and sweep fit the time left, at
    --pq-s-per-m seconds per million rows (generation, ground truth, reserve pass, add, searches)."""
    for n in [args.n_pq] + [m for m in (70, 50, 30, 20, 10, 1) if m * 10**6 < args.n_pq]:
        n = int(n if n > 1000 else n * 10**6)
        if n * args.pq_s_per_m / 1e6 + 40 < run.left() or n <= 10**6:
            return n
    return args.n_pq


@contextlib.contextmanager
def _pq_variant(variant: str):
    """share=F: the PQ score buffer may take 1/F of the device (launch size); minq=N: a list takes
    the decode + GEMM scan when >= N queries of a launch probe it; lists_bq=B: that scan's queries
    per program."""
    from torch_ivf.kernels import pq_lists
    what, value = variant.split("=")
    if what == "share":
        with _patched(cost, "DEFAULTS", {**cost.DEFAULTS, "pq_buffer_share": 1 / float(value)}):
            cost.figures.cache_clear()
            yield
    elif what == "minq":
        with _patched(pq_lists, "MIN_QUERIES", int(value)):
            yield
    elif what == "lists_bq":
        with _patched(pq_lists, "TILES", (int(value),) + pq_lists.TILES[1:]):
            yield
    else:
        raise ValueError(f"unknown PQ variant {variant!r}")


def pq_stage(run, args):
    d, nlist, M = 96, args.pq_nlist, args.pq_m
    n_pq = pq_size(run, args)
    if n_pq != args.n_pq:
        run.row(kind="note", index="pq", what=f"n {args.n_pq:,} -> {n_pq:,} to fit the time left",
                seconds_left=round(run.left()))
    mix = Mixture(d, seed=2)
    t, xb = timed(lambda: mix.sample(n_pq))
    xq = mix.sample(args.nq)
    gt = exact_top(xb, xq[: args.nq_gt], 10)
    log(f"pq data {tuple(xb.shape)} in {t:.1f} s; ground truth done")
    name = f"IVF{nlist},PQ{M},RFlat(fp16)"
    base = ti.IndexIVFPQ(d, nlist, M, 8, device=DEV)
    index = ti.IndexRefine(base, k_factor=args.k_factor, refine_dtype=torch.float16)
    build(run, name, index, xb, min(n_pq, 256 * nlist))
    del xb
    _cuda_mem("empty_cache")
    nprobes = [int(v) for v in args.pq_nprobes.split(",")]
    base_nprobes = [int(v) for v in args.pq_base_nprobes.split(",")]
    sweep(run, f"IVF{nlist},PQ{M}", base, xq, gt, base_nprobes, args.repeats)  # no re-ranking, for reference
    profile(run, f"IVF{nlist},PQ{M}", base, xq, args.pq_profile_nprobe)
    if args.pq_lut_only and DEV == "cuda":  # every list by the look-up scan (no decode + GEMM for busy lists), for comparison
        from torch_ivf.kernels import pq_lists
        with _patched(pq_lists, "MIN_QUERIES", 1 << 30):
            sweep(run, f"IVF{nlist},PQ{M} lut-only", base, xq, gt, [args.pq_profile_nprobe], args.repeats)
            profile(run, f"IVF{nlist},PQ{M} lut-only", base, xq, args.pq_profile_nprobe)
    if args.pq_old_chunks:  # the earlier launch size (score buffer of SCORE_BUDGET elements), one point
        with _patched(cost, "DEFAULTS", {**cost.DEFAULTS, "pq_buffer_share": 0.0}):
            cost.figures.cache_clear()
            sweep(run, f"IVF{nlist},PQ{M} old-chunks", base, xq, gt, [args.pq_profile_nprobe], 1)
        cost.figures.cache_clear()
    kf0 = float(args.k_factors.split(",")[0])
    for i, kf in enumerate(float(v) for v in args.k_factors.split(",")):
        sweep(run, name, index, xq, gt, nprobes if i == 0 else [int(v) for v in args.pq_ab_nprobes.split(",")],
              args.repeats, k_factor=kf)
    profile(run, name, index, xq, args.pq_profile_nprobe, k_factor=kf0)
    for variant in [v for v in args.pq_variants.split(",") if v and DEV == "cuda"]:
        with _pq_variant(variant):
            sweep(run, f"{name} {variant}", index, xq, gt, [int(v) for v in args.pq_ab_nprobes.split(",")],
                  args.repeats, k_factor=kf0)
        cost.figures.cache_clear()
    if run.left() > 100:  # the same index with its full vectors in host memory (refine_device="cpu")
        t_move, _ = timed(lambda: setattr(index, "refine_device", torch.device("cpu")) or index.to(DEV))
        run.row(kind="note", index=name, what="refine vectors moved to host memory", seconds=round(t_move, 1),
                host_gib=round(index.refine.invlists.nbytes() / 2**30, 2))
        sweep(run, name + "@host", index, xq, gt, [int(v) for v in args.pq_host_nprobes.split(",")], args.repeats,
              k_factor=float(args.k_factors.split(",")[0]), refine_device="cpu")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--code", default="", help="the commit measured, recorded in the machine row")
    ap.add_argument("--budget-s", type=float, default=300)
    ap.add_argument("--stages", default="ceilings,flat,pq,flat_extra")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--nq", type=int, default=10_000)
    ap.add_argument("--nq-gt", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-flat", type=int, default=10_000_000)
    ap.add_argument("--flat-nlists", default="16384")
    ap.add_argument("--flat-extra-nlists", default="4096", help="stage flat_extra (after pq): more nlists")
    ap.add_argument("--flat-extra-nprobes", default="1,4,8,12,16,24,32,64")
    ap.add_argument("--flat-sort-nprobes", default="16,24,32", help="sweep with the two-sort top-k merge")
    ap.add_argument("--flat-tiles", default="128x16x4,64x32x4,64x16x8",
                    help="sweeps (at --flat-sort-nprobes) with flat_scan.TILES set to rows x dims x warps")
    ap.add_argument("--flat-nprobes", default="1,2,4,8,12,16,20,22,24,28,32,48,64,128")
    ap.add_argument("--flat-profile-nprobes", default="24")
    ap.add_argument("--flat-block-q", default="", help="sweeps with BLOCK_Q forced to each (empty: none)")
    ap.add_argument("--flat-ab-nprobes", default="8,16,32,64")
    ap.add_argument("--pq-lut-only", type=int, default=0, help="one point with every list by the look-up scan")
    ap.add_argument("--flat-unchunked", type=int, default=0, help="also sweep with whole lists per program")
    ap.add_argument("--n-pq", type=int, default=100_000_000)
    ap.add_argument("--pq-nlist", type=int, default=16384)
    ap.add_argument("--pq-m", type=int, default=48)
    ap.add_argument("--pq-nprobes", default="8,10,12,16,24,32")
    ap.add_argument("--pq-ab-nprobes", default="10,12,16", help="nprobes of the later k_factors and --pq-variants")
    ap.add_argument("--pq-variants", default="share=16,minq=16,lists_bq=16",
                    help="A/B sweeps (bench_large._pq_variant): launch size, busy-list bar, GEMM scan block")
    ap.add_argument("--pq-base-nprobes", default="10", help="IVF-PQ without re-ranking, for reference")
    ap.add_argument("--pq-host-nprobes", default="12", help="re-ranking vectors in host memory")
    ap.add_argument("--pq-profile-nprobe", type=int, default=12)
    ap.add_argument("--k-factor", type=float, default=8)
    ap.add_argument("--k-factors", default="4,2", help="the first over --pq-nprobes, the others over --pq-ab-nprobes")
    ap.add_argument("--pq-s-per-m", type=float, default=1.0, help="seconds per million rows, to size the PQ corpus")
    ap.add_argument("--pq-old-chunks", type=int, default=0, help="one point with the earlier PQ launch size")
    args = ap.parse_args()
    global DEV
    DEV = args.device
    run = Run(args.out, args.budget_s)
    from benchmarks.common import machine_info
    gpu = {"gpu_name": torch.cuda.get_device_name(0), "gpu_total_gib": round(torch.cuda.mem_get_info()[1] / 2**30, 1)} \
        if DEV == "cuda" else {}
    run.row(kind="machine", argv=sys.argv[1:], code=args.code, **machine_info(DEV), **gpu)
    stages = {"ceilings": ceilings, "flat": flat_stage, "pq": pq_stage,
              "flat_extra": lambda run, args: flat_stage(run, args, args.flat_extra_nlists)}
    for name in args.stages.split(","):
        if name in ("pq", "flat_extra") and run.left() < (90 if name == "pq" else 30):
            run.row(kind="skipped", index="pq", why=f"budget: {run.left():.0f} s left")
            continue
        try:  # a failing stage is recorded and the next one still runs
            stages[name](run) if name == "ceilings" else stages[name](run, args)
        except Exception as e:  # noqa: BLE001
            import traceback
            run.row(kind="error", stage=name, error=repr(e), traceback=traceback.format_exc()[-3000:])
        _cuda_mem("empty_cache")
    log(f"done in {time.perf_counter() - run.t0:.0f} s")


if __name__ == "__main__":
    main()
