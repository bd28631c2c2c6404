"""Plot bench_large's JSONL: QPS against recall@10 (nprobe beside each point), one panel per corpus,
with the issue's targets drawn. python -m benchmarks.large.plot results/h200.jsonl [out.png]"""
from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str, out: str | None = None) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in open(path) if line.strip()]
    curves = defaultdict(list)
    for r in rows:
        if r.get("kind") == "search":
            label = r["index"] + (f" k_factor={r['k_factor']:g}" if r.get("k_factor") else "")
            curves[label].append(r)
    panels = [(",Flat", "10M x 128 IVF-Flat", (0.99, 300_000)), (",PQ", "100M x 96 IVF-PQ (+ re-ranking)", (0.9, 100_000))]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, (key, title, (r_goal, q_goal)) in zip(axes, panels):
        for label, pts in curves.items():
            if key not in label:
                continue
            pts.sort(key=lambda r: r["nprobe"])
            ax.plot([p["recall10"] for p in pts], [p["qps"] for p in pts], "o-", label=label)
            for p in pts:
                ax.annotate(str(p["nprobe"]), (p["recall10"], p["qps"]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        ax.axhline(q_goal, color="grey", ls=":", lw=1)
        ax.axvline(r_goal, color="grey", ls=":", lw=1)
        ax.set(title=title + " (nq=10,000; nprobe at points)", xlabel="recall@10", ylabel="queries / s", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    machine = next((r for r in rows if r.get("kind") == "machine"), {})
    fig.suptitle(f"{machine.get('gpu_name', '?')}, torch {machine.get('torch', '?')}; dotted: the issue's targets")
    fig.tight_layout()
    out = out or path.rsplit(".", 1)[0] + ".png"
    fig.savefig(out, dpi=110)
    return out


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
