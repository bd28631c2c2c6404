"""One command per setup:

    python -m benchmarks.run --preset cpu      # 2-core CPU machine, < 15 min
    python -m benchmarks.run --preset h100     # GPU machine (see benchmarks/gpu_run.sh), < 9 min
    python -m benchmarks.run --preset smoke    # tiny, seconds: checks the harness end to end

Writes JSONL rows (one per library x mode x dtype x nprobe x nq; plus add-time rows) and a machine
description next to them, then prints a summary table. Libraries that are absent (faiss, the earlier
torch-ivf 0.1.1, this project's index layer) and data that is absent (the MiniLM shards) are skipped with a
message.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict

import numpy as np
import torch

from .common import Deadline, QuietGate, TimingPolicy, log, machine_info
from .datasets import DatasetUnavailable, get_dataset
from .sweep import run_backend

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

NQS = [1, 64, 1024, 19600]

PRESETS: dict = {
    "smoke": {
        "device": "auto",
        "policy": dict(min_repeats=1, max_repeats=2, target_s=0.05, latency_queries=10, max_call_s=5),
        "ours": dict(dtypes=("float32", "float16")),
        "brute_dtypes": ("float32",),
        "old": dict(dtypes=["float32"], modes=["default", "csr"]),
        "datasets": [
            {"id": "clustered-20k-32", "spec": {"kind": "clustered", "n": 20000, "d": 32, "nq": 512,
                                                "train_n": 4096, "n_centres": 300, "seed": 0},
             "cfg": {"nlist": 64, "k": 10, "nprobe": 8, "nprobes": [2, 8], "sweep_nq": 256,
                     "nqs": [1, 64, 512]}},
        ],
    },
    "cpu": {
        "device": "cpu",
        "deadline_s": 14 * 60,
        "policy": dict(min_repeats=3, max_repeats=9, target_s=1.0, latency_queries=200,
                       latency_target_s=3.0, max_call_s=12.0),
        "ours": dict(dtypes=("float32", "float16")),
        "brute_dtypes": ("float32", "float16", "bfloat16"),
        "old": dict(dtypes=["float32"], modes=["default", "csr"]),
        "datasets": [
            {"id": "clustered-200k-128", "headline": True,
             "spec": {"kind": "clustered", "n": 200000, "d": 128, "nq": 19600, "train_n": 25600,
                      "seed": 0},
             "cfg": {"nlist": 256, "k": 10, "nprobe": 16, "nprobes": [2, 4, 8, 16, 32, 64],
                     "sweep_nq": 1024, "nqs": NQS}},
            {"id": "minilm-80k-384",
             "spec": {"kind": "minilm", "nq": 5000, "train_n": 25600, "seed": 0, "metric": "ip"},
             "cfg": {"nlist": 256, "k": 10, "nprobe": 16, "nprobes": [4, 8, 16, 32], "sweep_nq": 1024,
                     "nqs": [1, 64, 1024, 5000]}},
            {"id": "gaussian-262144-128",
             "spec": {"kind": "gaussian", "n": 262144, "d": 128, "nq": 19600, "train_n": 20480},
             "cfg": {"nlist": 512, "k": 20, "nprobe": 32, "nprobes": [], "sweep_nq": 1024,
                     "nqs": [1024], "add_test": False}},
        ],
    },
    "h100": {
        "device": "cuda",
        "deadline_s": 7 * 60,
        "policy": dict(min_repeats=5, max_repeats=50, target_s=0.25, latency_queries=200,
                       latency_target_s=1.0, max_call_s=8.0),
        "ours": dict(dtypes=("float32", "float16")),
        "brute_dtypes": ("float32", "float16"),
        "old": dict(dtypes=["float32", "float16"], modes=["default", "csr", "auto"]),
        "order": ["ours", "old", "exact", "faiss"],      # most wanted comparisons first (deadline)
        "datasets": [
            {"id": "clustered-1M-128", "headline": True,
             "spec": {"kind": "clustered", "n": 1000000, "d": 128, "nq": 19600, "train_n": 65536,
                      "seed": 0},
             "cfg": {"nlist": 1024, "k": 10, "nprobe": 16, "nprobes": [4, 8, 16, 32, 64],
                     "sweep_nq": 19600, "nqs": NQS}},
            {"id": "gaussian-262144-128",
             "spec": {"kind": "gaussian", "n": 262144, "d": 128, "nq": 19600, "train_n": 20480},
             "cfg": {"nlist": 512, "k": 20, "nprobe": 32, "nprobes": [], "sweep_nq": 19600,
                     "nqs": [1024, 19600], "add_test": False},
             "old": dict(dtypes=["float32", "float16"], modes=["csr", "auto"]),
             "ours": dict(dtypes=("float32", "float16"), modes=("auto", "grouped"))},
            {"id": "minilm-40k-384",
             "spec": {"kind": "minilm", "nq": 5000, "train_n": 35000, "seed": 0, "metric": "ip",
                      "max_shards": 2},
             "cfg": {"nlist": 128, "k": 10, "nprobe": 16, "nprobes": [8, 16, 32], "sweep_nq": 5000,
                     "nqs": [1, 64, 1024, 5000], "add_test": False},
             "old": dict(dtypes=["float32"], modes=["default", "csr", "auto"])},
            {"id": "clustered-1M-384",
             "spec": {"kind": "clustered", "n": 1000000, "d": 384, "nq": 19600, "train_n": 65536,
                      "seed": 0},
             "cfg": {"nlist": 1024, "k": 10, "nprobe": 16, "nprobes": [], "sweep_nq": 19600,
                     "nqs": NQS, "add_test": False},
             "old": dict(dtypes=["float32", "float16"], modes=["csr", "auto"])},
        ],
    },
}


# --------------------------------------------------------------------------------------------- #
# the earlier torch-ivf
# --------------------------------------------------------------------------------------------- #
def find_old_dir(explicit: str | None) -> tuple[str | None, str]:
    cands = [explicit, os.environ.get("OLD_TORCH_IVF_DIR"), os.path.join(HERE, ".cache", "oldivf")]
    for c in cands:
        if c and os.path.exists(os.path.join(c, "torch_ivf", "index", "ivf_flat.py")):
            return c, "found"
    wheels = (glob.glob(os.path.join(REPO, ".whl", "torch_ivf-0.1.1-*.whl"))
              + glob.glob("/tmp/oldivf/torch_ivf-0.1.1-*.whl"))
    target = os.path.join(HERE, ".cache", "oldivf")
    if wheels:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                            "--ignore-requires-python", "--target", target, wheels[0]],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return target, f"installed from {wheels[0]}"
        return None, f"pip install of {wheels[0]} failed: {r.stderr[-500:]}"
    return None, ("the earlier torch-ivf 0.1.1 is not installed: pip install --no-deps "
                  "--ignore-requires-python --target benchmarks/.cache/oldivf torch-ivf==0.1.1 "
                  "(or put its wheel in .whl/); skipping it")


def run_old(old_dir, ds, cfg, policy, out, base_row, device, deadline, opts, gate) -> None:
    job = {"gate": {"enabled": gate.enabled, "threshold": gate.threshold, "max_wait_s": gate.max_wait_s,
                    "total_wait_s": max(0.0, gate.total_left), "max_tries": gate.max_tries},
           "dataset": json.loads(ds.to_json()), "cfg": cfg, "policy": asdict(policy), "out": out,
           "base_row": base_row, "device": device, "dtypes": opts["dtypes"], "modes": opts["modes"],
           "sweep_modes": opts.get("sweep_modes", ["csr"]),
           "deadline_s": max(1.0, deadline.left()) if deadline.seconds else None}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
        path = f.name
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "benchmarks.old_worker", "--old-dir", old_dir, "--job", path],
                       cwd=REPO, env=env)
    os.unlink(path)
    if r.returncode != 0:
        log(f"  earlier torch-ivf worker exited with {r.returncode}")


# --------------------------------------------------------------------------------------------- #
def resolve_device(d: str) -> str:
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d == "cuda" and not torch.cuda.is_available():
        raise SystemExit("preset needs a CUDA device and torch.cuda.is_available() is False")
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    ap.add_argument("--out", default=None, help="JSONL path (default benchmarks/results/<preset>.jsonl)")
    ap.add_argument("--append", action="store_true", help="append to --out instead of replacing it")
    ap.add_argument("--only-lib", default=None,
                    help="comma list among ours,faiss,old,exact (default: all available)")
    ap.add_argument("--only-dataset", default=None, help="comma list of dataset ids of the preset")
    ap.add_argument("--old-dir", default=None, help="directory holding torch-ivf 0.1.1 (pip --target)")
    ap.add_argument("--deadline-s", type=float, default=None, help="stop starting new work after this")
    ap.add_argument("--nice", type=int, default=-10,
                    help="CPU presets: run this process (and the 0.1.1 subprocess) at this nice value "
                         "(0 to leave it); needs root for negative values")
    ap.add_argument("--max-wait-s", type=float, default=20.0,
                    help="CPU: longest wait for other processes to leave the cores before one point")
    ap.add_argument("--total-wait-s", type=float, default=150.0,
                    help="CPU: total such waiting allowed in the run")
    ap.add_argument("--max-tries", type=int, default=3,
                    help="CPU: measurements of one point when other processes interfere")
    ap.add_argument("--sweeps", default="nprobe,nq,add",
                    help="which parts to run: nprobe (recall-QPS), nq, add (add-time test)")
    ap.add_argument("--no-wait", action="store_true",
                    help="on CPU, do not wait for other processes to leave the cores before measuring")
    ap.add_argument("--omp-wait-policy", default="PASSIVE",
                    help="OMP_WAIT_POLICY for every library (torch, faiss, 0.1.1); 'default' leaves "
                         "it unset. PASSIVE because on a shared 2-core machine the default spinning "
                         "made small 2-thread torch ops 20-50x slower whenever another process ran")
    a = ap.parse_args(argv)

    preset = PRESETS[a.preset]
    device = resolve_device(preset["device"])
    # all presets: on the H100 machine faiss-cpu (its own OpenMP pool) shares the process with torch's
    # 16-thread pool; spinning idle threads of one starve the other (faiss ran 27 QPS at nq = 1 there)
    if a.omp_wait_policy != "default" and os.environ.get("OMP_WAIT_POLICY") != a.omp_wait_policy:
        # OpenMP reads this when it starts: re-run this command with it set (torch is loaded already)
        os.environ["OMP_WAIT_POLICY"] = a.omp_wait_policy
        args = list(argv) if argv is not None else sys.argv[1:]
        os.execv(sys.executable, [sys.executable, "-m", "benchmarks.run"] + args)
    policy = TimingPolicy(**preset["policy"])
    deadline = Deadline(a.deadline_s or preset.get("deadline_s"))
    gate = QuietGate(enabled=device == "cpu" and not a.no_wait, max_wait_s=a.max_wait_s,
                     total_wait_s=a.total_wait_s, max_tries=a.max_tries)
    sweeps = set(a.sweeps.split(","))
    niceness = None
    if device == "cpu" and a.nice:
        try:  # raise only this run's priority on a shared machine (root may lower its own nice value)
            niceness = os.nice(a.nice - os.nice(0))
        except OSError as e:
            log(f"could not change this process's priority ({e}); measuring at normal priority")
    out = a.out or os.path.join(HERE, "results", f"{a.preset}.jsonl")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if os.path.exists(out) and not a.append:
        os.unlink(out)
    libs = set((a.only_lib or "ours,faiss,old,exact").split(","))

    machine = machine_info(device)
    versions = {"torch": torch.__version__, "numpy": np.__version__}
    from .runners import BruteForce, FaissIVF, OursIVF, faiss_available, ours_available

    ok_ours, why_ours = ours_available()
    ok_faiss, why_faiss = faiss_available()
    versions["faiss"] = why_faiss if ok_faiss else None
    versions["torch_ivf"] = why_ours if ok_ours else None
    old_dir, why_old = find_old_dir(a.old_dir) if "old" in libs else (None, "not asked for")
    versions["torch_ivf_0_1_1_dir"] = old_dir
    machine["versions"] = versions
    machine["nice"] = niceness
    machine["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    with open(os.path.splitext(out)[0] + ".machine.json", "w") as f:
        json.dump(machine, f, indent=1)
    log(f"preset {a.preset} on {device}: {machine['cpu'].get('Model name')} x{machine['cpu_count']}"
        f"{' / ' + machine['gpu'] if 'gpu' in machine else ''}; torch {torch.__version__}")
    if "ours" in libs and not ok_ours:
        log(f"SKIP this project: {why_ours}")
    if "faiss" in libs and not ok_faiss:
        log(f"SKIP faiss-cpu: {why_faiss}")
    if "old" in libs and not old_dir:
        log(f"SKIP earlier torch-ivf: {why_old}")

    t_start = time.perf_counter()
    for dspec in preset["datasets"]:
        if a.only_dataset and dspec["id"] not in a.only_dataset.split(","):
            continue
        if deadline.expired():
            log(f"deadline reached: skipping dataset {dspec['id']}")
            continue
        try:
            ds = get_dataset(dspec["spec"], log=log)
        except DatasetUnavailable as e:
            log(f"SKIP dataset {dspec['id']}: {e}")
            continue
        cfg = dict(dspec["cfg"])
        if "nprobe" not in sweeps:
            cfg["nprobes"] = []
        if "nq" not in sweeps:
            cfg["nqs"] = []
        if "add" not in sweeps:
            cfg["add_test"] = False
        log(f"dataset {dspec['id']}: n={ds.n:,} d={ds.d} metric={ds.metric} queries={ds.nq:,} "
            f"nlist={cfg['nlist']} nprobe={cfg['nprobe']} k={cfg['k']}")
        base_row = {"preset": a.preset, "dataset": dspec["id"], "dataset_file": ds.name, "n": ds.n,
                    "d": ds.d, "metric": ds.metric, "train_n": ds.meta["train_n"],
                    "headline": bool(dspec.get("headline")), "machine": _short_machine(machine),
                    "versions": versions, "ts": time.strftime("%Y-%m-%dT%H:%M:%S")}
        makers = {
            "ours": (lambda: OursIVF(device, **dspec.get("ours", preset["ours"]))) if ok_ours else None,
            "faiss": (lambda: FaissIVF()) if ok_faiss else None,
            "exact": lambda: BruteForce(device, dtypes=preset["brute_dtypes"]),
        }
        for lib in preset.get("order", ["ours", "faiss", "exact", "old"]):
            if lib not in libs or deadline.expired():
                continue
            if lib == "old":
                if old_dir:
                    run_old(old_dir, ds, cfg, policy, out, base_row, device, deadline,
                            dspec.get("old", preset["old"]), gate)
                continue
            if makers.get(lib) is None:
                continue
            run_backend(makers[lib](), ds, cfg, policy, out, base_row, deadline, gate)
    log(f"done in {time.perf_counter() - t_start:.0f} s; rows in {out}")
    from .summarize import print_summary

    print_summary(out)
    return 0


def _short_machine(m: dict) -> dict:
    s = {"cpu": m["cpu"].get("Model name"), "cores": m["cpu_count"], "device": m["device"],
         "torch_threads": m["torch_threads"], "python": m["python"],
         "omp_wait_policy": m.get("omp_wait_policy"), "nice": m.get("nice")}
    if "gpu" in m:
        s["gpu"] = m["gpu"]
    return s


if __name__ == "__main__":
    sys.exit(main())
