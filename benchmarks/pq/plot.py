"""Recall@10-QPS plot and a markdown summary from a bench_pq JSONL file.

    python -m benchmarks.pq.plot benchmarks/pq/results/cpu.jsonl
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def best_qps_at(rows, index, target, key="recall@10"):
    ok = [r["qps"] for r in rows if r["index"] == index and r[key] >= target]
    return max(ok) if ok else None


def summarize(rows) -> str:
    machine = next((r for r in rows if r["kind"] == "machine"), {})
    out = [f"# IVFPQ / Panorama benchmark ({machine.get('device')})", "",
           f"machine: {machine.get('cpu', {}).get('Model name')} x{machine.get('cpu_count')} cpus, "
           f"torch {machine.get('torch')} ({machine.get('torch_threads')} threads)"
           + (f", GPU {machine['gpu']}" if machine.get("gpu") else ""), ""]
    by_ds = defaultdict(list)
    for r in rows:
        if "dataset" in r:
            by_ds[r["dataset"]].append(r)
    for ds, rs in by_ds.items():
        out += [f"## {ds}", ""]
        up = next((r for r in rs if r["kind"] == "query_upload"), None)
        if up:
            out += [f"Our indexes are timed with the queries already on their device; copying them there takes "
                    f"{up['median_s'] * 1e3:.2f} ms more per batch of {up['nq']} (faiss takes numpy).", ""]
        out += ["| index | bytes/vector (nominal) | measured | train+add s |", "|---|---|---|---|"]
        for r in rs:
            if r["kind"] == "build":
                out.append(f"| {r['index']} | {r['bytes_per_vector_nominal']} | {r.get('bytes_per_vector_measured', '')} | {r['train_add_s']} |")
        out += ["", "Panorama vs our IVFPQ with the same codebooks (identical results required):", "",
                "| nprobe | identical | dims scanned | Panorama wave s | Panorama grouped s | IVFPQ s (best mode) | speedup | recall@10 with refine (tie-aware) |",
                "|---|---|---|---|---|---|---|---|"]
        search = [r for r in rs if r["kind"] == "search"]
        for r in rs:
            if r["kind"] == "panorama_vs_ivfpq":
                rr = next((s for s in search if s["index"] == "ours IVFPQPanorama+RFlat" and s["nprobe"] == r["nprobe"]), {})
                out.append(f"| {r['nprobe']} | {r['identical']} | {r['ratio_dims_scanned']} | {r['pano_wave_s']} | "
                           f"{r['pano_grouped_s']} | {min(r['ivfpq_auto_s'], r['ivfpq_other_mode_s'] or float('inf'))} | {r['speedup']} | "
                           f"{rr.get('recall@10', '')} ({rr.get('recall@10_tie_aware', '')}) |")
        for key in ("recall@10", "recall@10_tie_aware"):
            out += ["", f"Best QPS reaching a {key} target:", "", "| index | >=0.7 | >=0.8 | >=0.9 | >=0.95 |",
                    "|---|---|---|---|---|"]
            for name in dict.fromkeys(s["index"] for s in search):
                out.append(f"| {name} | " + " | ".join(str(best_qps_at(search, name, t, key) or "-")
                                                     for t in (0.7, 0.8, 0.9, 0.95)) + " |")
        out += ["", "All points (nprobe: QPS / recall@10 / tie-aware / dims scanned):", "",
                "| index | " + " | ".join(str(p) for p in sorted({s["nprobe"] for s in search})) + " |",
                "|---|" + "---|" * len({s["nprobe"] for s in search})]
        for name in dict.fromkeys(s["index"] for s in search):
            cells = []
            for p in sorted({s["nprobe"] for s in search}):
                r = next((s for s in search if s["index"] == name and s["nprobe"] == p), None)
                cells.append("-" if r is None else f"{r['qps']:.0f} / {r['recall@10']:.3f} / {r['recall@10_tie_aware']:.3f}"
                             + (f" / {r['ratio_dims_scanned']:.2f}" if "ratio_dims_scanned" in r else ""))
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def plot(rows, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datasets = list(dict.fromkeys(r["dataset"] for r in rows if r.get("kind") == "search"))
    fig, axes = plt.subplots(1, len(datasets), figsize=(7 * len(datasets), 5), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        rs = [r for r in rows if r.get("kind") == "search" and r["dataset"] == ds]
        for name in dict.fromkeys(r["index"] for r in rs):
            pts = sorted((r["recall@10_tie_aware"], r["qps"]) for r in rs if r["index"] == name)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name,
                    linestyle="--" if name.startswith("faiss") else "-")
        ax.set_yscale("log")
        ax.set_xlabel("recall@10, tie-aware (exact float32 ground truth; duplicates count as hits)")
        ax.set_ylabel("queries / s")
        ax.set_title(ds)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main():
    path = sys.argv[1]
    rows = load(path)
    base = path.rsplit(".", 1)[0]
    plot(rows, base + ".png")
    with open(base + ".md", "w") as f:
        f.write(summarize(rows))
    print(summarize(rows))


if __name__ == "__main__":
    main()
