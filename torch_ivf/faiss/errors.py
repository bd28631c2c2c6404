"""Exceptions that both kinds of caller catch: ours raise ValueError / TypeError, Faiss raises
RuntimeError (C++ checks) and AssertionError (the Python wrapper's shape checks)."""
from __future__ import annotations

import functools

from ..parameters import ParameterError


class FaissValueError(ValueError, AssertionError, RuntimeError):
    """A bad value: catchable as ValueError, RuntimeError and AssertionError."""


class FaissTypeError(TypeError, AssertionError, RuntimeError):
    """A bad type: catchable as TypeError, RuntimeError and AssertionError."""


def as_faiss_error(e: Exception) -> Exception:
    if isinstance(e, (ParameterError, FaissValueError, FaissTypeError)):
        return e
    return (FaissTypeError if isinstance(e, TypeError) else FaissValueError)(str(e))


def faiss_errors(fn):
    """Re-raise our ValueError / TypeError from fn as the Faiss-compatible types above."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, TypeError) as e:
            err = as_faiss_error(e)
            if err is e:
                raise
            raise err from e
    return call


def wrap_methods(cls, names):
    """Give cls its own error-converting version of each named method (looked up along its MRO); an
    override without a docstring shows the one of the torch_ivf method it stands for (help, pdoc)."""
    for name in names:
        fn = getattr(cls, name, None)
        if callable(fn) and not getattr(fn, "_faiss_wrapped", False):
            wrapped = faiss_errors(fn)
            wrapped._faiss_wrapped = True
            wrapped.__doc__ = fn.__doc__ or _inherited_doc(cls, name)
            setattr(cls, name, wrapped)
    return cls


def _inherited_doc(cls, name: str) -> str | None:
    for base in cls.__mro__:
        doc = getattr(vars(base).get(name), "__doc__", None)
        if doc:
            return doc
    return None
