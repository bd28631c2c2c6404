"""Draws PNG plots from benchmark JSONL rows.

    python -m benchmarks.plot benchmarks/results/cpu.jsonl [--outdir benchmarks/results/plots]

Per dataset: ``<preset>-<dataset>-recall-qps.png`` (the nprobe sweep: recall@k on x, QPS on a log y
axis; exact brute force as a single point at recall 1) and ``<preset>-<dataset>-qps-nq.png`` (QPS
against nq, log-log, at the headline nprobe; recall in the legend).
"""
from __future__ import annotations

import argparse
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .summarize import load  # noqa: E402

COLORS = {"torch-ivf": "tab:blue", "faiss-cpu": "tab:orange", "torch-ivf-0.1.1": "tab:green",
          "torch-exact": "tab:gray"}
STYLES = {"float32": "-", "float16": "--", "bfloat16": ":"}
MARKERS = {"auto": "o", "grouped": "s", "matrix": "^", "ivfflat": "D", "csr": "s", "default": "v",
           "exact": "*"}


def _label(lib, mode, dtype):
    return f"{lib} {mode} {dtype}"


def plot_file(path: str, outdir: str) -> list[str]:
    rows = load(path)
    preset = rows[0].get("preset", "run") if rows else "run"
    os.makedirs(outdir, exist_ok=True)
    written = []
    by_ds = defaultdict(list)
    for r in rows:
        by_ds[r["dataset"]].append(r)
    for ds, rs in by_ds.items():
        machine = rs[0]["machine"]
        where = machine.get("gpu") or f"{machine['cpu']} ({machine['cores']} cores)"
        # recall - QPS
        sw = [r for r in rs if r.get("sweep") == "nprobe" and "qps" in r]
        if sw:
            snq = sw[0]["nq"]
            fig, ax = plt.subplots(figsize=(7, 5))
            series = defaultdict(list)
            for r in sw:
                series[(r["library"], r["mode"], r["dtype"])].append(r)
            for (lib, mode, dt), pts in sorted(series.items()):
                pts.sort(key=lambda r: r["nprobe"])
                ax.plot([p["recall"] for p in pts], [p["qps"] for p in pts],
                        STYLES.get(dt, "-"), marker=MARKERS.get(mode, "o"), color=COLORS.get(lib),
                        label=_label(lib, mode, dt))
                for p in pts:
                    ax.annotate(str(p["nprobe"]), (p["recall"], p["qps"]), fontsize=7,
                                textcoords="offset points", xytext=(3, 3))
            ex = [r for r in rs if r["library"] == "torch-exact" and r.get("nq") == snq and "qps" in r]
            for r in ex:
                ax.plot([r["recall"]], [r["qps"]], marker="*", markersize=12, linestyle="none",
                        color=COLORS["torch-exact"] if r["dtype"] == "float32" else "black",
                        label=f"torch exact {r['dtype']}")
            ax.set_yscale("log")
            ax.set_xlabel(f"recall@{sw[0]['k']} (vs exact)")
            ax.set_ylabel("QPS")
            ax.set_title(f"{ds}: recall vs QPS, nq={snq} (labels: nprobe)\n{where}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
            fn = os.path.join(outdir, f"{preset}-{ds}-recall-qps.png")
            fig.tight_layout()
            fig.savefig(fn, dpi=110)
            plt.close(fig)
            written.append(fn)
        # QPS - nq
        nqr = [r for r in rs if r.get("sweep") == "nq" and "qps" in r]
        if nqr:
            fig, ax = plt.subplots(figsize=(7, 5))
            series = defaultdict(list)
            for r in nqr:
                series[(r["library"], r["mode"], r["dtype"])].append(r)
            for (lib, mode, dt), pts in sorted(series.items()):
                pts.sort(key=lambda r: r["nq"])
                rec = min(p["recall"] for p in pts)
                ax.plot([p["nq"] for p in pts], [p["qps"] for p in pts], STYLES.get(dt, "-"),
                        marker=MARKERS.get(mode, "o"), color=COLORS.get(lib),
                        label=f"{_label(lib, mode, dt)} (R>={rec:.3f})")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("nq (queries per search call)")
            ax.set_ylabel("QPS")
            npb = next((r["nprobe"] for r in nqr if r.get("nprobe")), None)
            ax.set_title(f"{ds}: QPS vs nq (nprobe={npb}, k={nqr[0]['k']})\n{where}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6, ncol=2)
            fn = os.path.join(outdir, f"{preset}-{ds}-qps-nq.png")
            fig.tight_layout()
            fig.savefig(fn, dpi=110)
            plt.close(fig)
            written.append(fn)
    return written


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("jsonl", nargs="+")
    ap.add_argument("--outdir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                     "results", "plots"))
    a = ap.parse_args(argv)
    for p in a.jsonl:
        for fn in plot_file(p, a.outdir):
            print(fn)


if __name__ == "__main__":
    main()
