"""All libraries interleaved call by call at one setup: the fair comparison on a shared machine.

    python -m benchmarks.duel --preset cpu            # headline dataset of the preset, its nq list
    python -m benchmarks.duel --preset cpu --dataset minilm-80k-384 --nq 1 64 1024

``benchmarks.run`` measures one library after another; on a machine whose other users come and go, a
library can be measured in a busy minute and the next one in a quiet minute. Here every round calls
every (library, mode, dtype) once, in a rotating order, with the earlier torch-ivf kept alive in a
server subprocess (it imports as ``torch_ivf`` too) that times its own calls; QPS = nq / median over
rounds. Rows go to ``results/<preset>-duel.jsonl`` in the format of ``benchmarks.run`` (summarize and
plot read them).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from .common import Deadline, log, machine_info, recall_at_k, recall_tie_aware, to_np, write_row
from .datasets import get_dataset
from .run import HERE, PRESETS, REPO, _short_machine, find_old_dir


class OldServer:
    def __init__(self, old_dir, ds, device):
        job = {"dataset": json.loads(ds.to_json()), "device": device, "serve": True, "cfg": {},
               "policy": {}, "out": None, "base_row": {}}
        f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(job, f)
        f.close()
        self.job = f.name
        self.p = subprocess.Popen([sys.executable, "-m", "benchmarks.old_worker", "--old-dir", old_dir,
                                   "--job", self.job], cwd=REPO, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)

    def ask(self, **msg):
        self.p.stdin.write(json.dumps(msg) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("earlier torch-ivf server exited")
        r = json.loads(line)
        if "error" in r:
            raise RuntimeError(r["error"])
        return r

    def close(self):
        try:
            self.ask(cmd="quit")
        except Exception:
            pass
        self.p.wait(timeout=30)
        os.unlink(self.job)


def _jiffies(pid) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except Exception:
        return 0


def _stat():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), sum(v) - v[3] - (v[4] if len(v) > 4 else 0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--dataset", default=None, help="dataset id of the preset (default: its headline)")
    ap.add_argument("--nq", type=int, nargs="+", default=None)
    ap.add_argument("--nprobe", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--append", action="store_true")
    ap.add_argument("--min-rounds", type=int, default=5)
    ap.add_argument("--max-rounds", type=int, default=15)
    ap.add_argument("--target-s", type=float, default=0.6, help="per variant, measured time to aim for")
    ap.add_argument("--max-call-s", type=float, default=25.0)
    ap.add_argument("--latency-queries", type=int, default=100)
    ap.add_argument("--ours-dtypes", nargs="+", default=["float32", "float16"])
    ap.add_argument("--exact-dtypes", nargs="+", default=None)
    ap.add_argument("--deadline-s", type=float, default=None)
    a = ap.parse_args(argv)

    preset = PRESETS[a.preset]
    device = "cuda" if preset["device"] == "cuda" else ("cuda" if preset["device"] == "auto"
                                                          and torch.cuda.is_available() else "cpu")
    if device == "cpu" and os.environ.get("OMP_WAIT_POLICY") != "PASSIVE":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"          # see benchmarks.run --omp-wait-policy
        args = list(argv) if argv is not None else sys.argv[1:]
        os.execv(sys.executable, [sys.executable, "-m", "benchmarks.duel"] + args)
    if device == "cpu":
        try:
            os.nice(-10 - os.nice(0))
        except OSError:
            pass
    dspec = next(d for d in preset["datasets"]
                 if (a.dataset is None and d.get("headline")) or d["id"] == a.dataset)
    cfg = dspec["cfg"]
    nprobe = a.nprobe or cfg["nprobe"]
    k = cfg["k"]
    nqs = a.nq or cfg["nqs"]
    ds = get_dataset(dspec["spec"], log=log)
    out = a.out or os.path.join(HERE, "results", f"{a.preset}-duel.jsonl")
    if os.path.exists(out) and not a.append:
        os.unlink(out)
    deadline = Deadline(a.deadline_s)
    machine = machine_info(device)
    machine["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    machine["nice"] = os.nice(0)
    xb, xq_np, xt = ds.load("xb"), ds.load("xq"), ds.load("xt")
    gt_I, gt_D = ds.load("gt_I"), ds.load("gt_D")

    from .runners import BruteForce, FaissIVF, OursIVF, faiss_available, ours_available

    versions = {"torch": torch.__version__, "numpy": np.__version__}
    entries = []     # dict(library, mode, dtype, run(start, nq, want_I) -> (seconds, I or None), info)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def local_entries(backend, dtype, variants):
        info = backend.build(ds, xt, xb, cfg["nlist"], dtype)
        q_all = backend.prepare_queries(xq_np)
        for v in variants:
            call = backend.searcher(v, k, nprobe)

            def run(start, nq, want_I, call=call, q_all=q_all):
                q = q_all[start:start + nq]
                sync()
                t0 = time.perf_counter()
                I = call(q)
                sync()
                dt = time.perf_counter() - t0
                return dt, (to_np(I) if want_I else None)

            entries.append(dict(library=backend.library, version=backend.version, mode=v["mode"],
                                dtype=dtype, run=run, info=info, threads=backend.threads(),
                                backend=backend, ivf=backend.ivf))
        log(f"built {backend.library} {dtype}: {info}")

    ok, why = ours_available()
    versions["torch_ivf"] = why if ok else None
    ours_backends = []
    if ok:
        for dt in a.ours_dtypes:
            b = OursIVF(device, dtypes=(dt,))
            local_entries(b, dt, b.variants(dt))
            ours_backends.append(b)
    else:
        log(f"SKIP this project: {why}")
    ok, why = faiss_available()
    versions["faiss"] = why if ok else None
    if ok:
        b = FaissIVF()
        local_entries(b, "float32", b.variants("float32"))
    else:
        log(f"SKIP faiss-cpu: {why}")
    exact_dtypes = a.exact_dtypes or (["float32", "bfloat16"] if device == "cpu" else ["float32", "float16"])
    for dt in exact_dtypes:
        b = BruteForce(device, dtypes=(dt,))
        local_entries(b, dt, b.variants(dt))
    old_dir, why = find_old_dir(None)
    server = None
    if old_dir:
        server = OldServer(old_dir, ds, device)
        info = server.ask(cmd="build", dtype="float32", nlist=cfg["nlist"])
        versions["torch_ivf_0_1_1"] = info.get("version")
        log(f"built torch-ivf 0.1.1 float32: {info}")
        for mode in ("default", "csr"):
            def run(start, nq, want_I, mode=mode):
                path = None
                if want_I:
                    path = tempfile.mktemp(suffix=".npy")
                r = server.ask(cmd="search", mode=mode, nprobe=nprobe, k=k, start=start, nq=nq, save=path)
                I = None
                if path:
                    I = np.load(path)
                    os.unlink(path)
                return r["t"], I

            entries.append(dict(library="torch-ivf-0.1.1", version=info.get("version"), mode=mode,
                                dtype="float32", run=run, info={kk: info[kk] for kk in info
                                                                if kk.endswith("_s") or "bytes" in kk
                                                                or kk == "ntotal"},
                                threads=info.get("threads"), backend=None, ivf=True))
    else:
        log(f"SKIP earlier torch-ivf: {why}")

    base = {"preset": a.preset, "dataset": dspec["id"], "dataset_file": ds.name, "n": ds.n, "d": ds.d,
            "metric": ds.metric, "train_n": ds.meta["train_n"], "headline": bool(dspec.get("headline")),
            "machine": _short_machine(machine), "versions": versions, "k": k, "sweep": "nq",
            "duel": True, "ts": time.strftime("%Y-%m-%dT%H:%M:%S"), "device": device}
    best_qps: dict = {}
    pids = [os.getpid()] + ([server.p.pid] if server else [])
    for nq in nqs:
        if deadline.expired():
            log("deadline reached")
            break
        if nq > xq_np.shape[0]:
            continue
        act = []
        for e in entries:
            key = (e["library"], e["mode"], e["dtype"])
            if key in best_qps and nq / best_qps[key] > a.max_call_s:
                log(f"  skip {key} at nq={nq}: predicted {nq / best_qps[key]:.0f} s a call")
                write_row(out, dict(base, library=e["library"], version=e["version"], mode=e["mode"],
                                    dtype=e["dtype"], nq=nq, nprobe=nprobe if e["ivf"] else None,
                                    skipped=f"predicted {nq / best_qps[key]:.0f} s a call"))
                continue
            act.append(e)
        times = {id(e): [] for e in act}
        Is = {id(e): [] for e in act}
        s0, j0 = _stat(), sum(_jiffies(p) for p in pids)
        t_start = time.perf_counter()
        if nq == 1:
            nl = min(a.latency_queries, xq_np.shape[0])
            for e in act:                                   # warm-up
                for i in range(3):
                    e["run"](i, 1, False)
            rng = random.Random(nq)
            for i in range(nl):
                # a fresh random order per query: in a fixed cycle a call always follows the same
                # neighbour and inherits (or loses) its cache contents, e.g. the same probed lists
                order = rng.sample(act, len(act))
                for e in order:
                    dt, I = e["run"](i, 1, True)
                    times[id(e)].append(dt)
                    Is[id(e)].append(I)
                if time.perf_counter() - t_start > 3.0 * len(act) and i >= 30:
                    break
        else:
            warm = {}
            for e in act:
                w_nq = nq if nq <= 4096 else 2048
                dt, _ = e["run"](0, w_nq, False)
                warm[id(e)] = dt * nq / w_nq
            long_round = sum(warm.values()) > 3 * a.max_call_s
            r = 0
            rng = random.Random(nq)
            while True:
                order = rng.sample(act, len(act))
                for e in order:
                    dt, I = e["run"](0, nq, r == 0)
                    times[id(e)].append(dt)
                    if r == 0:
                        Is[id(e)].append(I)
                r += 1
                tot = min(sum(v) for v in times.values())
                if r >= a.max_rounds or (r >= a.min_rounds and tot >= a.target_s) \
                        or (long_round and r >= 2) or deadline.expired():
                    break
        s1, j1 = _stat(), sum(_jiffies(p) for p in pids)
        others = max(0.0, ((s1[1] - s0[1]) - (j1 - j0)) / max(1, s1[0] - s0[0]))
        log(f"nq={nq}: {len(act)} variants interleaved, {time.perf_counter() - t_start:.0f} s, "
            f"other processes {others:.0%}")
        for e in act:
            ts = times[id(e)]
            med = statistics.median(ts)
            I = np.concatenate(Is[id(e)], 0)
            rec = recall_at_k(I, gt_I, k)
            m = min(I.shape[0], 2000)
            rec_tie = recall_tie_aware(I[:m], xq_np[:m], xb, gt_D, k, ds.metric)
            qps = nq / med
            key = (e["library"], e["mode"], e["dtype"])
            if nq > 1:                        # single-query latency says little about batches
                best_qps[key] = max(best_qps.get(key, 0.0), qps)
            row = dict(base, library=e["library"], version=e["version"], mode=e["mode"], dtype=e["dtype"],
                       threads=e["threads"], nlist=cfg["nlist"] if e["ivf"] else None,
                       nprobe=nprobe if e["ivf"] else None, nq=nq, qps=qps, median_s=med,
                       repeats=len(ts), recall=round(rec, 5), recall_tie=round(rec_tie, 5),
                       others_busy_during=round(others, 3), **e["info"])
            if nq == 1:
                row.update(p50_ms=float(np.percentile(ts, 50) * 1e3), p99_ms=float(np.percentile(ts, 99) * 1e3))
            else:
                row["times_s"] = [round(t, 6) for t in ts]
            b = e.get("backend")
            if b is not None and e["library"] == "torch-ivf" and e["mode"] == "auto":
                row.update(b.extra({"mode": "auto"}, nq, nprobe))
            write_row(out, row)
            lat = f" p50 {row['p50_ms']:.2f} ms p99 {row['p99_ms']:.2f} ms" if nq == 1 else ""
            log(f"  {e['library']:<16} {e['mode']:<8} {e['dtype']:<8} nq={nq:<6} QPS {qps:>10.0f} "
                f"recall {rec:.4f}{lat}")
    if server:
        server.close()
    from .summarize import print_summary

    print_summary(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
