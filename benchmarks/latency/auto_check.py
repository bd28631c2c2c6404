"""Is "auto" within 10% of the best forced path? Reads gpu_run.py's JSONL and prints, per (dataset,
index), auto's p50 over the best p50 of every torch-ivf variant at each nq, and the same for the paths
of a GPU without Triton ("no-triton", auto's choice there, against "no-triton <mode>").

    python -m benchmarks.latency.auto_check results/h200-run4.jsonl
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict

LIMIT = 1.10


def ratios(rows, auto: str, pool) -> dict:
    """{(dataset, index): {nq: (auto p50 / best p50, best variant)}} over the variants pool(name) admits."""
    p50 = defaultdict(dict)
    for r in rows:
        if r.get("library") == "torch-ivf" and "p50_ms" in r:
            p50[(r["dataset"], r["index"], r["nq"])][r["variant"]] = r["p50_ms"]
    out = defaultdict(dict)
    for (ds, idx, nq), by in p50.items():
        cand = {v: t for v, t in by.items() if pool(v)}
        if auto in by and len(cand) > 1:
            best = min(cand, key=cand.get)
            out[(ds, idx)][nq] = (by[auto] / cand[best], best)
    return out


def table(title: str, found: dict) -> list[str]:
    nqs = sorted({nq for per in found.values() for nq in per})
    lines = [f"| {title} | " + " | ".join(f"nq={n}" for n in nqs) + " |", "|---|" + "---:|" * len(nqs)]
    for key in sorted(found):
        cells = []
        for n in nqs:
            if n not in found[key]:
                cells.append("")
                continue
            ratio, best = found[key][n]
            cells.append(f"**{ratio:.2f}** ({best})" if ratio > LIMIT else f"{ratio:.2f}")
        lines.append(f"| {' '.join(key)} | " + " | ".join(cells) + " |")
    return lines


def main(path: str) -> None:
    rows = [json.loads(line) for line in open(path) if line.strip()]
    with_triton = ratios(rows, "auto", lambda v: True)
    without = ratios(rows, "no-triton", lambda v: v.startswith("no-triton"))
    print("\n".join(table("auto / best forced path", with_triton)))
    print()
    print("\n".join(table("no Triton: auto / best forced path", without)))
    misses = sum(r > LIMIT for per in (*with_triton.values(), *without.values()) for r, _ in per.values())
    total = sum(len(per) for per in (*with_triton.values(), *without.values()))
    print(f"\n{total - misses} of {total} points within {LIMIT:.2f}x of the best path")


if __name__ == "__main__":
    main(sys.argv[1])
