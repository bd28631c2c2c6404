"""Where one GPU query's time goes (issue 16): wall p50 of a search against the floor of its captured
graph, the graph's GPU span and its kernels, the host timeline of one call and the CUDA runtime calls
it makes. One GPU call; JSONL as it goes.

    python -m benchmarks.latency.host_time --out results/h200-host-1.jsonl --data-dir .data --budget 150

Rows: {"index", "part": "wall" | "floor" | "timeline" | "runtime" | "graph_kernels", ...}, times in us.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import torch_ivf as ti
from benchmarks.latency import gpu_run
from torch_ivf import arrays
from torch_ivf.search import graphs


def sync():
    torch.cuda.synchronize()


def median_us(fn, reps=400, warm=20):
    for _ in range(warm):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1e6, 1)


def last_graph(index):
    entries = [e for e in index.__dict__.get("_graphs", {}).values() if e is not False]
    return entries[-1] if entries else None


def floors(run, name, index, x):
    """The search against what its graph costs alone: replay; copy + replay + output clones; and the
    graph's GPU span between two events."""
    run.emit({"index": name, "part": "wall", "search_us": median_us(lambda: index.search(x, 10))})
    entry = last_graph(index)
    if entry is None:
        run.emit({"index": name, "part": "floor", "note": "no graph captured"})
        return
    graph, static_q, captured = entry
    row = {"index": name, "part": "floor", "replay_us": median_us(graph.replay)}

    def full():
        static_q.copy_(x)
        graph.replay()
        return [t.clone() for t in captured]

    row["copy_replay_clones_us"] = median_us(full)
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    spans = []
    for _ in range(200):
        e0.record()
        graph.replay()
        e1.record()
        e1.synchronize()
        spans.append(e0.elapsed_time(e1) * 1e3)
    row["graph_gpu_span_us"] = round(statistics.median(spans), 1)
    row["outputs"] = len(captured)
    run.emit(row)


def timeline(run, name, index, x, reps=300):
    """Host time stamps inside one search call: coerced queries, graph replay entered / left, the
    deferred check's device read done, return."""
    marks = {}
    real_vectors, real_replay, real_peak = index._vectors, graphs.replay_graph, arrays._check_peak

    def vectors(*a, **kw):
        out = real_vectors(*a, **kw)
        marks["vectors"] = time.perf_counter()
        return out

    def replay(*a, **kw):
        marks["replay_in"] = time.perf_counter()
        out = real_replay(*a, **kw)
        marks["replay_out"] = time.perf_counter()
        return out

    def peak(*a, **kw):
        marks["read_done"] = time.perf_counter()
        return real_peak(*a, **kw)

    index._vectors = vectors
    graphs.replay_graph, arrays._check_peak = replay, peak
    steps = {}
    try:
        for i in range(reps + 20):
            marks.clear()
            t0 = time.perf_counter()
            index.search(x, 10)
            t1 = time.perf_counter()
            sync()
            if i < 20:
                continue
            last = t0
            for key in ("vectors", "replay_in", "replay_out", "read_done"):
                if key in marks:
                    steps.setdefault(key, []).append(marks[key] - last)
                    last = marks[key]
            steps.setdefault("return", []).append(t1 - last)
    finally:
        del index._vectors
        graphs.replay_graph, arrays._check_peak = real_replay, real_peak
    run.emit({"index": name, "part": "timeline",
              **{f"{k}_us": round(statistics.median(v) * 1e6, 1) for k, v in steps.items()}})


def runtime_calls(run, name, index, x, reps=50):
    """CUDA runtime calls and aten ops per search (profiler, CPU side), and the kernels of one replay."""
    for _ in range(5):
        index.search(x, 10)
    sync()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            index.search(x, 10)
        sync()
    rows = []
    for e in prof.key_averages():
        if e.count >= reps and e.self_cpu_time_total > 0:
            rows.append((e.key[:60], round(e.count / reps, 2), round(e.self_cpu_time_total / reps, 2)))
    rows.sort(key=lambda r: -r[2])
    run.emit({"index": name, "part": "runtime", "per_search": rows[:24]})
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    if kernels:
        per = len(kernels) // reps
        run.emit({"index": name, "part": "graph_kernels", "kernels_per_search": per,
                  "last": [(e.name[:50], round(e.time_range.elapsed_us(), 2)) for e in kernels[-per:]],
                  "span_us": round(kernels[-1].time_range.end - kernels[-per].time_range.start, 1)})


def measure(run, name, index, x):
    for fn in (floors, timeline, runtime_calls):
        if run.left() < 5:
            run.emit({"skipped": f"{name} {fn.__name__} (budget)"})
            return
        try:
            fn(run, name, index, x)
        except Exception as e:  # keep going; the row says what failed
            run.emit({"index": name, "part": fn.__name__, "error": f"{type(e).__name__}: {e}"[:300]})


def baselines(run):
    t = torch.zeros(1, device="cuda")
    run.emit({"part": "baseline", "sync_us": median_us(lambda: None), "one_kernel_us": median_us(lambda: t.add_(1)),
              "item_us": median_us(lambda: float(t)), "clone_us": median_us(lambda: t.clone()),
              "two_kernels_item_us": median_us(lambda: float(t.add_(1).abs().amax()))})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--data-dir", default=".data")
    ap.add_argument("--budget", type=float, default=150)
    ap.add_argument("--parts", default="clustered,minilm,10m")
    args = ap.parse_args()
    run = gpu_run.Run(open(args.out, "a"), args.budget)
    from benchmarks.latency.bench import machine
    run.emit({"machine": machine(torch.device("cuda"))})
    baselines(run)
    from benchmarks.datasets import TorchMixture
    parts = args.parts.split(",")
    if "clustered" in parts:
        mix = TorchMixture(128, seed=0, device="cuda")
        xb = mix.sample(1_000_000)
        x = mix.sample(1)
        ivf = ti.IndexIVFFlat(128, 1024, nprobe=16, niter=10, device="cuda")
        ivf.train(xb[:200_000])
        ivf.add(xb)
        measure(run, "IVFFlat-1M-128", ivf, x)
        del ivf, xb
    if "minilm" in parts and run.left() > 30:
        from benchmarks.pq.bench_pq import load_minilm
        xb, xq, metric, _ = load_minilm(args.data_dir, 2000, 0, 2)
        q = torch.from_numpy(xq[:1]).cuda()
        ivf = ti.IndexIVFFlat(384, 256, metric, nprobe=16, niter=10, device="cuda")
        ivf.train(xb)
        ivf.add(xb)
        measure(run, "MiniLM-IVFFlat", ivf, q)
        flat = ti.IndexFlat(384, metric, device="cuda")
        flat.add(xb)
        measure(run, "MiniLM-Flat", flat, q)
        pano, pq = gpu_run.panorama_and_ivfpq(ti, xb, 256, metric, torch.device("cuda"))
        measure(run, "MiniLM-IVFPQ96", pq, pano._transform(q))
        measure(run, "MiniLM-IVFPQ96Panorama8", pano, q)
        del pano, pq
        fp = ti.IndexIVFFlatPanorama(384, 256, 8, metric, nprobe=16, niter=10, device="cuda")
        fp.train(xb)
        fp.add(xb)
        measure(run, "MiniLM-IVFFlatPanorama8", fp, q)
        del fp
        ref = ti.IndexRefine(ti.IndexIVFPQ(384, 256, 96, 8, metric=metric, nprobe=16, niter=10, pq_niter=10,
                                           device="cuda"), k_factor=4)
        ref.train(xb)
        ref.add(xb)
        measure(run, "MiniLM-IVFPQ96+RFlat", ref, q)
        del ref
    if "10m" in parts and run.left() > 40:
        mix = TorchMixture(128, seed=1, device="cuda")
        xb = mix.sample(10_000_000)
        x = mix.sample(1)
        ivf = ti.IndexIVFFlat(128, 4096, nprobe=32, niter=10, device="cuda")
        ivf.train(xb[:1_000_000])
        ivf.add(xb)
        del xb
        measure(run, "IVFFlat-10M-128-nprobe32", ivf, x)
    run.emit({"done": True})


if __name__ == "__main__":
    main()
