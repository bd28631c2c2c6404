"""p50 latency against batch size from bench.py's JSONL: one panel per (dataset, index).

    python -m benchmarks.latency.plot results/h200.jsonl results/h200-latency.png
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, dst):
    series = defaultdict(dict)
    for line in open(src):
        r = json.loads(line)
        if "p50_ms" in r and "index" in r:
            if r.get("busy_core"):
                r["variant"] += " (one core busy)"
            series[(r["dataset"], r["index"])][(r["library"], r["variant"])] = series[(r["dataset"], r["index"])].get(
                (r["library"], r["variant"]), []) + [(r["nq"], r["p50_ms"])]
    panels = sorted(series)
    cols = 4
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, key in zip(axes.flat, panels):
        for (lib, variant), pts in sorted(series[key].items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=f"{lib} {variant}")
        ax.set(xscale="log", yscale="log", title=" ".join(key), xlabel="nq", ylabel="p50 ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(dst, dpi=90)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
