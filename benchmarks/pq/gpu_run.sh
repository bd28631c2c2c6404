#!/usr/bin/env bash
# IVFPQ / Panorama figures on the GPU machine (torch + Triton; faiss-cpu from a carried wheel; no network).
# Before the run, on the dev machine:  python -m benchmarks.pq.shards pack benchmarks/pq/.data  (all four
#   MiniLM shards, compressed) and bash benchmarks/prepare_device.sh (faiss-cpu wheel in .whl/);
#   carry [".whl", "benchmarks/pq/.data"].
# DATASETS=minilm or clustered runs one of the two (each fits a 10-minute call).
# On the device, from the repository root:  bash benchmarks/pq/gpu_run.sh
# Results: $OUT/pq-cuda.jsonl (+ .png, .md) when $OUT is set, else benchmarks/pq/results/cuda.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUTDIR="${OUT:-benchmarks/pq/results}"
mkdir -p "$OUTDIR"
FILE="$OUTDIR/$( [ -n "${OUT:-}" ] && echo "pq-cuda-${DATASETS:-all}.jsonl" || echo cuda.jsonl )"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))"
python -m benchmarks.pq.shards unpack benchmarks/pq/.data
FAISS=--no-faiss
if ls .whl/faiss_cpu-*.whl >/dev/null 2>&1; then
  python -m pip install -q --no-index --no-deps --no-compile --target /tmp/pq-site .whl/faiss_cpu-*.whl \
    && export PYTHONPATH=/tmp/pq-site && FAISS=
fi
# pip-installed package or not: the repo root is on sys.path through -m.
python -m benchmarks.pq.bench_pq --device cuda $FAISS --data-dir benchmarks/pq/.data \
    --datasets "${DATASETS:-minilm,clustered}" \
    --shards "${SHARDS:-4}" --nq "${NQ:-5000}" --n-clustered "${NCLUSTERED:-100000}" \
    --n-train 100000 --pq-max-train 65536 --niter 20 --pq-niter 25 --repeats 5 \
    --nprobes "${NPROBES:-4,8,16,32,64,128}" --out "$FILE" 2>&1 | tail -n 200
python -m benchmarks.pq.plot "$FILE" >/dev/null && echo "wrote $FILE and its .png/.md" || echo "wrote $FILE (plot skipped: matplotlib missing?)"
