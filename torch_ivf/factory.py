"""Faiss-style factory strings, parsed stage by stage as Faiss's index_factory does:

    [IDMap[2],] [transform,] [IVF{nlist},] codec [,refine]

transform: "PanoramaT" (a learned PanoramaTransform; Panorama codecs only). codec: "Flat", "PQ{M}[x{nbits}][np]",
"PQ{M}[x{nbits}]Panorama{L}", "FlatPanorama{L}", "SQ8" / "SQ6" / "SQ4" / "SQfp16" / "SQbf16" / "SQ8_direct" /
"SQ8_direct_signed" (Faiss's names; its "SQ0", "SQtqmse{b}" and "SQtq{b}" are refused by name). refine: "RFlat" (float16 vectors), "Refine(Flat)"
(float32), "Refine(SQfp16)" (float16). Each codec is one entry of ``_CODECS``.
"""
from __future__ import annotations

import re

import torch

from .index.flat import IndexFlat
from .index.ivf_flat import IndexIVFFlat
from .index.ivf_flat_panorama import IndexIVFFlatPanorama
from .index.ivf_pq import IndexIVFPQ
from .index.ivf_pq_panorama import IndexIVFPQPanorama
from .index.ivf_sq import IndexIVFScalarQuantizer, IndexScalarQuantizer
from .index.refine import IndexRefine
from .sq import QT_4bit, QT_6bit, QT_8bit, QT_8bit_direct, QT_8bit_direct_signed, QT_bf16, QT_fp16

_REFINES = {"RFlat": torch.float16, "Refine(Flat)": torch.float32, "Refine(SQfp16)": torch.float16}
_TRANSFORMS = ("PanoramaT",)


class _Unsupported(ValueError):
    pass


def _flat(m, d, nlist, metric, transform, kw):
    if transform:
        raise _Unsupported
    return IndexFlat(d, metric, **kw) if nlist is None else IndexIVFFlat(d, nlist, metric, **kw)


def _pq(m, d, nlist, metric, transform, kw):  # "np" (Faiss: no precomputed tables) changes no result here
    if transform or nlist is None:
        raise _Unsupported
    return IndexIVFPQ(d, nlist, int(m.group(1)), int(m.group(2) or 8), metric, **kw)


def _pq_panorama(m, d, nlist, metric, transform, kw):
    if nlist is None:
        raise _Unsupported
    return IndexIVFPQPanorama(d, nlist, int(m.group(1)), int(m.group(2) or 8), int(m.group(3)), metric,
                              transform=transform, **kw)


def _flat_panorama(m, d, nlist, metric, transform, kw):
    if nlist is None:
        raise _Unsupported
    return IndexIVFFlatPanorama(d, nlist, int(m.group(1)), metric, transform=transform, **kw)


_SQ_TYPES = {"8": QT_8bit, "6": QT_6bit, "4": QT_4bit, "fp16": QT_fp16, "bf16": QT_bf16,
             "8_direct": QT_8bit_direct, "8_direct_signed": QT_8bit_direct_signed}


def _sq(m, d, nlist, metric, transform, kw):
    if transform:
        raise _Unsupported
    qtype = _SQ_TYPES[m.group(1)]
    return IndexScalarQuantizer(d, qtype, metric, **kw) if nlist is None else \
        IndexIVFScalarQuantizer(d, nlist, qtype, metric, **kw)


# codec stage: (pattern, builder(match, d, nlist or None, metric, transform, kwargs))
_CODECS = [
    (re.compile(r"Flat"), _flat),
    (re.compile(r"PQ(\d+)(?:x(\d+))?(?:np)?"), _pq),
    (re.compile(r"PQ(\d+)(?:x(\d+))?Panorama(\d+)"), _pq_panorama),
    (re.compile(r"FlatPanorama(\d+)"), _flat_panorama),
    (re.compile(r"SQ(8|6|4|fp16|bf16|8_direct|8_direct_signed)"), _sq),
]


def is_codec(text: str) -> bool:
    """True when ``text`` is a codec stage with an optional refine stage ("SQ8", "PQ32x8,RFlat"), as
    the part of a description after "IVF{nlist},"."""
    stages = text.replace(" ", "").split(",")
    if len(stages) == 2 and stages[1] in _REFINES:
        stages.pop()
    return len(stages) == 1 and any(pattern.fullmatch(stages[0]) for pattern, _ in _CODECS)


def index_factory(d: int, description: str, metric="l2", **kwargs):
    """Build an index from a Faiss-like description, e.g. ``index_factory(128, "IVF256,Flat")``.

    Args:
        d: vector dimension.
        description: see the module docstring ("Flat", "IVF1024,PQ32x8Panorama8", "IVF256,PQ16,RFlat", ...).
        metric: "l2", "ip", "cosine" or Faiss's METRIC_L2 / METRIC_INNER_PRODUCT.
        **kwargs: constructor keyword arguments (device, dtype, nprobe, niter, ...); ``k_factor`` goes
            to the refine stage.
    """
    if not isinstance(description, str):
        raise TypeError(f"description must be a str, got {type(description).__name__}")
    unsupported = ValueError(f"unsupported index description {description!r}")
    # IDMap: every index takes add_with_ids already
    stages = re.sub(r"^IDMap2?,", "", description.replace(" ", "")).split(",")
    refine = _REFINES.get(stages[-1]) if len(stages) > 1 else None
    if refine is not None:
        stages.pop()
    transform = bool(stages) and stages[0] in _TRANSFORMS
    if transform:
        stages.pop(0)
    nlist = None
    if stages and (m := re.fullmatch(r"IVF(\d+)", stages[0])):
        nlist = int(m.group(1))
        stages.pop(0)
    if len(stages) != 1:
        raise unsupported
    k_factor = kwargs.pop("k_factor", 1.0) if refine is not None else None
    for pattern, build in _CODECS:
        if m := pattern.fullmatch(stages[0]):
            try:
                index = build(m, d, nlist, metric, transform, kwargs)
            except _Unsupported:
                raise unsupported from None
            return index if refine is None else IndexRefine(index, k_factor, refine)
    if stages[0].startswith("SQ"):
        raise ValueError(f"unsupported scalar quantizer {stages[0]!r} in {description!r}; supported: "
                         f"{', '.join('SQ' + name for name in _SQ_TYPES)}")
    raise unsupported
