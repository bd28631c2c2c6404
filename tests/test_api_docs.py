"""The API reference builds from the docstrings (scripts/build_docs.py, pdoc) without a warning."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "build_docs.py"


def _build_docs():
    spec = importlib.util.spec_from_file_location("build_docs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_builds(tmp_path):
    if importlib.util.find_spec("pdoc") is None:
        pytest.skip("needs pdoc: pip install -e '.[test]' (scripts/setup.sh test installs it)")
    docs = _build_docs()
    index = docs.build(tmp_path)  # raises on any pdoc warning or import error
    assert index.is_file()
    for name in docs.modules():
        page = tmp_path.joinpath(*name.split(".")).with_suffix(".html")
        assert page.is_file(), f"no page for {name}"
    top = (tmp_path / "torch_ivf.html").read_text()
    for documented in ("IndexIVFFlat", "add_with_ids", "index_factory", "Args"):
        assert documented in top
