"""Cross-checks of an index state read from a file, before any index is built from it.

Checksums catch damaged bytes; these catch a state that is well-formed but impossible (a file
assembled or edited by another tool, or written by a buggy one): every stored list has a size that
is non-negative and matches its rows, labels are unique, non-negative and below the label counter
that hands out the next ones, wrapped indexes agree with their wrappers, codes lie in their
codebook's range, and every float is finite. Each refusal is a CorruptFileError naming the file.
"""
from __future__ import annotations

import torch

from .integrity import CorruptFileError
from .sq import QT_bf16, QT_fp16

MAX_LABEL = (1 << 63) - 1
MAX_K_FACTOR = 1 << 20  # k * k_factor candidates must stay a countable number
_SIZES = "invlists.sizes"
_NESTED = (("base_config", "base."), ("sub_config", "sub."))  # IndexRefine's base, IndexIDMap's index
_HALF_QTYPES = {QT_fp16: torch.float16, QT_bf16: torch.bfloat16}  # their codes are the raw halves


def configs(config: dict, prefix: str = ""):
    """(tensor-name prefix, config) of an index and of every index it wraps."""
    out, stack = [], [(prefix, config)]
    while stack:
        prefix, cfg = stack.pop()
        out.append((prefix, cfg))
        stack.extend((prefix + sub, cfg[key]) for key, sub in _NESTED if isinstance(cfg.get(key), dict))
    return out


def check_config(config: dict, source) -> None:
    """Values a constructor accepts but no saved index can hold: a data-less device for the refine
    vectors, a k_factor that overflows every search."""
    for _, cfg in configs(config):
        device = cfg.get("refine_device")
        if isinstance(device, str) and device.split(":")[0] == "meta":
            raise CorruptFileError(source, f"config refine_device={device!r} holds no data")
        k_factor = cfg.get("k_factor")
        if isinstance(k_factor, (int, float)) and not isinstance(k_factor, bool) and not 1 <= k_factor <= MAX_K_FACTOR:
            raise CorruptFileError(source, f"config k_factor={k_factor!r} is outside 1..{MAX_K_FACTOR}")


def label_counters(tensors: dict, next_label: int, source) -> dict[str, int]:
    """The counter each stored list's labels must stay below, by tensor-name prefix."""
    counters = {"": next_label}
    for name, prefixes in (("next_labels", ("base.", "refine.")), ("sub_next_label", ("sub.",))):
        t = tensors.get(name)
        if t is None:
            continue
        if t.dtype != torch.int64 or tuple(t.shape) != (len(prefixes),):
            raise CorruptFileError(source, f"tensor {name!r} must be int64 of shape ({len(prefixes)},), "
                                           f"got {t.dtype} {tuple(t.shape)}")
        for prefix, value in zip(prefixes, t.tolist()):
            if value < 0:
                raise CorruptFileError(source, f"tensor {name!r} holds a negative label counter {value}")
            counters[prefix] = value
    return counters


def check_state(config: dict, tensors: dict, next_label: int, source) -> None:
    """Refuse a state no index could have written (see the module docstring)."""
    for name, t in tensors.items():
        if (t.is_floating_point() or t.is_complex()) and t.numel() and not bool(torch.isfinite(t).all()):
            raise CorruptFileError(source, f"tensor {name!r} holds NaN or Inf")
    counters = label_counters(tensors, next_label, source)
    labels_of = {}
    for prefix in sorted(n[: -len(_SIZES)] for n in tensors if n.endswith(_SIZES)):
        labels_of[prefix] = _check_lists(prefix, tensors, source)
        if labels_of[prefix].numel():
            top = int(labels_of[prefix].max())
            for limit_prefix in {prefix, ""}:
                limit = counters.get(limit_prefix)
                if limit is not None and top >= limit:
                    what = "next_label" if not limit_prefix else f"the label counter of {limit_prefix[:-1]}"
                    raise CorruptFileError(source, f"{what} {limit} is not above the largest label {top} "
                                                   "(the next add would hand out a stored label again)")
    for prefix, cfg in configs(config):
        _check_codes(prefix, cfg, tensors, source)
    _check_wrappers(tensors, labels_of, source)


def _check_lists(prefix: str, tensors: dict, source) -> torch.Tensor:
    """Sizes and labels of one InvertedLists; returns its labels."""
    sizes, labels = tensors[prefix + _SIZES], tensors.get(prefix + "invlists.labels")
    for name, t in ((_SIZES, sizes), ("invlists.labels", labels)):
        if t is None or t.dtype != torch.int64 or t.ndim != 1:
            raise CorruptFileError(source, f"{prefix}{name} must be a 1-d int64 tensor, got "
                                           f"{None if t is None else (t.dtype, tuple(t.shape))}")
    rows = labels.shape[0]
    if sizes.numel() and (int(sizes.min()) < 0 or int(sizes.max()) > rows):
        raise CorruptFileError(source, f"{prefix}{_SIZES} holds a list size outside 0..{rows} (the stored rows)")
    total = sum(sizes.tolist())  # Python ints: a forged size cannot wrap the sum around
    if total != rows:
        raise CorruptFileError(source, f"{prefix}invlists sizes sum to {total}, {rows} labels are stored")
    for name, t in tensors.items():
        if name.startswith(prefix + "invlists.") and name != prefix + _SIZES and (t.ndim == 0 or t.shape[0] != rows):
            raise CorruptFileError(source, f"{name} has shape {tuple(t.shape)}: the lists hold {rows} rows")
    if rows and (int(labels.min()) < 0 or torch.unique(labels).numel() != rows):
        raise CorruptFileError(source, f"{prefix}invlists.labels holds negative or duplicate labels")
    return labels


def _check_codes(prefix: str, cfg: dict, tensors: dict, source) -> None:
    codes = tensors.get(prefix + "invlists.codes")
    if codes is None or not codes.numel():
        return
    nbits, qtype = cfg.get("nbits"), cfg.get("qtype")
    if codes.dtype != torch.uint8:
        raise CorruptFileError(source, f"{prefix}invlists.codes must be uint8, got {codes.dtype}")
    if isinstance(nbits, int) and 0 < nbits < 8 and int(codes.max()) >= 1 << nbits:
        raise CorruptFileError(source, f"{prefix}invlists.codes holds codes >= 2**nbits={1 << nbits}")
    half = _HALF_QTYPES.get(qtype) if isinstance(qtype, int) and "nbits" not in cfg else None
    if half is not None and codes.shape[-1] % 2 == 0:
        values = codes.contiguous().view(half)
        if not bool(torch.isfinite(values).all()):
            raise CorruptFileError(source, f"{prefix}invlists.codes decode to NaN or Inf")


def _check_wrappers(tensors: dict, labels_of: dict, source) -> None:
    """IndexRefine keeps every vector twice, IndexIDMap keeps the order ids were added in: both agree."""
    if "base." in labels_of and "refine." in labels_of:
        if not torch.equal(torch.sort(labels_of["base."]).values, torch.sort(labels_of["refine."]).values):
            raise CorruptFileError(source, "the refine index and its base hold different labels")
    order = tensors.get("id_order")
    if order is not None:
        sub = labels_of.get("sub.", torch.zeros(0, dtype=torch.int64))
        if order.dtype != torch.int64 or order.ndim != 1 or \
                not torch.equal(torch.sort(order).values, torch.sort(sub).values):
            raise CorruptFileError(source, "id_order is not the wrapped index's labels (each once)")


_SOURCE_FIELDS = ("codes", "vectors", "labels")  # what the derived fields are computed from
_CHUNK_ROWS = 1 << 16


def check_derived(index, source) -> None:
    """Fields an index derives from its codes (l2 biases, PQ init terms, Panorama tail norms) must
    be what its codec computes from the stored codes: a code changed without them would score with
    the old vector's norm. Recomputed in chunks of rows on the index's device (O(stored bytes))."""
    for sub in _stored_parts(index):
        pos, lists = sub.invlists.live_positions()
        codec = sub.codec
        for a in range(0, len(pos), _CHUNK_ROWS):
            p, li = pos[a:a + _CHUNK_ROWS], lists[a:a + _CHUNK_ROWS]
            if hasattr(codec, "from_codes"):  # codes stored as they are (SQ, PQ): fields derived from them
                fresh = sub._fields_from_codes(codec.code_rows(sub.invlists, p), li)
            else:
                fresh = sub._encode(sub._decode(p, li), li)
            for name, value in fresh.items():
                if name in _SOURCE_FIELDS:
                    continue
                stored = sub.invlists.gather(name, p).float()
                value = value.float().reshape(stored.shape)
                tol = 1e-4 * max(1.0, float(value.abs().max()) if value.numel() else 1.0)
                if not torch.allclose(stored, value, rtol=1e-4, atol=tol):
                    raise CorruptFileError(source, f"stored field {name!r} of {type(sub).__name__} disagrees with "
                                                   "what its codes give (edited codes or a mixed file)")


def _stored_parts(index) -> list:
    """The indexes holding inverted lists inside ``index`` (itself, a refine's base and store, an
    IDMap's index)."""
    out, stack = [], [index]
    while stack:
        ix = stack.pop()
        if hasattr(ix, "invlists"):
            out.append(ix)
        stack.extend(getattr(ix, a) for a in ("base", "refine", "index") if hasattr(ix, a))
    return out
