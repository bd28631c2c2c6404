"""Index persistence: one safetensors file, its JSON manifest in the header metadata. No pickle.

The manifest names the format, its version, the index class and every constructor parameter, and
carries a CRC32 per tensor so a corrupted payload is refused instead of silently searched.
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

FORMAT = "torch-ivf-index"
VERSION = 1
_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Make an index class loadable by name (a class-name registry, never code from the file)."""
    _REGISTRY[cls.__name__] = cls
    return cls


def _crc(t: torch.Tensor) -> int:
    return zlib.crc32(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()) if t.numel() else 0


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
    manifest = {"class": type(index).__name__, "config": index.config(), "next_label": index.next_label,
                "crc32": {k: _crc(v) for k, v in tensors.items()}}
    return st_save(tensors, metadata={"format": FORMAT, "version": str(VERSION), "manifest": json.dumps(manifest)})


def index_from_bytes(payload: bytes, device=None, source: str = "<bytes>"):
    try:
        tensors = st_load(payload)
        # safetensors' load() drops the metadata; the header is 8 bytes of length + JSON.
        header_len = int.from_bytes(payload[:8], "little")
        meta = json.loads(payload[8 : 8 + header_len]).get("__metadata__") or {}
    except (SafetensorError, ValueError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{source} is not a readable torch-ivf index file ({e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{source} is not a torch-ivf index file (format={meta.get('format')!r})")
    if int(meta.get("version", -1)) > VERSION:
        raise ValueError(f"{source} has format version {meta['version']}; this torch-ivf reads up to {VERSION}")
    manifest = json.loads(meta["manifest"])
    for k, crc in manifest["crc32"].items():
        if k not in tensors or _crc(tensors[k]) != crc:
            raise ValueError(f"{source} is corrupted: tensor {k!r} is missing or fails its checksum")
    cls = _REGISTRY.get(manifest["class"])
    if cls is None:
        raise ValueError(f"{source} holds an unknown index class {manifest['class']!r}")
    index = cls(**manifest["config"], device=device)
    index.load_state_tensors({k: v.to(index.device) for k, v in tensors.items()})
    index.next_label = int(manifest["next_label"])
    return index


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
