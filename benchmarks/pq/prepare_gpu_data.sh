#!/usr/bin/env bash
# Copy MiniLM shards (float16, 15 MB each) into an ignored folder so a device run can carry them.
#   bash benchmarks/pq/prepare_gpu_data.sh [DEST] [SHARD ...]   (default: benchmarks/pq/.data, shards 0 1)
# All four shards and the faiss wheel exceed one call's 64 MiB: carry [".whl", "benchmarks/pq/.data"] with
# shards 0 1 in a first call, then shards 2 3 in DEST=benchmarks/pq/.data2 (carry only that) in the next
# call on the warm machine and move them beside the first two (ignored paths stay between calls).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="${BENCH_DATA_DIR:-$here/../../../shared/data}"
dest="${1:-$here/.data}"
shift || true
mkdir -p "$dest"
for s in "${@:-0 1}"; do for i in $s; do cp "$src/manpages-minilm-$i.npy" "$dest/"; done; done
ls -la "$dest"
