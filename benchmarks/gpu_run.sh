#!/usr/bin/env bash
# The h100 preset on the GPU machine. Prepare first, here: bash benchmarks/prepare_device.sh
# Then, with the device tool:  run(command="bash benchmarks/gpu_run.sh", carry=[".whl", ".data"],
#                                 kind="nvidia-h100-x1", timeout_s=600)
# Finishes within 9 minutes (the run stops starting new work after BENCH_DEADLINE_S, 420 s by default,
# and is killed at 500 s); writes h100.jsonl, h100.machine.json, run.log and gpu.txt into $OUT and
# prints the summary tables. Afterwards, here:
#   cp <files_at>/h100.jsonl <files_at>/h100.machine.json benchmarks/results/
#   python -m benchmarks.plot benchmarks/results/h100.jsonl
set -u
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/benchmarks/results/gpu-out}
mkdir -p "$OUT"
T0=$(date +%s)
PY=${PY:-python3}
SITE=${SITE:-/tmp/bench-site}           # faiss-cpu goes here (on PYTHONPATH)
OLDDIR=${OLDDIR:-/tmp/torch-ivf-0.1.1}   # torch-ivf 0.1.1 here (only its subprocess puts it on sys.path)
# faiss-cpu into /tmp/site (on PYTHONPATH); torch-ivf 0.1.1 into its own folder, which only the
# benchmark's subprocess puts first on sys.path (both import as torch_ivf).
if ls .whl/faiss_cpu-*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    .whl/faiss_cpu-*.whl && export PYTHONPATH="$SITE"
else
  echo "no faiss-cpu wheel in .whl/: faiss-cpu will be skipped"
fi
OLD_ARGS=""
if ls .whl/torch_ivf-0.1.1-*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --ignore-requires-python \
    --target "$OLDDIR" .whl/torch_ivf-0.1.1-*.whl && OLD_ARGS="--old-dir $OLDDIR"
else
  echo "no torch-ivf 0.1.1 wheel in .whl/: the earlier package will be skipped"
fi
export BENCH_DATA_DIR=$PWD/.data          # MiniLM shards carried in .data/ (skipped if absent)
export BENCH_CACHE_DIR=/tmp/bench-cache   # generated data + ground truth: local disk, not $OUT
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; nproc; \
  $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"; \
  $PY -c "import faiss; print('faiss', faiss.__version__, 'threads', faiss.omp_get_max_threads())"; } \
  > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
echo "setup took $(( $(date +%s) - T0 )) s"
set -o pipefail
timeout -k 10 500 $PY -m benchmarks.run --preset "${BENCH_PRESET:-h100}" --out "$OUT/h100.jsonl" $OLD_ARGS \
  --deadline-s "${BENCH_DEADLINE_S:-420}" 2>&1 | tee "$OUT/run.log"
rc=$?
echo "benchmarks.run exit $rc; total $(( $(date +%s) - T0 )) s"
if [ $rc -ne 0 ] && [ -s "$OUT/h100.jsonl" ]; then
  $PY -m benchmarks.summarize "$OUT/h100.jsonl"      # partial results still summarised
fi
exit 0
