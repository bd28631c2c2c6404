"""Markdown tables from the JSONL rows.

    python -m benchmarks.summarize benchmarks/results/cpu.jsonl [--markdown]
Per dataset: QPS with recall beside it for every library x mode x dtype, per nq (at the headline
nprobe); the recall-QPS sweep; add times and memory; for this project, which forced mode wins at each nq
and how far ``auto`` is from it.
"""
from __future__ import annotations

import argparse
import json
from collections import OrderedDict, defaultdict

LIB_ORDER = {"torch-ivf": 0, "faiss-cpu": 1, "torch-ivf-0.1.1": 2, "torch-exact": 3}


def load(path: str) -> list[dict]:
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def _fmt_qps(q: float) -> str:
    if q >= 1e6:
        return f"{q / 1e6:.2f}M"
    if q >= 1e4:
        return f"{q / 1e3:.0f}k"
    if q >= 1e3:
        return f"{q / 1e3:.1f}k"
    return f"{q:.0f}"


def _rec(r) -> str:
    """recall, and the tie-aware recall beside it where duplicates in the data make them differ."""
    rt = r.get("recall_tie")
    if rt is not None and rt - r["recall"] > 0.005:
        return f"{r['recall']:.3f}; ties {rt:.3f}"
    return f"{r['recall']:.3f}"


def _key(r):
    return (LIB_ORDER.get(r["library"], 9), r["library"], r.get("mode", ""), r.get("dtype", ""))


def tables(rows: list[dict]) -> str:
    out = []
    by_ds: "OrderedDict[str, list]" = OrderedDict()
    for r in rows:
        by_ds.setdefault(r["dataset"], []).append(r)
    for ds, rs in by_ds.items():
        r0 = rs[0]
        nqrows = [r for r in rs if r.get("sweep") == "nq" and "qps" in r]
        anyq = [r for r in rs if "qps" in r]
        if not anyq:
            continue
        nprobe = next((r["nprobe"] for r in nqrows if r.get("nprobe")), None)
        k = next((r["k"] for r in anyq if r.get("k")), None)
        nlist = next((r["nlist"] for r in anyq if r.get("nlist")), None)
        out.append(f"\n### {ds}: n={r0['n']:,} d={r0['d']} metric={r0['metric']}, nlist={nlist}, "
                   f"nprobe={nprobe}, k={k} ({r0['machine'].get('gpu') or r0['machine']['cpu']}, "
                   f"{r0['machine']['cores']} cores)\n")
        nqs = sorted({r["nq"] for r in nqrows})
        if nqs:
            out.append("QPS (recall@k) per nq; nq=1 also shows p50/p99 latency.\n")
        if nqs:
            out.append("| library | mode | dtype | " + " | ".join(f"nq={n}" for n in nqs) + " |")
            out.append("|---|---|---|" + "---:|" * len(nqs))
        cells = defaultdict(dict)
        for r in nqrows:
            cells[_key(r)][r["nq"]] = r
        skipped = defaultdict(dict)
        for r in rs:
            if r.get("sweep") == "nq" and "skipped" in r:
                skipped[_key(r)][r["nq"]] = r
        for key in sorted(set(cells) | set(skipped)):
            line = f"| {key[1]} | {key[2]} | {key[3]} |"
            for n in nqs:
                r = cells[key].get(n)
                if r is None:
                    line += " skipped |" if n in skipped[key] else " – |"
                    continue
                c = f" {_fmt_qps(r['qps'])} ({_rec(r)})"
                if n == 1 and "p50_ms" in r:
                    c += f" {r['p50_ms']:.2f}/{r['p99_ms']:.2f} ms"
                line += c + " |"
            out.append(line)
        # auto vs best forced mode (this project)
        ours = [r for r in nqrows if r["library"] == "torch-ivf"]
        if ours:
            out.append("\nThis project: `auto` against the best forced mode, per nq and dtype.\n")
            out.append("| dtype | nq | best forced | its QPS | auto QPS | auto/best | auto chose |")
            out.append("|---|---:|---|---:|---:|---:|---|")
            for dt in sorted({r["dtype"] for r in ours}):
                for n in nqs:
                    forced = [r for r in ours if r["dtype"] == dt and r["nq"] == n and r["mode"] != "auto"]
                    auto = [r for r in ours if r["dtype"] == dt and r["nq"] == n and r["mode"] == "auto"]
                    if not forced or not auto:
                        continue
                    best = max(forced, key=lambda r: r["qps"])
                    ratio = auto[0]["qps"] / best["qps"]
                    chose = auto[0].get("auto_chose")
                    if ratio >= 0.9:
                        flag = ""
                    elif chose == best["mode"]:
                        flag = " (same path as best: noise)"
                    else:
                        flag = " **miss**"
                    out.append(f"| {dt} | {n} | {best['mode']} | {_fmt_qps(best['qps'])} | "
                               f"{_fmt_qps(auto[0]['qps'])} | {ratio:.2f}{flag} | "
                               f"{auto[0].get('auto_chose', '?')} |")
        # recall-QPS sweep
        sw = [r for r in rs if r.get("sweep") == "nprobe" and "qps" in r]
        if sw:
            snq = sw[0]["nq"]
            nps = sorted({r["nprobe"] for r in sw})
            out.append(f"\nnprobe sweep at nq={snq}: QPS (recall@k).\n")
            out.append("| library | mode | dtype | " + " | ".join(f"nprobe={p}" for p in nps) + " |")
            out.append("|---|---|---|" + "---:|" * len(nps))
            cells = defaultdict(dict)
            for r in sw:
                cells[_key(r)][r["nprobe"]] = r
            for key in sorted(cells):
                line = f"| {key[1]} | {key[2]} | {key[3]} |"
                for p in nps:
                    r = cells[key].get(p)
                    line += f" {_fmt_qps(r['qps'])} ({_rec(r)}) |" if r else " – |"
                out.append(line)
        # build / add / memory
        builds = OrderedDict()
        for r in rs:
            if "add_s" in r and "library" in r and r.get("dtype"):
                builds.setdefault((r["library"], r["dtype"]), r)
        adds = {(r["library"], r["dtype"]): r for r in rs if r.get("sweep") == "add"}
        if builds:
            out.append("\nBuild, add and memory.\n")
            out.append("| library | dtype | train s | add N s | add 1,000 into N ms | bytes/vector (raw) |")
            out.append("|---|---|---:|---:|---:|---:|")
            for (lib, dt), r in sorted(builds.items(), key=lambda kv: LIB_ORDER.get(kv[0][0], 9)):
                a = adds.get((lib, dt))
                a_ms = f"{a['add1000_s'] * 1e3:.1f}" if a else "–"
                out.append(f"| {lib} | {dt} | {r.get('train_s', 0):.2f} | {r['add_s']:.2f} | {a_ms} | "
                           f"{r.get('bytes_per_vector', 0):.0f} ({r.get('raw_bytes_per_vector', 0)}) |")
    return "\n".join(out)


def headline(rows: list[dict]) -> str:
    """Ratios at the headline point: ours (best of modes, and auto) vs faiss / earlier csr / exact."""
    hs = [r for r in rows if r.get("headline") and r.get("sweep") == "nq" and "qps" in r]
    if not hs:
        return ""
    out = ["\nHeadline ratios (same run, same data):"]
    for n in sorted({r["nq"] for r in hs}):
        at = [r for r in hs if r["nq"] == n]

        def best(lib, mode=None, dtype="float32"):
            c = [r for r in at if r["library"] == lib and r["dtype"] == dtype
                 and (mode is None or r["mode"] == mode)]
            return max(c, key=lambda r: r["qps"]) if c else None

        ours_auto = best("torch-ivf", "auto")
        ours_best = best("torch-ivf")
        fa = best("faiss-cpu")
        oc = best("torch-ivf-0.1.1", "csr")
        od = best("torch-ivf-0.1.1", "default")
        ex = best("torch-exact")
        parts = []
        for name, r in (("ours auto", ours_auto), ("ours best", ours_best), ("faiss", fa),
                        ("0.1.1 csr", oc), ("0.1.1 default", od), ("exact f32", ex)):
            if r:
                parts.append(f"{name} {_fmt_qps(r['qps'])} (R {r['recall']:.3f})")
        line = f"  nq={n}: " + ", ".join(parts)
        if ours_auto and fa:
            line += f" | auto/faiss {ours_auto['qps'] / fa['qps']:.2f}x"
        if ours_auto and oc:
            line += f", auto/0.1.1-csr {ours_auto['qps'] / oc['qps']:.2f}x"
        out.append(line)
    return "\n".join(out)


def print_summary(path: str, markdown: bool = True) -> None:
    rows = load(path)
    print(tables(rows))
    print(headline(rows))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("jsonl", nargs="+")
    a = ap.parse_args()
    for p in a.jsonl:
        print_summary(p)
