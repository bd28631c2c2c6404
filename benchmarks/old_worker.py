"""Runs the earlier torch-ivf 0.1.1 (PyPI) in its own process: the old package also imports as
``torch_ivf``, so its install directory goes first on sys.path before anything imports it.

    python -m benchmarks.old_worker --old-dir DIR --job JOB.json
JOB.json: {"dataset": <Dataset json>, "cfg": {...}, "policy": {...}, "out": path, "base_row": {...},
           "device": "cpu"|"cuda", "dtypes": [...], "modes": [...], "deadline_s": float|null}
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-dir", required=True)
    ap.add_argument("--job", required=True)
    a = ap.parse_args()
    old_dir = os.path.abspath(a.old_dir)
    sys.path.insert(0, old_dir)
    import torch_ivf  # noqa: E402  (the OLD package)

    if not os.path.abspath(torch_ivf.__file__).startswith(old_dir):
        print(f"old_worker: imported {torch_ivf.__file__}, not the package in {old_dir}", file=sys.stderr)
        return 3
    import numpy as np
    import torch
    from torch_ivf.index import IndexIVFFlat, SearchParams

    from benchmarks.common import Deadline, QuietGate, TimingPolicy, tensor_bytes, timed
    from benchmarks.datasets import Dataset
    from benchmarks.sweep import Backend, run_backend

    import glob

    infos = glob.glob(os.path.join(old_dir, "torch_ivf-*.dist-info"))
    old_version = os.path.basename(infos[0])[len("torch_ivf-"):-len(".dist-info")] if infos else "0.1.1"

    with open(a.job) as f:
        job = json.load(f)
    device = job["device"]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    tdt = {"float32": torch.float32, "float16": torch.float16}

    class OldIVF(Backend):
        library = "torch-ivf-0.1.1"
        version = old_version

        def __init__(self):
            super().__init__(device)
            self.idx = None

        def dtypes(self):
            return job.get("dtypes", ["float32"])

        def variants(self, dtype):
            return [{"mode": m, "dtype": dtype} for m in job.get("modes", ["default", "csr"])]

        def sweep_variants(self, dtype):
            return [{"mode": m, "dtype": dtype} for m in job.get("sweep_modes", ["csr"])]

        def threads(self):
            return torch.get_num_threads() if device == "cpu" else None

        def prepare_queries(self, xq):
            return torch.from_numpy(np.ascontiguousarray(xq)).to(device)

        def build(self, ds, xt, xb, nlist, dtype):
            xt_t = torch.from_numpy(np.ascontiguousarray(xt)).to(device)
            xb_t = torch.from_numpy(np.ascontiguousarray(xb)).to(device)
            self.idx = IndexIVFFlat(ds.d, metric=ds.metric, nlist=nlist, device=device, dtype=tdt[dtype])
            self.default_mode = self.idx.search_mode
            gen = torch.Generator().manual_seed(0)
            train_s, _ = timed(lambda: self.idx.train(xt_t, generator=gen), sync)
            add_s, _ = timed(lambda: self.idx.add(xb_t), sync)
            nbytes = tensor_bytes(self.idx)
            return {"train_s": round(train_s, 4), "add_s": round(add_s, 4),
                    "bytes_per_vector": round(nbytes / max(1, self.idx.ntotal), 2),
                    "raw_bytes_per_vector": ds.d * torch.finfo(tdt[dtype]).bits // 8,
                    "ntotal": int(self.idx.ntotal)}

        def searcher(self, variant, k, nprobe):
            idx = self.idx
            mode = self.default_mode if variant["mode"] == "default" else variant["mode"]
            params = SearchParams(nprobe=nprobe)

            def call(q):
                idx.search_mode = mode    # set per call: the variants' calls are interleaved
                return idx.search(q, k, params=params)[1]

            return call

        def extra(self, variant, nq, nprobe):
            return {"search_mode": self.default_mode if variant["mode"] == "default" else variant["mode"]}

        def add(self, x):
            self.idx.add(torch.from_numpy(np.ascontiguousarray(x)).to(device))

        def sync(self):
            sync()

        def free(self):
            self.idx = None
            if device.startswith("cuda"):
                torch.cuda.empty_cache()

    ds = Dataset.from_json(json.dumps(job["dataset"]))
    if job.get("serve"):
        return serve(OldIVF(), ds)
    run_backend(OldIVF(), ds, job["cfg"], TimingPolicy(**job["policy"]), job["out"], job["base_row"],
                Deadline(job.get("deadline_s")), QuietGate(**job["gate"]) if job.get("gate") else None)
    return 0


def serve(backend, ds) -> int:
    """Line protocol for benchmarks.duel (JSON a line on stdin; replies on stdout): the parent
    interleaves this process's calls with the other libraries' so that they share the machine alike.
      {"cmd": "build", "dtype", "nlist"}                        -> build info
      {"cmd": "search", "mode", "nprobe", "k", "start", "nq", "save": path|null} -> {"t": seconds}
      {"cmd": "quit"}"""
    import time

    import numpy as np

    xq = backend.prepare_queries(ds.load("xq"))
    calls = {}
    out = sys.stdout
    sys.stdout = sys.stderr            # keep library prints off the protocol channel
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            if msg["cmd"] == "quit":
                break
            if msg["cmd"] == "build":
                info = backend.build(ds, ds.load("xt"), ds.load("xb"), msg["nlist"], msg["dtype"])
                calls.clear()
                reply = dict(info, library=backend.library, version=backend.version,
                             threads=backend.threads())
            elif msg["cmd"] == "search":
                key = (msg["mode"], msg["nprobe"], msg["k"])
                if key not in calls:
                    calls[key] = backend.searcher({"mode": msg["mode"]}, msg["k"], msg["nprobe"])
                q = xq[msg["start"]: msg["start"] + msg["nq"]]
                backend.sync()
                t0 = time.perf_counter()
                I = calls[key](q)
                backend.sync()
                reply = {"t": time.perf_counter() - t0}
                if msg.get("save"):
                    np.save(msg["save"], I.cpu().numpy() if hasattr(I, "cpu") else np.asarray(I))
            else:
                reply = {"error": f"unknown command {msg['cmd']!r}"}
        except Exception as e:  # reported, not fatal
            reply = {"error": repr(e)}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
