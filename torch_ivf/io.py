"""Index persistence: one safetensors file, its JSON manifest in the header metadata. No pickle.

The manifest names the format, its version, the index class and every constructor parameter, and
the SHA-256 of every tensor; the header metadata carries the SHA-256 of the manifest itself, so no
byte of the file can change unnoticed. On load, sizes the file claims are checked against the file's
length before anything is allocated, and the loaded state is cross-checked (labels unique,
non-negative and below next_label, list sizes consistent, codes in range, floats finite). Every
refusal is a CorruptFileError (a ValueError) naming the file. Version 1 files (CRC32 per tensor, no
manifest checksum) still load, with the same cross-checks.
"""
from __future__ import annotations

import json
import os
import tempfile
import zlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .integrity import CorruptFileError, get, parse_json, sha256

FORMAT = "torch-ivf-index"
VERSION = 2
_REGISTRY: dict[str, type] = {}
_ALWAYS_OK = 1 << 16  # a size parameter up to this needs no backing data (its allocations stay small)
_SIZE_KEYS = ("d", "nlist", "M", "n_levels")


def register(cls: type) -> type:
    """Make an index class loadable by name (a class-name registry, never code from the file)."""
    _REGISTRY[cls.__name__] = cls
    return cls


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it over: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def index_to_bytes(index) -> bytes:
    tensors = {k: v.detach().cpu().contiguous() for k, v in index.state_tensors().items()}
    manifest = json.dumps({"class": type(index).__name__, "config": index.config(), "next_label": index.next_label,
                           "sha256": {k: sha256(_tensor_bytes(v)) for k, v in tensors.items()}})
    return st_save(tensors, metadata={"format": FORMAT, "version": str(VERSION), "manifest": manifest,
                                      "manifest_sha256": sha256(manifest.encode())})


def _header(payload: bytes, source) -> tuple[dict, dict]:
    """(metadata, {tensor: (dtype, shape, nbytes)}) from the safetensors header, bounds checked."""
    if len(payload) < 8:
        raise CorruptFileError(source, f"is not a torch-ivf index file ({len(payload)} bytes)")
    header_len = int.from_bytes(payload[:8], "little")
    if header_len > len(payload) - 8:
        raise CorruptFileError(source, f"is not a readable torch-ivf index file: header claims {header_len} bytes, {len(payload) - 8} follow")
    header = parse_json(payload[8:8 + header_len], source, "header")
    if not isinstance(header, dict):
        raise CorruptFileError(source, "header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise CorruptFileError(source, f"is not a torch-ivf index file (format={fmt!r})")
    shapes = {}
    for name, info in header.items():
        shape = get(info, "shape", list, source, f"tensor {name!r}")
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise CorruptFileError(source, f"tensor {name!r} has a bad shape {shape!r}")
        offsets = get(info, "data_offsets", list, source, f"tensor {name!r}")
        if len(offsets) != 2 or not all(isinstance(o, int) for o in offsets) or not 0 <= offsets[0] <= offsets[1] \
                or offsets[1] > len(payload) - 8 - header_len:
            raise CorruptFileError(source, f"is not a readable torch-ivf index file: tensor {name!r} lies outside the file ({offsets!r})")
        shapes[name] = tuple(shape)
    return meta, shapes


def index_from_bytes(payload: bytes, device=None, source: str = "<bytes>"):
    meta, shapes = _header(payload, source)
    version = meta.get("version")
    if version not in ("1", "2"):
        if isinstance(version, str) and version.isdigit() and int(version) > VERSION:
            raise CorruptFileError(source, f"has format version {version}; this torch-ivf reads up to {VERSION}")
        raise CorruptFileError(source, f"has an unknown format version {version!r}")
    text = meta.get("manifest")
    if not isinstance(text, str):
        raise CorruptFileError(source, "has no manifest")
    if version == "2" and meta.get("manifest_sha256") != sha256(text.encode()):
        raise CorruptFileError(source, "manifest fails its checksum")
    manifest = parse_json(text, source)
    cls_name = get(manifest, "class", str, source)
    config = get(manifest, "config", dict, source)
    next_label = get(manifest, "next_label", int, source)
    sums = get(manifest, "sha256" if version == "2" else "crc32", dict, source)
    if set(sums) != set(shapes):
        raise CorruptFileError(source, f"checksums cover {sorted(sums)}, the file holds {sorted(shapes)}")
    cls = _REGISTRY.get(cls_name)
    if cls is None:
        raise CorruptFileError(source, f"holds an unknown index class {cls_name!r}")
    _check_sizes(config, shapes, source)
    try:
        tensors = st_load(payload)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CorruptFileError(source, f"is not a readable torch-ivf index file ({e})") from None
    for k, t in tensors.items():
        ok = sha256(_tensor_bytes(t)) == sums[k] if version == "2" else \
            (zlib.crc32(_tensor_bytes(t)) if t.numel() else 0) == sums[k]
        if not ok:
            raise CorruptFileError(source, f"is corrupted: tensor {k!r} fails its checksum")
    _check_values(config, tensors, next_label, source)
    try:
        index = cls(**config, device=device)
        index.load_state_tensors({k: v.to(index.device) for k, v in tensors.items()})
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as e:
        raise CorruptFileError(source, f"holds a state {cls_name} cannot take ({type(e).__name__}: {e})") from None
    index.next_label = next_label
    return index


def _configs(config: dict, prefix: str = ""):
    """(tensor-name prefix, config) of an index and of the indexes it wraps (refine: base.)."""
    yield prefix, config
    if isinstance(config.get("base_config"), dict):
        yield from _configs(config["base_config"], prefix + "base.")


def _check_sizes(config: dict, shapes: dict, source) -> None:
    """Sizes in the config must be backed by the file before an index of that size is constructed."""
    elements = sum(int(torch.tensor(s).prod()) if s else 1 for s in shapes.values())
    for prefix, cfg in _configs(config):
        for key in _SIZE_KEYS:
            v = cfg.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and v > max(_ALWAYS_OK, elements):
                raise CorruptFileError(source, f"config {key}={v} is larger than the file's data can back")
        sizes = shapes.get(prefix + "invlists.sizes")
        if "nlist" in cfg and sizes is not None and sizes != (cfg["nlist"],):
            raise CorruptFileError(source, f"config nlist={cfg['nlist']!r} but {prefix}invlists.sizes has shape {sizes}")


def _check_values(config: dict, tensors: dict, next_label: int, source) -> None:
    for name, t in tensors.items():
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t.float()).all()):
            raise CorruptFileError(source, f"tensor {name!r} holds NaN or Inf")
    for prefix, cfg in _configs(config):
        sizes, labels = tensors.get(prefix + "invlists.sizes"), tensors.get(prefix + "invlists.labels")
        if sizes is not None and sizes.numel() and int(sizes.min()) < 0:
            raise CorruptFileError(source, f"{prefix}invlists.sizes holds a negative list size")
        if sizes is not None and labels is not None and int(sizes.sum()) != labels.shape[0]:
            raise CorruptFileError(source, f"{prefix}invlists sizes sum to {int(sizes.sum())}, "
                                           f"{labels.shape[0]} labels are stored")
        if labels is not None and labels.numel():
            labels = labels.to(torch.int64)
            if int(labels.min()) < 0 or len(torch.unique(labels)) != labels.numel():
                raise CorruptFileError(source, f"{prefix}invlists.labels holds negative or duplicate labels")
            if not prefix and int(labels.max()) >= next_label:
                raise CorruptFileError(source, f"next_label {next_label} is not above the largest label {int(labels.max())}")
        codes, nbits = tensors.get(prefix + "invlists.codes"), cfg.get("nbits")
        if codes is not None and isinstance(nbits, int) and nbits < 8 and codes.numel() \
                and int(codes.max()) >= 1 << nbits:
            raise CorruptFileError(source, f"{prefix}invlists.codes holds codes >= 2**nbits={1 << nbits}")


def write_index(index, path) -> None:
    atomic_write_bytes(Path(path), index_to_bytes(index))


def read_index(path, device=None):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no index file at {path}")
    return index_from_bytes(path.read_bytes(), device=device, source=str(path))


def clone_index(index):
    """Faiss's clone_index: an independent deep copy (same tensors, same device), via the file format."""
    return index_from_bytes(index_to_bytes(index), device=index.device, source="clone_index")
