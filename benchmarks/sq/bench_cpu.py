"""CPU: IVF-SQ8 (and SQ4, SQfp16) beside IVFFlat and faiss-cpu's IVFFlat / IVFSQ8 on the same trained
coarse quantizer: bytes per vector, recall@10 against exact ground truth, QPS (median of interleaved
repeats, 1000 queries per call), on clustered data and MiniLM man-page embeddings.

    python -m benchmarks.sq.bench_cpu benchmarks/results/sq/cpu.jsonl
    python -m benchmarks.sq.plot benchmarks/results/sq/cpu.jsonl
"""
from __future__ import annotations

import json
import os
import sys
import time

import faiss
import numpy as np
import torch

import torch_ivf as ti
from torch_ivf.interop import from_faiss

from ..common import cpu_busy, machine_info, recall_at_k
from ..datasets import DatasetUnavailable, exact_knn, make_clustered, make_minilm

K, NQ, REPEATS = 10, 1000, 5
NPROBES = (4, 16, 64)


def _faiss_bytes(f) -> float:
    return f.code_size + 8  # code + int64 id per vector in its inverted lists


def _our_bytes(index) -> float:
    rows = index.invlists.fields()
    return sum(t.element_size() * t[0].numel() for n, t in rows.items() if n != "labels") + 8


def run(name, xb, xq, nlist, out):
    truth = exact_knn(xb, xq, K, "l2", device="cpu")[1]
    d = xb.shape[1]
    faiss_ix = {}
    for desc in ("Flat", "SQ8"):  # faiss trains the coarse quantizer once; ours reuse it via from_faiss
        f = faiss.index_factory(d, f"IVF{nlist},{desc}")
        if faiss_ix:
            f = faiss.IndexIVFScalarQuantizer(faiss_ix["Flat"].quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit)
        f.train(xb)
        f.add(xb)
        faiss_ix[desc] = f
    ours = {"IVFFlat": from_faiss(faiss_ix["Flat"]), "IVFSQ8": from_faiss(faiss_ix["SQ8"])}
    for desc, qtype in (("IVFSQ4", ti.ScalarQuantizer.QT_4bit), ("IVFSQfp16", ti.ScalarQuantizer.QT_fp16)):
        ix = ti.IndexIVFScalarQuantizer(ti.IndexFlatL2(d), d, nlist, qtype)
        ix.centroids = ours["IVFFlat"].centroids
        ix.train(xb)
        ix.add(xb)
        ours[desc] = ix
    systems = {**{("torch-ivf", n): ix for n, ix in ours.items()},
               ("faiss-cpu", "IVFFlat"): faiss_ix["Flat"], ("faiss-cpu", "IVFSQ8"): faiss_ix["SQ8"]}
    for nprobe in NPROBES:
        times = {key: [] for key in systems}
        results = {}
        busy = cpu_busy()
        for _ in range(REPEATS):  # interleaved: the shared machine's load hits every system alike
            for key, ix in systems.items():
                ix.nprobe = nprobe
                t = time.perf_counter()
                results[key] = ix.search(xq, K)[1]
                times[key].append(time.perf_counter() - t)
        for (lib, desc), ix in systems.items():
            row = {"dataset": name, "n": len(xb), "d": d, "nlist": nlist, "nprobe": nprobe, "lib": lib,
                   "index": desc, "k": K, "nq": len(xq),
                   "bytes_per_vector": _faiss_bytes(ix) if lib == "faiss-cpu" else _our_bytes(ix),
                   "recall_at_10": recall_at_k(results[(lib, desc)], truth, K),
                   "qps": len(xq) / float(np.median(times[(lib, desc)])), "cpu_busy_before": round(busy, 2)}
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(row, flush=True)


def main(path):
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as out:
        out.write(json.dumps({"machine": machine_info("cpu"), "threads": threads}) + "\n")
        xb, xq, _ = make_clustered(100_000, 64, NQ, seed=7)
        run("clustered-100k-d64", xb, xq, 256, out)
        try:
            xb, xq, _, _ = make_minilm(NQ, max_shards=2)
            run("minilm-39k-d384", xb, xq, 256, out)
        except DatasetUnavailable as e:
            print(e)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/sq/cpu.jsonl")
