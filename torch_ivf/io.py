"""Index persistence: one safetensors file, its JSON manifest in the header metadata. No pickle.

The manifest names the format, its version, the index class, every constructor parameter, the label
counter, and for every tensor its dtype, shape and SHA-256; the header metadata carries the SHA-256
of the manifest itself. So no byte of the file can change unnoticed: tensor bytes fail their own
checksum, and a header whose dtypes, shapes or tensor names disagree with the (checksummed) manifest
is refused. Sizes the file claims are checked against its length, and checksums are verified on the
file's bytes, before anything is allocated; the decoded state is then cross-checked (state_checks)
before an index is built from it. Every refusal is a CorruptFileError (a ValueError) naming the
file. Files of versions 1 (CRC32 per tensor, no manifest checksum) and 2 (SHA-256 per tensor) still
load, with the same cross-checks.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import zlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .integrity import CorruptFileError, get, parse_json, sha256
from .state_checks import MAX_LABEL, check_config, check_derived, check_state, configs

FORMAT = "torch-ivf-index"
VERSION = 3
_READABLE = ("1", "2", "3")
_REGISTRY: dict[str, type] = {}
_ALWAYS_OK = 1 << 16  # a size parameter up to this needs no backing data (its allocations stay small)
_SIZE_KEYS = ("d", "nlist", "M", "n_levels")
_MAX_HEADER = 100 << 20  # safetensors' own limit on a header
_DTYPES = {torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.int32: "I32",
           torch.int64: "I64", torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32",
           torch.float64: "F64"}
_ITEM_BYTES = {name: torch.empty(0, dtype=dt).element_size() for dt, name in _DTYPES.items()}


def register(cls: type) -> type:
    """Make an index class loadable by name (a class-name registry, never code from the file)."""
    _REGISTRY[cls.__name__] = cls
    return cls


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it over: readers never see half a file,
    and once this returns the new file survives a power loss (file and directory fsynced)."""
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
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or creation inside directory ``path`` durable."""
    if os.name == "nt":  # directories cannot be opened for fsync there; NTFS journals renames
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def index_to_bytes(index) -> bytes:
    """The bytes write_index would write for ``index`` (Faiss's serialize_index, as bytes)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in index.state_tensors().items()}
    unknown = {k: v.dtype for k, v in tensors.items() if v.dtype not in _DTYPES}
    if unknown:
        raise ValueError(f"cannot write tensors of dtype {unknown}")
    layout = {k: {"dtype": _DTYPES[v.dtype], "shape": list(v.shape), "sha256": sha256(_tensor_bytes(v))}
              for k, v in tensors.items()}
    manifest = json.dumps({"class": type(index).__name__, "config": index.config(), "next_label": index.next_label,
                           "tensors": layout})
    return st_save(tensors, metadata={"format": FORMAT, "version": str(VERSION), "manifest": manifest,
                                      "manifest_sha256": sha256(manifest.encode())})


def _header(payload: bytes, source, file_len: int | None = None) -> tuple[dict, dict, int]:
    """(metadata, {tensor: (dtype, shape, (begin, end))}, data start) from the safetensors header,
    every tensor's extent checked to lie in the file and to match its dtype and shape. ``payload``
    may be the file's first bytes only (its header), with ``file_len`` the whole file's length."""
    file_len = len(payload) if file_len is None else file_len
    if file_len < 8:
        raise CorruptFileError(source, f"is not a torch-ivf index file ({file_len} bytes)")
    header_len = int.from_bytes(payload[:8], "little")
    if header_len > min(file_len - 8, _MAX_HEADER):
        raise CorruptFileError(source, f"is not a readable torch-ivf index file: header claims {header_len} bytes, {file_len - 8} follow")
    header = parse_json(payload[8:8 + header_len], source, "header")
    if not isinstance(header, dict):
        raise CorruptFileError(source, "header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise CorruptFileError(source, f"is not a torch-ivf index file (format={fmt!r})")
    data_len = file_len - 8 - header_len
    layout = {}
    for name, info in header.items():
        what = f"tensor {name!r}"
        dtype = get(info, "dtype", str, source, what)
        shape = get(info, "shape", list, source, what)
        if dtype not in _ITEM_BYTES:
            raise CorruptFileError(source, f"{what} has an unknown dtype {dtype!r}")
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise CorruptFileError(source, f"{what} has a bad shape {shape!r}")
        offsets = get(info, "data_offsets", list, source, what)
        if len(offsets) != 2 or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets) \
                or not 0 <= offsets[0] <= offsets[1] <= data_len:
            raise CorruptFileError(source, f"is not a readable torch-ivf index file: {what} lies outside the file ({offsets!r})")
        if math.prod(shape) * _ITEM_BYTES[dtype] != offsets[1] - offsets[0]:  # Python ints: no overflow
            raise CorruptFileError(source, f"{what} of shape {shape} {dtype} does not fill its {offsets[1] - offsets[0]} bytes")
        layout[name] = (dtype, tuple(shape), tuple(offsets))
    return meta, layout, 8 + header_len


def _checksums(manifest: dict, version: str, layout: dict, source) -> dict:
    """{tensor: (digest function, digest)} from the manifest, its names, dtypes and shapes checked
    against the header's (so a tensor's checksum cannot be removed, nor its layout changed)."""
    if version == "1":
        sums = get(manifest, "crc32", dict, source)
        out = {k: (lambda b: zlib.crc32(b), v) for k, v in sums.items()}
    elif version == "2":
        sums = get(manifest, "sha256", dict, source)
        out = {k: (sha256, v) for k, v in sums.items()}
    else:
        out = {}
        for name, entry in get(manifest, "tensors", dict, source).items():
            what = f"manifest tensors[{name!r}]"
            dtype, shape = get(entry, "dtype", str, source, what), get(entry, "shape", list, source, what)
            digest = get(entry, "sha256", str, source, what)
            if name in layout and (dtype, tuple(shape)) != layout[name][:2]:
                raise CorruptFileError(source, f"tensor {name!r} is {layout[name][1]} {layout[name][0]} in the header, "
                                               f"{tuple(shape)} {dtype} in the manifest")
            out[name] = (sha256, digest)
    if set(out) != set(layout):
        raise CorruptFileError(source, f"checksums cover {sorted(out)}, the file holds {sorted(layout)}")
    return out


def index_from_bytes(payload: bytes, device=None, source: str = "<bytes>"):
    """An index from index_to_bytes' bytes onto ``device``; ``source`` names them in errors.

    Raises:
        CorruptFileError: (a ValueError) not a torch-ivf index, damaged, or failing its checksums.
    """
    meta, layout, data_start = _header(payload, source)
    version = meta.get("version")
    if version not in _READABLE:
        if isinstance(version, str) and version.isdigit() and int(version) > VERSION:
            raise CorruptFileError(source, f"has format version {version}; this torch-ivf reads up to {VERSION}")
        raise CorruptFileError(source, f"has an unknown format version {version!r}")
    text = meta.get("manifest")
    if not isinstance(text, str):
        raise CorruptFileError(source, "has no manifest")
    if version != "1" and meta.get("manifest_sha256") != sha256(text.encode()):
        raise CorruptFileError(source, "manifest fails its checksum")
    manifest = parse_json(text, source)
    cls_name = get(manifest, "class", str, source)
    config = get(manifest, "config", dict, source)
    next_label = get(manifest, "next_label", int, source)
    if not 0 <= next_label <= MAX_LABEL + 1:
        raise CorruptFileError(source, f"next_label {next_label} is outside 0..2**63")
    sums = _checksums(manifest, version, layout, source)
    cls = _REGISTRY.get(cls_name)
    if cls is None:
        raise CorruptFileError(source, f"holds an unknown index class {cls_name!r}")
    _check_sizes(config, layout, source)
    check_config(config, source)
    view = memoryview(payload)
    for name, (_, _, (begin, end)) in layout.items():  # on the file's bytes: nothing allocated yet
        digest, expected = sums[name]
        if digest(view[data_start + begin:data_start + end]) != expected:
            raise CorruptFileError(source, f"is corrupted: tensor {name!r} fails its checksum")
    try:
        tensors = st_load(payload)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CorruptFileError(source, f"is not a readable torch-ivf index file ({e})") from None
    check_state(config, tensors, next_label, source)
    try:
        index = cls(**config, device=device)
        index.load_state_tensors({k: v.to(index.device) for k, v in tensors.items()})
        if index.ntotal and not index.is_trained:
            raise CorruptFileError(source, f"holds {index.ntotal} vectors but no trained codec or centroids")
        check_derived(index, source)
    except CorruptFileError:
        raise
    except Exception as e:  # whatever the class refuses in a state the checks above let through
        raise CorruptFileError(source, f"holds a state {cls_name} cannot take ({type(e).__name__}: {e})") from None
    index.next_label = next_label
    return index


def _check_sizes(config: dict, layout: dict, source) -> None:
    """Sizes in the config must be backed by the file before an index of that size is constructed."""
    elements = sum(math.prod(shape) for _, shape, _ in layout.values())
    stack = [config]
    while stack:  # every nested config (JSON depth is bounded by parse_json)
        cfg = stack.pop()
        stack.extend(v for v in cfg.values() if isinstance(v, dict))
        for key in _SIZE_KEYS:
            v = cfg.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and v > max(_ALWAYS_OK, elements):
                raise CorruptFileError(source, f"config {key}={v} is larger than the file's data can back")
    for prefix, cfg in configs(config):
        entry = layout.get(prefix + "invlists.sizes")
        if "nlist" in cfg and (entry is None or entry[1] != (cfg["nlist"],)):
            raise CorruptFileError(source, f"config nlist={cfg['nlist']!r} but {prefix}invlists.sizes has shape "
                                           f"{None if entry is None else entry[1]}")


def write_index(index, path) -> None:
    """Write ``index`` to the file ``path``: safetensors tensors plus a JSON manifest with checksums,
    written to a temporary file and renamed, so a crash never leaves a half-written index. No pickle.
    """
    atomic_write_bytes(Path(path), index_to_bytes(index))


def read_index(path, device=None):
    """Read an index file written by write_index onto ``device`` (default: the device it was saved from).

    Raises:
        FileNotFoundError: no file at ``path``.
        CorruptFileError: (a ValueError) the file is not a torch-ivf index, is damaged or fails its checksums.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no index file at {path}")
    with open(path, "rb") as f:  # the header is checked before the rest is read: a large foreign file costs nothing
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) == 8:
            head += f.read(min(int.from_bytes(head, "little"), _MAX_HEADER))
        _header(head, path, size)
        payload = head + f.read()
    return index_from_bytes(payload, device=device, source=str(path))


def clone_index(index):
    """Faiss's clone_index: an independent deep copy (same tensors, same device), via the file format."""
    return index_from_bytes(index_to_bytes(index), device=index.device, source="clone_index")
