"""Faiss's index_factory for what torch_ivf implements: "Flat", "IVF{n},Flat", "IVF{n},PQ{M}x{b}",
"PQ{M}x{b}", "IVF{n},FlatPanorama{L}", "IVF{n},PQ{M}x{b}Panorama{L}", with IDMap / IDMap2 as prefix or
suffix, ",RFlat" / ",Refine(Flat)", nlist suffixes k (x1024) and M (x1048576), "np" and "_batch" tails."""
from __future__ import annotations

import re

from .. import factory as _core
from .errors import FaissValueError
from .idmap import IndexIDMap, IndexIDMap2
from .indexes import IndexIVFPQ, IndexPQ, IndexRefine, IndexRefineFlat, adopt

_NLIST = re.compile(r"IVF(\d+)([kM]?)(?=,)")


def _expand_nlist(m) -> str:
    return f"IVF{int(m.group(1)) * {'': 1, 'k': 1 << 10, 'M': 1 << 20}[m.group(2)]}"


def index_factory(d, description, metric=None, own_invlists=True):
    """Faiss's ``index_factory(d, description, metric)`` for the descriptions the module docstring lists,
    as Faiss-shaped indexes; own_invlists is ignored.

    Raises:
        FaissValueError: a description torch_ivf does not build.
    """
    metric = 1 if metric is None else metric
    if not isinstance(description, str):
        raise FaissValueError(f"description must be a str, got {type(description).__name__}")
    desc = description.replace(" ", "")
    for wrapper, name in ((IndexIDMap2, "IDMap2"), (IndexIDMap, "IDMap")):
        m = re.fullmatch(rf"{name},(.+)|(.+),{name}", desc)
        if m:
            return wrapper(index_factory(d, m.group(1) or m.group(2), metric))
    m = re.fullmatch(r"(.+),(RFlat|Refine\(Flat\))", desc)
    if m:
        base = index_factory(d, m.group(1), metric)
        return IndexRefineFlat(base) if m.group(2) == "RFlat" else IndexRefine(base, adopt(_core.index_factory(d, "Flat", metric)))
    m = re.fullmatch(r"PQ(\d+)(?:x(\d+))?(np)?", desc)
    if m:
        index = IndexPQ(d, int(m.group(1)), int(m.group(2) or 8), metric)
        index.do_polysemous_training = not m.group(3)
        return index
    desc = _NLIST.sub(_expand_nlist, desc)
    desc = re.sub(r"FlatPanorama(?:_\d+)?$", lambda m: m.group(0).split("_")[0], desc)
    if re.fullmatch(r"IVF\d+,FlatPanorama", desc):
        desc += "8"  # Faiss's default level count
    try:
        index = _core.index_factory(d, desc, metric)
    except ValueError as e:
        raise FaissValueError(f"index_factory: could not parse {description!r} ({e})") from None
    index = adopt(index)
    if isinstance(index, IndexIVFPQ) and re.search(r",PQ\d+(x\d+)?$", desc):
        index.do_polysemous_training = True  # Faiss's factory default without the "np" suffix
    return index
