"""Every public class, function, method and property of the documented modules (the API reference's,
scripts/build_docs.py) has a docstring, and none hides its arguments behind (*args, **kwargs)."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "build_docs.py"
OURS = ("torch_ivf", "langchain_torch_ivf", "llama_index.vector_stores.torch_ivf")

# Callables whose *args / **kwargs are part of the contract they implement, each with its reason.
VARARGS_OK = {
    # the keywords go to whichever constructor the description names (device, dtype, nprobe, ...)
    "torch_ivf.factory.index_factory",
    # Faiss's Kmeans(d, k, **kwargs) takes any ClusteringParameters field; unknown ones are refused
    "torch_ivf.faiss.utils.Kmeans.__init__",
}
# LangChain's VectorStore and LlamaIndex's BasePydanticVectorStore pass **kwargs through their
# interfaces (search_kwargs, retriever options, delete_kwargs): the stores must accept them.
FRAMEWORK_KWARGS = ("langchain_torch_ivf.", "llama_index.vector_stores.torch_ivf.")


def _modules() -> list[str]:
    spec = importlib.util.spec_from_file_location("build_docs", SCRIPT)
    docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(docs)
    return docs.modules()


def _ours(obj) -> bool:
    return (getattr(obj, "__module__", None) or "").startswith(OURS)


def _public(module) -> list:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items()
                 if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__]
    return [getattr(module, n) for n in names]


def _members(cls):
    """(qualified name, object, is property) of cls's public attributes defined in this project,
    each at the class that defines it."""
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is None or not _ours(owner):
            continue
        raw = vars(owner)[name]
        qual = f"{owner.__module__}.{owner.__qualname__}.{name}"
        if isinstance(raw, property):
            yield qual, raw, True
        elif callable(raw) or isinstance(raw, (classmethod, staticmethod)):
            yield qual, getattr(cls, name), False


def _walk():
    seen = {}
    for module_name in _modules():
        for obj in _public(importlib.import_module(module_name)):
            if not _ours(obj):
                continue
            if inspect.isclass(obj):
                seen.setdefault(f"{obj.__module__}.{obj.__qualname__}", (obj, False))
                for qual, member, is_prop in _members(obj):
                    seen.setdefault(qual, (member, is_prop))
            elif callable(obj):
                seen.setdefault(f"{obj.__module__}.{obj.__qualname__}", (obj, False))
    return seen


API = _walk()


def test_the_walk_covers_the_api():
    for name in ("torch_ivf.index.stored.StoredIndex.add_with_ids", "torch_ivf.index.ivf.IndexIVF.train",
                 "torch_ivf.collection.collection.Collection.search", "torch_ivf.faiss.indexes.IndexIVFFlat.search",
                 "torch_ivf.bulk.train_on_sample", "torch_ivf.cli.main"):
        assert name in API, name
    assert len(API) > 300


def test_every_public_callable_has_a_docstring():
    missing = [name for name, (obj, is_prop) in API.items()
               if not (obj.__doc__ if is_prop else inspect.getdoc(obj))]
    assert not missing, f"{len(missing)} without a docstring:\n" + "\n".join(missing)


def test_no_signature_hides_its_arguments():
    hidden = []
    for name, (obj, is_prop) in API.items():
        if is_prop or name in VARARGS_OK:
            continue
        if inspect.isclass(obj):
            init = next(k for k in obj.__mro__ if "__init__" in vars(k))
            if not _ours(init):  # a framework's constructor (pydantic models)
                continue
            name = f"{name}.__init__"
        try:
            params = inspect.signature(obj).parameters.values()
        except (TypeError, ValueError):
            continue
        star = [p for p in params if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if not star or name in VARARGS_OK:
            continue
        if name.startswith(FRAMEWORK_KWARGS) and all(p.kind == p.VAR_KEYWORD for p in star) \
                and len(star) < len(params):
            continue
        hidden.append(f"{name}{inspect.signature(obj)}")
    assert not hidden, f"{len(hidden)} with *args / **kwargs:\n" + "\n".join(hidden)
