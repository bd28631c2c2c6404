#!/usr/bin/env bash
# The lead's H200 calls for issue 16, back to back on one warm machine (prepare first, here:
# bash benchmarks/prepare_device.sh, plus pytest/hypothesis wheels in .whl for the GPU tests):
#   run(command="bash benchmarks/latency/h200_all.sh tune", carry=[".whl", ".data"])   # ~420 s
#   run(command="bash benchmarks/latency/h200_all.sh sweep", carry=[".whl", ".data"])  # ~330 s
# tune: the IVFFlat/Flat and PQ-side tuning scripts, then the GPU tests; sweep: gpu_run over every part.
set -u
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/h200-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/faiss_cpu-*.whl $(ls .whl/pytest-*.whl .whl/pluggy-*.whl .whl/iniconfig-*.whl .whl/hypothesis-*.whl \
  .whl/sortedcontainers-*.whl .whl/attrs-*.whl 2>/dev/null)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --ignore-requires-python \
  --target /tmp/old .whl/torch_ivf-0.1.1-*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/integrations BENCH_DATA_DIR=$PWD/.data BENCH_CACHE_DIR=/tmp/bench-cache
case "${1:-}" in
  tune)
    timeout 110 python3 -m benchmarks.latency.flat_small --out "$OUT/h200-gpuflat-2.jsonl" --budget 68 --big \
      > "$OUT/flat_small.log" 2>&1; echo "flat_small rc $?"
    timeout 175 python3 -m benchmarks.latency.pq_small --out "$OUT/h200-gpupq-run2.jsonl" --data-dir .data \
      --budget 150 > "$OUT/pq_small.log" 2>&1; echo "pq_small rc $?"
    timeout 120 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py tests/test_gpu_small_batches.py \
      tests/test_bitonic.py tests/test_flat.py tests/test_ivf_flat.py tests/test_pq.py tests/test_refine.py \
      tests/test_panorama.py tests/test_panorama_flat.py tests/test_persistence.py tests/test_shards.py \
      > "$OUT/gpu-tests.log" 2>&1; echo "gpu tests rc $?"; tail -5 "$OUT/gpu-tests.log"
    ;;
  sweep)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
    timeout 330 python3 -m benchmarks.latency.gpu_run --out "$OUT/h200-run4.jsonl" --data-dir .data \
      --old-dir /tmp/old --budget "${BUDGET:-290}" > "$OUT/gpu_run.log" 2>&1; echo "gpu_run rc $?"
    python3 -m benchmarks.latency.auto_check "$OUT/h200-run4.jsonl"
    ;;
  *) echo "usage: h200_all.sh tune|sweep" >&2; exit 2 ;;
esac
