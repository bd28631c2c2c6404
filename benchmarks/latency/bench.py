"""Latency and throughput against batch size for every index type: torch-ivf (auto and forced paths)
vs exact search vs the earlier torch-ivf 0.1.1 vs faiss-cpu, on clustered data and MiniLM embeddings.

    python -m benchmarks.latency.bench --device cuda --out results/h200.jsonl [--old-dir DIR]
    python -m benchmarks.latency.bench --device cpu --out results/cpu.jsonl [--busy]
Rows: {"dataset", "index", "library", "variant", "nq", "p50_ms", "p99_ms", "qps", "recall"} with
recall@10 against exact ground truth (benchmarks.datasets.exact_knn). CPU rows are interleaved per round (every library once
per round, medians over rounds); --busy repeats them while another process keeps one core busy.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

NQS_GPU = (1, 4, 16, 64, 256, 1024, 4096, 19600)
NQS_CPU = (1, 4, 16, 64, 256, 1024)


def timed(fn, nq, sync, budget_s=0.3, min_reps=3, max_reps=40):
    fn()
    sync()
    times = []
    end = time.perf_counter() + budget_s
    while len(times) < min_reps or (len(times) < max_reps and time.perf_counter() < end):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return _stats(times, nq)


def _stats(times, nq):
    times = sorted(times)
    p50 = statistics.median(times)
    return {"p50_ms": round(p50 * 1e3, 4), "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))] * 1e3, 4),
            "qps": round(nq / p50, 1), "reps": len(times)}


def recall(I, gt, k=10):
    from benchmarks.common import recall_at_k
    return round(recall_at_k(I, gt, k), 4)


def exact_gt(xb, xq, metric, device, k=10):
    from benchmarks.datasets import exact_knn
    return exact_knn(xb, xq, k, metric, device=str(device))[1]


def machine(device):
    info = {"machine": platform.node(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "loadavg": os.getloadavg()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import faiss
        info["faiss"] = faiss.__version__
    except ImportError:
        pass
    return info


def _ti_indexes(ti, xb, metric, dev, nlist, minilm):
    """(name, index, query transform) for every index type; Panorama and its IVFPQ twin share codebooks."""
    d = xb.shape[1]
    out = []
    ivf = ti.IndexIVFFlat(d, nlist, metric, nprobe=16, niter=10, device=dev)
    ivf.train(xb[:200_000])
    ivf.add(xb)
    out.append(("IVFFlat", ivf))
    if not minilm:
        return out
    M = d // 4
    pano = ti.IndexIVFPQPanorama(d, nlist, M, 8, 8, metric, nprobe=16, niter=10, pq_niter=10, device=dev)
    pano.train(xb)
    pano.add(xb)
    out.append((f"IVFPQ{M}Panorama8", pano))
    out.append((f"IVFPQ{M}", ti.IndexIVFPQ(d, nlist, M, 8, metric=metric, nprobe=16, niter=10, pq_niter=10, device=dev)))
    out.append((f"IVFPQ{M}+RFlat", ti.IndexRefine(ti.IndexIVFPQ(d, nlist, M, 8, metric=metric, nprobe=16, niter=10,
                                                                 pq_niter=10, device=dev), k_factor=4)))
    for name, idx in out[2:]:
        idx.train(xb)
        idx.add(xb)
    fp = ti.IndexIVFFlatPanorama(d, nlist, 8, metric, nprobe=16, niter=10, device=dev)
    fp.train(xb)
    fp.add(xb)
    out.append(("IVFFlatPanorama8", fp))
    return out


def _faiss_indexes(xb, metric, nlist, ti_ivf, minilm):
    import faiss
    d = xb.shape[1]
    mt = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    out = []
    q = faiss.IndexFlat(d, mt)
    q.add(ti_ivf.centroids.cpu().numpy())
    ivf = faiss.IndexIVFFlat(q, d, nlist, mt)
    ivf.is_trained = True
    ivf.add(xb)
    ivf.nprobe = 16
    out.append(("IVFFlat", ivf))
    flat = faiss.IndexFlat(d, mt)
    flat.add(xb)
    out.append(("Flat", flat))
    if minilm:
        pq = faiss.index_factory(d, f"IVF{nlist},PQ{d // 4}", mt)
        pq.train(xb[:20000])
        pq.add(xb)
        faiss.extract_index_ivf(pq).nprobe = 16
        out.append((f"IVFPQ{d // 4}", pq))
    return out


def gpu_main(args, out):
    import torch_ivf as ti
    from torch_ivf import kernels
    from torch_ivf.search import cost
    dev = torch.device("cuda")
    sync = torch.cuda.synchronize
    emit(out, {"machine": machine(dev)})
    sets = [("clustered-1M-128", "l2", 1024, False)]
    if args.data_dir:
        sets.append(("minilm-40k-384", "ip", 256, True))
    for name, metric, nlist, minilm in sets:
        if minilm:
            from benchmarks.pq.bench_pq import load_minilm
            xb, xq, metric, _ = load_minilm(args.data_dir, 2000, 0, 2)
        else:
            from benchmarks.datasets import make_clustered
            xb, xq, _ = make_clustered(1_000_000, 128, max(NQS_GPU), seed=0)
        nqs = [n for n in NQS_GPU if n <= len(xq)]
        gt = exact_gt(xb, xq, metric, dev)
        q = torch.from_numpy(xq).to(dev)
        indexes = _ti_indexes(ti, xb, metric, dev, nlist, minilm)
        exact = ti.IndexFlat(xb.shape[1], metric, device=dev)
        exact.add(xb)
        indexes.append(("Flat", exact))
        forced = {"auto": {}, "no-triton": {"triton": False}}
        if not minilm:
            forced["whole-lists"] = {"chunk": 0}  # the list kernel before row chunks (previous auto)
        for iname, idx in indexes:
            for nq in nqs:
                for vname, f in forced.items():
                    saved = (kernels.enabled, cost.flat_chunk_rows)
                    kernels.enabled = f.get("triton", True)
                    if "chunk" in f:
                        cost.flat_chunk_rows = lambda *a: 0
                    try:
                        fn = lambda: idx.search(q[:nq], 10)  # noqa: E731
                        row = timed(fn, nq, sync)
                        row["recall"] = recall(fn()[1].cpu().numpy(), gt[:nq])
                        graphs_ = idx.__dict__.get("_graphs", {})
                        row["graphs"] = [e is not False for e in graphs_.values()]  # False: capture failed
                        emit(out, {"dataset": name, "index": iname, "library": "torch-ivf", "variant": vname,
                                   "nq": nq, **row})
                    except Exception as e:
                        emit(out, {"dataset": name, "index": iname, "variant": vname, "nq": nq, "error": repr(e)[:300]})
                    finally:
                        kernels.enabled, cost.flat_chunk_rows = saved
        ivf = indexes[0][1]
        if args.old_dir and not minilm:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "data.npz")
                np.savez(path, xb=xb, xq=xq, gt=gt)
                p = subprocess.run([sys.executable, "-m", "benchmarks.latency.old_ivf", "--old-dir", args.old_dir,
                                    "--data", path, "--nlist", str(nlist), "--nprobe", "16", "--metric", metric,
                                    "--nqs", ",".join(map(str, nqs))], capture_output=True, text=True, timeout=150)
                for line in p.stdout.splitlines():
                    emit(out, {"dataset": name, "index": "IVFFlat", "library": "torch-ivf-0.1.1", "variant": "default",
                               **json.loads(line)})
                if p.returncode:
                    emit(out, {"dataset": name, "library": "torch-ivf-0.1.1", "error": p.stderr[-600:]})
        try:
            import faiss
        except ImportError:
            continue
        faiss.omp_set_num_threads(os.cpu_count())
        for iname, fi in _faiss_indexes(xb, metric, nlist, ivf, minilm):
            for nq in nqs:
                if nq > 4096 or (iname == "Flat" and nq > 1024):
                    continue  # seconds per call on the host: the trend is clear by then
                fn = lambda: fi.search(xq[:nq], 10)  # noqa: E731
                row = timed(fn, nq, lambda: None, budget_s=0.3, min_reps=2)
                row["recall"] = recall(fn()[1], gt[:nq])
                emit(out, {"dataset": name, "index": iname, "library": "faiss-cpu", "variant": f"{os.cpu_count()} threads",
                           "nq": nq, **row})


def _burn(stop):
    while not stop.is_set():
        sum(i * i for i in range(10000))


def _cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def cpu_main(args, out):
    import faiss
    import torch_ivf as ti
    from torch_ivf.search import cost
    from benchmarks.datasets import make_clustered
    dev = torch.device("cpu")
    emit(out, {"machine": {**machine(dev), "cpu": _cpu_model()}, "torch_threads": torch.get_num_threads()})
    xb, xq, _ = make_clustered(200_000, 128, 1024, seed=0)
    gt = exact_gt(xb, xq, "l2", dev)
    ivf = ti.IndexIVFFlat(128, 1024, nprobe=16, niter=10)
    ivf.train(xb[:100_000])
    ivf.add(xb)
    flat = ti.IndexFlat(128)
    flat.add(xb[:50_000])
    gt_flat = exact_gt(xb[:50_000], xq, "l2", dev)
    (_, fivf), (_, fflat) = _faiss_indexes(xb, "l2", 1024, ivf, False)
    fflat.reset()
    fflat.add(xb[:50_000])
    # exact search at d = 384 (MiniLM's width): 50k clustered rows, 77 MB, more than the caches hold
    xb384, xq384, _ = make_clustered(50_000, 384, 1024, seed=1)
    gt384 = exact_gt(xb384, xq384, "l2", dev)
    flat384 = ti.IndexFlat(384)
    flat384.add(xb384)
    fflat384 = faiss.IndexFlatL2(384)
    fflat384.add(xb384)
    q384 = torch.from_numpy(xq384)
    faiss.omp_set_num_threads(torch.get_num_threads())
    q = torch.from_numpy(xq)
    from torch_ivf.search import choose, grouped
    patched = [(cost, "query_workers"), (choose, "PER_QUERY_MAX_NQ"), (grouped.GroupedScan, "_select_across_lists")]
    saved = [(obj, name, getattr(obj, name)) for obj, name in patched]

    def restore():
        for obj, name, value in saved:
            setattr(obj, name, value)

    def previous(nq):  # the paths before the selection over all lists: a top-k per list, nq <= 4 per query, unsplit
        cost.query_workers = lambda elements: 1
        choose.PER_QUERY_MAX_NQ = 4
        grouped.GroupedScan._select_across_lists = lambda self, max_codes: False
        return nq
    cases = {
        ("IVFFlat", "torch-ivf", "auto"): (lambda nq: ivf.search(q[:nq], 10)[1], gt),
        ("IVFFlat", "torch-ivf", "previous: top-k per list"): (lambda nq: ivf.search(q[:previous(nq)], 10)[1], gt),
        ("IVFFlat", "faiss-cpu", "default"): (lambda nq: fivf.search(xq[:nq], 10)[1], gt),
        ("Flat", "torch-ivf", "auto"): (lambda nq: flat.search(q[:nq], 10)[1], gt_flat),
        ("Flat", "faiss-cpu", "default"): (lambda nq: fflat.search(xq[:nq], 10)[1], gt_flat),
        ("Flat384", "torch-ivf", "auto"): (lambda nq: flat384.search(q384[:nq], 10)[1], gt384),
        ("Flat384", "faiss-cpu", "default"): (lambda nq: fflat384.search(xq384[:nq], 10)[1], gt384),
    }
    for busy in ([False, True] if args.busy else [False]):
        stop = mp.Event()
        burner = mp.Process(target=_burn, args=(stop,)) if busy else None
        if burner:
            burner.start()
        for nq in NQS_CPU:
            times = {key: [] for key in cases}
            rounds = 9 if nq <= 16 else 5 if nq <= 64 else 3
            # rounds per index, rotating its libraries: a call right after a scan of another data set
            # finds the caches holding that one (IVFFlat nq = 1 after a Flat 50k x 384 search and one warm
            # call: 1.43 ms, after an IVFFlat call 0.96), so every contender follows the same kind of call
            for name in dict.fromkeys(key[0] for key in cases):
                keys = [key for key in cases if key[0] == name]
                for r in range(rounds):
                    for key in keys[r % len(keys):] + keys[:r % len(keys)]:  # rotating order
                        fn = cases[key][0]
                        fn(nq)
                        t0 = time.perf_counter()
                        fn(nq)
                        times[key].append(time.perf_counter() - t0)
                        restore()
            for key, ts in times.items():
                I = cases[key][0](nq)
                restore()
                I = I.numpy() if isinstance(I, torch.Tensor) else I
                dataset = {"IVFFlat": "clustered-200k-128", "Flat": "clustered-50k-128"}.get(key[0], "clustered-50k-384")
                emit(out, {"dataset": dataset,
                           "index": key[0], "library": key[1], "variant": key[2], "nq": nq,
                           "busy_core": busy, "loadavg": os.getloadavg()[0], **_stats(ts, nq),
                           "recall": recall(I, cases[key][1][:nq])})
        if burner:
            stop.set()
            burner.join()


def emit(out, row):
    line = json.dumps(row)
    print(line, flush=True)
    out.write(line + "\n")
    out.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--old-dir", default=None)
    ap.add_argument("--busy", action="store_true")
    args = ap.parse_args()
    with open(args.out, "a") as out:
        (gpu_main if args.device == "cuda" else cpu_main)(args, out)


if __name__ == "__main__":
    main()
