"""Times the earlier torch-ivf 0.1.1 IVFFlat in its own process (it also imports as ``torch_ivf``).

    python -m benchmarks.latency.old_ivf --old-dir DIR --data X.npz --nlist 1024 --nprobe 16 --device cuda --nqs 1,4
Prints one JSON line per nq: {"nq", "p50_ms", "p99_ms", "qps", "recall"}.
"""
from __future__ import annotations

import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-dir", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--nlist", type=int, required=True)
    ap.add_argument("--nprobe", type=int, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--nqs", required=True)
    ap.add_argument("--metric", default="l2")
    a = ap.parse_args()
    sys.path.insert(0, a.old_dir)
    import numpy as np
    import torch
    from torch_ivf.index import IndexIVFFlat, SearchParams  # the OLD package

    from benchmarks.latency.bench import recall, timed
    z = np.load(a.data)
    xb, xq, gt = z["xb"], z["xq"], z["gt"]
    dev = torch.device(a.device)
    idx = IndexIVFFlat(xb.shape[1], metric=a.metric, nlist=a.nlist, device=dev)
    idx.train(torch.from_numpy(xb[:200_000]).to(dev), generator=torch.Generator().manual_seed(0))
    idx.add(torch.from_numpy(xb).to(dev))
    q = torch.from_numpy(xq).to(dev)
    params = SearchParams(nprobe=a.nprobe)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for nq in (int(v) for v in a.nqs.split(",")):
        fn = lambda: idx.search(q[:nq], 10, params=params)  # noqa: E731
        row = timed(fn, nq, sync)
        row.update(nq=nq, recall=recall(fn()[1].cpu().numpy(), gt[:nq]))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
