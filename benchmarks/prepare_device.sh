#!/usr/bin/env bash
# Run HERE (the dev machine, repo root) before benchmarks/gpu_run.sh is sent to the GPU machine.
# Puts into git-ignored folders (.whl/ and .data/ are in .gitignore) what the GPU machine lacks:
#   .whl/  faiss-cpu and torch-ivf 0.1.1 as wheels for CPython 3.12 x86_64 (~19 MB)
#   .data/ two of the four MiniLM shards (40,000 x 384 float16, ~31 MB)
# Together with the tracked tree this stays under the 64 MiB a call may carry.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/work/venv/bin/python}
mkdir -p .whl .data
if ! ls .whl/faiss_cpu-*.whl >/dev/null 2>&1; then
  $PY -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl faiss-cpu==1.15.1
fi
if ! ls .whl/torch_ivf-0.1.1-*.whl >/dev/null 2>&1; then
  if ls /tmp/oldivf/torch_ivf-0.1.1-*.whl >/dev/null 2>&1; then
    cp /tmp/oldivf/torch_ivf-0.1.1-*.whl .whl/
  else
    $PY -m pip download --no-deps --only-binary=:all: -d .whl torch-ivf==0.1.1
  fi
fi
DATA=${BENCH_DATA_DIR:-.data}
for s in 0 1; do
  if [ -f "$DATA/manpages-minilm-$s.npy" ] && [ ! -f ".data/manpages-minilm-$s.npy" ]; then
    cp "$DATA/manpages-minilm-$s.npy" .data/
  fi
done
ls -la .whl .data
du -sh .whl .data
echo "carry: [\".whl\", \".data\"]   command: bash benchmarks/gpu_run.sh"
