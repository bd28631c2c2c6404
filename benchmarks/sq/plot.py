"""Recall@10 against QPS per data set for the SQ benchmark rows, bytes per vector in the legend.

    python -m benchmarks.sq.plot benchmarks/results/sq/cpu.jsonl
"""
from __future__ import annotations

import json
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(path):
    rows = [r for r in map(json.loads, open(path)) if "dataset" in r]
    by_ds = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_ds[r["dataset"]][(r["lib"], r["index"], r["bytes_per_vector"])].append(r)
    for ds, series in by_ds.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for (lib, index, nbytes), rs in sorted(series.items()):
            rs = sorted(rs, key=lambda r: r["nprobe"])
            ax.plot([r["recall_at_10"] for r in rs], [r["qps"] for r in rs], "o-" if lib == "torch-ivf" else "s--",
                    label=f"{lib} {index} ({nbytes:.0f} B/vec)")
        ax.set_xlabel("recall@10 (nprobe 4, 16, 64)")
        ax.set_ylabel("QPS (1000-query batches)")
        ax.set_yscale("log")
        ax.set_title(ds)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        out = os.path.join(os.path.dirname(path), f"{os.path.basename(path).removesuffix('.jsonl')}-{ds}.png")
        fig.tight_layout()
        fig.savefig(out, dpi=110)
        print(out)


if __name__ == "__main__":
    main(sys.argv[1])
