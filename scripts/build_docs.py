"""Build the API reference (HTML generated from the docstrings) with pdoc.

    python scripts/build_docs.py            # -> docs/api/index.html (git-ignored)
    python scripts/build_docs.py OUT_DIR

pdoc comes with the ``test`` extra (``bash scripts/setup.sh test``). Docstrings are Google style
(Args / Returns / Raises). Any warning pdoc emits (a module that fails to import, an annotation it
cannot resolve) fails the build, so the reference never silently loses a page; tests/test_api_docs.py
runs this build.
"""
from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The public surface. Internal modules (search, kernels, invlists, ...) are left out on purpose.
MODULES = [
    "torch_ivf",               # indexes, factory, read/write, kmeans, selectors, quantizers
    "torch_ivf.io",
    "torch_ivf.bulk",
    "torch_ivf.shards",
    "torch_ivf.distributed",
    "torch_ivf.interop",
    "torch_ivf.faiss",
    "torch_ivf.collection",
    "torch_ivf.cli",
]
# Documented when their framework is installed (the langchain / llamaindex extras).
INTEGRATIONS = ["langchain_torch_ivf", "llama_index.vector_stores.torch_ivf"]


def importable(name: str) -> bool:
    """True when module ``name`` imports; False only when a dependency it needs is not installed."""
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):  # the module itself is missing: a real error
            raise
        return False
    return True


def modules() -> list[str]:
    """Modules the reference covers on this install."""
    return MODULES + [m for m in INTEGRATIONS if importable(m)]


def build(out_dir: Path | str = ROOT / "docs" / "api") -> Path:
    """Render the reference into ``out_dir``.

    Args:
        out_dir: output folder (created; files of an earlier build are overwritten).

    Returns:
        The path of the reference's index.html.

    Raises:
        RuntimeError: pdoc warned (the messages are listed), or a module failed to import.
    """
    for path in (ROOT, ROOT / "integrations"):  # a plain checkout works without an install
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    import pdoc
    import pdoc.render

    out_dir = Path(out_dir)
    pdoc.render.configure(docformat="google", footer_text="torch-ivf API reference", show_source=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = modules()
        pdoc.pdoc(*names, output_directory=out_dir)
    problems = sorted({str(w.message) for w in caught if _from_pdoc(w)})
    if problems:
        raise RuntimeError("pdoc reported problems:\n  " + "\n  ".join(problems))
    return out_dir / "index.html"


def _from_pdoc(w: warnings.WarningMessage) -> bool:
    # pdoc's own warnings; deprecation notices that importing third-party packages prints are not ours
    return "pdoc" in str(w.filename) and not issubclass(w.category, DeprecationWarning)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1:
        print("usage: python scripts/build_docs.py [OUT_DIR]", file=sys.stderr)
        return 2
    try:
        index = build(*argv)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"API reference: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
