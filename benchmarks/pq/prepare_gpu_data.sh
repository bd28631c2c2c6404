#!/usr/bin/env bash
# Copy MiniLM shards (float16, 15 MB each) into the ignored benchmarks/pq/.data/ so the device run can
# carry them (carry: ["benchmarks/pq/.data"]). Default: one shard (20k vectors, 15 MB); SHARDS=4 copies all (60 MB, near the 64 MiB carry limit).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="${BENCH_DATA_DIR:-$here/../../../shared/data}"
mkdir -p "$here/.data"
for f in $(ls "$src"/manpages-minilm-*.npy | head -n "${SHARDS:-1}"); do cp "$f" "$here/.data/"; done
ls -la "$here/.data"
