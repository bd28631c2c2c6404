#!/usr/bin/env bash
# The store figures of issue 5 on the GPU machine, in one run: filter starvation, delete/add rounds and
# from_documents with MiniLM on 20,000 real passages (embedding vs indexing time).
#
# Here first:  PYTHON=/work/venv/bin/python bash benchmarks/stores/prepare_device.sh   (fills .gpu_stores/)
# On the device, from the repository root, carrying [".gpu_stores"]:  bash benchmarks/stores/gpu_run.sh
#
# The device has torch, sentence-transformers, transformers but no langchain-core, no MiniLM package, no
# network and no data folder: the wheels go into $SITE, the model is the carried float16 copy (run in
# float32, as MiniLMEmbeddings runs), and the MiniLM shard the store benchmarks read is embedded there from
# the carried passages (checked against the first 256 rows of the real shards). faiss / langchain-community
# are not carried (too large beside the model), so the FAISS store is not measured on the GPU.
#
# Results in $OUT (else /tmp/stores-out): stores-<tag>.json/.md, from_documents-fp16-<tag>.json, log.txt,
# gpu.txt. Everything is bounded to finish in about 7 minutes.
# Knobs (for a CPU dry run here): PYTHON, SITE, EMBED_DOCS, TAG, PREBUILT_SHARDS (a folder with the real
# manpages-minilm-*.npy: skip embedding them), MAIN_TIMEOUT, BUDGET (seconds after which the
# supplementary float16 run is skipped), FP16_TIMEOUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3}"
CARRY="${CARRY:-.gpu_stores}"
SITE="${SITE:-/tmp/site}"
OUTDIR="${OUT:-/tmp/stores-out}"
DATA="${DATA:-/tmp/bench_data}"
EMBED_DOCS="${EMBED_DOCS:-20000}"
mkdir -p "$OUTDIR" "$DATA"
start=$SECONDS
step() { echo; echo "== [$((SECONDS - start)) s] $*"; }

main() {  # (not indented: the whole run, so that its output goes to the log and the terminal)

[ -d "$CARRY/minilm-f16" ] && [ -d "$CARRY/wheels" ] || { echo "no $CARRY/: run prepare_device.sh here and carry it"; exit 2; }
CARRY=$(cd "$CARRY" && pwd)
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc) > "$OUTDIR/gpu.txt" 2>&1 || true
cat "$OUTDIR/gpu.txt"

step "wheels -> $SITE"
rm -rf "$SITE"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$CARRY"/wheels/*.whl || exit 3
export PYTHONPATH="$SITE:$PWD:$PWD/integrations" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export BENCH_DATA_DIR="$DATA" BENCH_MINILM_DIR="$CARRY/minilm-f16"
"$PY" - <<'EOF' || exit 4
import importlib, os, sys
import torch, sentence_transformers, transformers
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "-",
      "sentence-transformers", sentence_transformers.__version__, "transformers", transformers.__version__)
for name in ("torch_ivf", "langchain_torch_ivf", "langchain_core", "langsmith", "pydantic"):
    mod = importlib.import_module(name)
    print(f"{name:22s} {getattr(mod, '__version__', ''):10s} {os.path.dirname(mod.__file__)}")
import torch_ivf
assert torch_ivf.__file__.startswith(os.getcwd()), "torch_ivf must come from this checkout"
from langchain_torch_ivf import TorchIVFVectorStore  # noqa: F401
EOF

step "data -> $DATA"
cp "$CARRY/data/manpages-passages.jsonl.gz" "$DATA/"
if [ -n "${PREBUILT_SHARDS:-}" ]; then
    ln -sf "$PREBUILT_SHARDS"/manpages-minilm-*.npy "$DATA/"
else
    timeout 150 "$PY" -m benchmarks.stores.embed_passages --model-dir "$BENCH_MINILM_DIR" \
        --rows "$(cat "$CARRY/data/ROWS")" --out "$DATA/manpages-minilm-0.npy" \
        --check "$CARRY/data/minilm-head-256.npy" 2>&1 | grep -v "Loading weights" || exit 5
fi
[ -f "$DATA/manpages-minilm-0.npy" ] || exit 5

if [ -z "${TAG:-}" ]; then
    TAG=$("$PY" -c "
import torch
n = torch.cuda.get_device_name().lower() if torch.cuda.is_available() else ''
print(next((t for t in ('h100', 'h200', 'a100') if t in n), 'gpu' if n else 'cpu-dryrun'))")
fi

step "benchmarks.stores.run --tag $TAG --embed-docs $EMBED_DOCS (float32)"
timeout "${MAIN_TIMEOUT:-330}" "$PY" -m benchmarks.stores.run --tag "$TAG" --embed-docs "$EMBED_DOCS" \
    --model-dir "$BENCH_MINILM_DIR" --embed-dtype float32 2>&1 | grep -v "Loading weights"
rc_main=${PIPESTATUS[0]}
cp "benchmarks/results/stores-$TAG.json" "benchmarks/results/stores-$TAG.md" "$OUTDIR/" 2>/dev/null

left=$((${BUDGET:-440} - (SECONDS - start)))
if [ "$rc_main" -eq 0 ] && [ "$left" -gt 40 ]; then
    step "from_documents in float16 (supplementary; ${left} s left)"
    timeout "${FP16_TIMEOUT:-$left}" "$PY" -m benchmarks.stores.from_documents --n "$EMBED_DOCS" \
        --model-dir "$BENCH_MINILM_DIR" --dtype float16 2>/dev/null > "$OUTDIR/from_documents-fp16-$TAG.json"
    cat "$OUTDIR/from_documents-fp16-$TAG.json"
fi

step "summary (main run exit $rc_main)"
"$PY" - "$OUTDIR/stores-$TAG.json" <<'EOF'
import json, sys
try:
    res = json.load(open(sys.argv[1]))
except OSError:
    sys.exit("no results file")
m = res["machine"]
print(f"{res['tag']}: {m.get('gpu', 'no GPU')}, {m['cpus']} CPUs, torch {m['torch']}, started {res['started']}, "
      f"finished {res.get('finished', 'NOT (partial)')}")
fs = res.get("filter_starvation")
if fs:
    for name, s in fs["stores"].items():
        ok = s["queries_with_k"] == s["queries"]
        print(f"filter starvation {'PASS' if ok else 'FAIL'}: {name}: {s['queries_with_k']}/{s['queries']} queries got k, "
              f"recall@k {s['recall_at_k']}, {s['median_ms_per_query']} ms/query")
    print("  ", fs.get("faiss_store", "FAISS store measured"))
dr = res.get("delete_add_rounds")
if dr:
    for name, s in dr["stores"].items():
        bad = sum(r["missing"] + r["wrong"] + r["resurrected"] + r["search_errors"] for r in s["rounds"])
        print(f"delete/add rounds {'PASS' if bad == 0 else 'FAIL'}: {name}: missing+wrong+resurrected+errors = {bad}, "
              f"not at rank 1 = {[r['search_not_at_rank1'] for r in s['rounds']]}")
fd = res.get("from_documents")
if fd:
    share = fd["indexing_share"]
    print(f"from_documents {'PASS' if share < 0.05 else 'FAIL'}: {fd['documents']} passages on {fd['device']} "
          f"({fd.get('model')}): total {fd['total_s']} s = embedding {fd['embedding_s']} s + indexing "
          f"{fd['indexing_s']} s -> indexing {100 * share:.3f}% (< 5% required)")
EOF
step "done; files in $OUTDIR:"
ls -la "$OUTDIR"
return "$rc_main"
}

main 2>&1 | tee "$OUTDIR/log.txt"
exit "${PIPESTATUS[0]}"
