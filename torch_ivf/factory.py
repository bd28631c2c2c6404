"""Faiss-style factory strings: "Flat", "IVF{nlist},Flat", extended by later index types."""
from __future__ import annotations

import re

_BUILDERS = []  # (regex, builder(match, d, metric, kwargs)); index modules append to this


def register_factory(pattern: str):
    def wrap(fn):
        _BUILDERS.append((re.compile(pattern + r"$"), fn))
        return fn
    return wrap


# Imported after register_factory exists: index modules (imported by the index package) register
# their own descriptions at import time.
from .index.flat import IndexFlat  # noqa: E402
from .index.ivf_flat import IndexIVFFlat  # noqa: E402


@register_factory(r"Flat")
def _flat(m, d, metric, kw):
    return IndexFlat(d, metric, **kw)


@register_factory(r"IVF(\d+),Flat")
def _ivf_flat(m, d, metric, kw):
    return IndexIVFFlat(d, int(m.group(1)), metric, **kw)


def index_factory(d: int, description: str, metric="l2", **kwargs):
    """Build an index from a Faiss-like description, e.g. ``index_factory(128, "IVF256,Flat")``.

    Extra keyword arguments (device, dtype, nprobe, ...) go to the index constructor.
    """
    if not isinstance(description, str):
        raise TypeError(f"description must be a str, got {type(description).__name__}")
    spec = re.sub(r"^IDMap2?,", "", description.replace(" ", ""))  # every index takes add_with_ids already
    for pattern, build in _BUILDERS:
        m = pattern.match(spec)
        if m:
            return build(m, d, metric, kwargs)
    raise ValueError(f"unsupported index description {description!r}")
