"""The collection's directory format: versioned, checksummed, switched atomically. No pickle.

    <dir>/STORE.json           the pointer: format marker, the current (and previous) version, each
                               file's size and SHA-256, and a SHA-256 of the pointer itself
    <dir>/v000007-1a2b3c4d/    one complete save:
        manifest.json          format name + version, metric, dimension, index plan, label counter,
                               and the SHA-256 of this save's other files ("binds")
        records.jsonl          one JSON object a line: id, label, text, metadata
        index.safetensors      the index itself (torch_ivf.write_index), absent while empty
    <dir>/.STORE.lock          serialises writers (an advisory lock; POSIX)

A save writes a new version directory beside the current one (files and directory fsynced), then
renames a temporary pointer over STORE.json (the one atomic step, directory fsynced), then removes
versions that are neither current nor previous: a reader that read the old pointer can still finish,
and a reader that finds its version gone re-reads the pointer. A crash at any instant therefore
leaves the old or the new store at the same path; leftovers of a crash are removed by the next save.
Because the manifest binds its save's records and index, one file of another save is refused even
where the pointer was rewritten to match it. Every refusal is a CorruptFileError naming the file.
Stores written before versioning (the three files directly in <dir>) still load and become
versioned on their next save. A non-empty directory that is not a store is never written into.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..integrity import CorruptFileError, canonical, get, parse_json, sha256
from ..io import fsync_dir, index_from_bytes, index_to_bytes
from .indexing import IndexPlan
from .scores import check_metric, index_metric

FORMAT = "torch-ivf-collection"
VERSION = 1
STORE_FORMAT = "torch-ivf-store"
STORE_VERSION = 3  # 3: the manifest binds the records and index files of its own save
POINTER = "STORE.json"
LOCK = ".STORE.lock"
MANIFEST = "manifest.json"
RECORDS = "records.jsonl"
INDEX = "index.safetensors"
_VERSION_DIR = re.compile(r"^v(\d{6,})-[0-9a-f]{8}$")
_POINTER_TMP = re.compile(r"^\.STORE\.json\.[0-9a-f]{8}\.tmp$")
_LEGACY_FILES = {MANIFEST, RECORDS, INDEX}
_READ_TRIES = 20  # a reader whose version was removed under it re-reads the pointer this often


# ---- writing -------------------------------------------------------------------------------------
def write_dir(path: str | os.PathLike, manifest: dict[str, Any], records: list[dict[str, Any]],
              index=None) -> Path:
    target = Path(path)
    # Serialise first: nothing on disk is touched unless the whole save can be written.
    lines = []
    for rec in records:
        try:
            lines.append(json.dumps(rec, ensure_ascii=False, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"metadata of id {rec.get('id')!r} is not JSON-serialisable: {exc}") from exc
    try:
        records_bytes = "".join(line + "\n" for line in lines).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"a text or metadata string is not valid Unicode (lone surrogate?): {exc}") from None
    files = {RECORDS: records_bytes}
    if index is not None:
        files[INDEX] = index_to_bytes(index)
    # the manifest names its own save's files: one file of another save is refused even where the
    # pointer was rewritten to match it
    binds = {f: sha256(p) for f, p in files.items()}
    files[MANIFEST] = json.dumps({"format": FORMAT, "version": VERSION, **manifest, "binds": binds}, indent=1).encode()
    _claim(target)
    target.mkdir(parents=True, exist_ok=True)
    with _writer_lock(target):
        _claim(target)
        old = _read_pointer(target)
        seq = 1 + max([_seq(p.name) for p in _entries(target) if _VERSION_DIR.match(p.name)]
                      + [_seq(old["current"]) if old else 0])
        name = f"v{seq:06d}-{secrets.token_hex(4)}"
        vdir = target / name
        switched = False
        try:
            os.mkdir(vdir)
            for fname, payload in files.items():
                _write_file(vdir / fname, payload)
            fsync_dir(vdir)
            pointer = {"format": STORE_FORMAT, "version": STORE_VERSION, "current": name,
                       "previous": old["current"] if old else None,
                       "files": {f: {"size": len(p), "sha256": sha256(p)} for f, p in files.items()}}
            pointer["sha256"] = sha256(canonical(pointer))
            _write_pointer(target, pointer)
            switched = True
        finally:
            if not switched:  # best effort: the next save removes whatever is left
                shutil.rmtree(vdir, ignore_errors=True)
        _clean(target, keep={name, pointer["previous"]})
    return target


def _write_file(path: Path, payload: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_pointer(target: Path, pointer: dict) -> None:
    tmp = target / f".{POINTER}.{secrets.token_hex(4)}.tmp"
    try:
        _write_file(tmp, json.dumps(pointer, indent=1).encode())
        os.replace(tmp, target / POINTER)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(target)


@contextmanager
def _writer_lock(target: Path):
    try:
        import fcntl
    except ImportError:  # Windows: writers are not serialised (readers are still safe)
        yield
        return
    fd = os.open(target / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)  # released even if the close below fails
    finally:
        os.close(fd)


def _entries(target: Path) -> list[Path]:
    try:
        return list(target.iterdir())
    except FileNotFoundError:
        return []


def _seq(name: str) -> int:
    m = _VERSION_DIR.match(name)
    return int(m.group(1)) if m else 0


def _ours(name: str) -> bool:
    return name in (POINTER, LOCK) or bool(_VERSION_DIR.match(name) or _POINTER_TMP.match(name))


def _is_legacy(target: Path) -> bool:
    try:
        manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def is_store(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a store of ours (versioned, or written before versioning)."""
    target = Path(path)
    return (target / POINTER).is_file() or _is_legacy(target)


def _claim(target: Path) -> None:
    """Refuse to write into anything that is not an empty directory or a store of ours."""
    if target.exists() and not target.is_dir():
        raise ValueError(f"cannot save a store at {str(target)!r}: it exists and is not a directory")
    names = [p.name for p in _entries(target)]
    if not names or POINTER in names or all(_ours(n) for n in names) or _is_legacy(target):
        return
    raise ValueError(f"refusing to save a store into {str(target)!r}: the directory is not empty and is not "
                     f"a torch-ivf store (no {POINTER}); nothing was changed. Save to a new or empty directory.")


def _clean(target: Path, keep: set) -> None:
    """Remove what a save owns and no longer needs: old versions, temp pointers, pre-versioning files."""
    legacy = _is_legacy(target)
    for p in _entries(target):
        try:
            if _VERSION_DIR.match(p.name) and p.name not in keep:
                shutil.rmtree(p)
            elif _POINTER_TMP.match(p.name) or (legacy and p.name in _LEGACY_FILES):
                p.unlink()
        except OSError:
            pass  # another process may hold it open on Windows; the next save retries
    # what the pre-versioning format left beside the store after a crash (".name.tmp-*", ".name.old-*")
    for p in _entries(target.parent):
        if re.match(rf"^\.{re.escape(target.name)}\.(tmp|old)-\w{{8}}$", p.name) and p.is_dir() \
                and {q.name for q in p.iterdir()} <= _LEGACY_FILES:
            shutil.rmtree(p, ignore_errors=True)


# ---- reading -------------------------------------------------------------------------------------
def _read_pointer(target: Path) -> dict | None:
    path = target / POINTER
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        return None
    pointer = parse_json(payload, path, POINTER)
    if not isinstance(pointer, dict) or pointer.get("format") != STORE_FORMAT:
        raise CorruptFileError(path, f"not a {STORE_FORMAT} pointer")
    version = get(pointer, "version", int, path)
    if version > STORE_VERSION:
        raise CorruptFileError(path, f"store format version {version} is newer than this torch-ivf "
                                     f"understands ({STORE_VERSION}); upgrade torch-ivf")
    claimed = get(pointer, "sha256", str, path)
    if sha256(canonical({k: v for k, v in pointer.items() if k != "sha256"})) != claimed:
        raise CorruptFileError(path, "fails its checksum")
    current = get(pointer, "current", str, path)
    if not _VERSION_DIR.match(current):
        raise CorruptFileError(path, f"names an invalid version {current!r}")
    files = get(pointer, "files", dict, path)
    for fname in files:
        entry = files[fname]
        if fname not in _LEGACY_FILES:
            raise CorruptFileError(path, f"lists an unknown file {fname!r}")
        get(entry, "size", int, path, f"files[{fname!r}]")
        get(entry, "sha256", str, path, f"files[{fname!r}]")
    if MANIFEST not in files or RECORDS not in files:
        raise CorruptFileError(path, f"does not list {MANIFEST} and {RECORDS}")
    return pointer


def _read_version(target: Path, pointer: dict) -> dict[str, bytes]:
    """The current version's files, each checked against the pointer's size and SHA-256."""
    vdir = target / pointer["current"]
    out = {}
    for fname, entry in pointer["files"].items():
        path = vdir / fname
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size != entry["size"]:  # checked before reading, so a forged size allocates nothing
                raise CorruptFileError(path, f"has {size} bytes, the store's pointer says {entry['size']}")
            payload = fh.read()
        if sha256(payload) != entry["sha256"]:
            raise CorruptFileError(path, "fails its checksum")
        out[fname] = payload
    return out


def _read_legacy(target: Path) -> dict[str, bytes]:
    out = {MANIFEST: (target / MANIFEST).read_bytes(), RECORDS: (target / RECORDS).read_bytes()}
    if (target / INDEX).is_file():
        out[INDEX] = (target / INDEX).read_bytes()
    return out


def read_dir(path: str | os.PathLike, device=None) -> tuple[dict[str, Any], list[dict[str, Any]], Any]:
    """(manifest, records, index) of one version of the store, cross-checked (CorruptFileError)."""
    source = Path(path)
    for attempt in range(_READ_TRIES):
        pointer = _read_pointer(source)
        try:
            if pointer is None:
                if not (source / MANIFEST).is_file():
                    raise FileNotFoundError(f"no torch-ivf collection at {str(source)!r} (missing {POINTER})")
                return _parse(source, _read_legacy(source), device)
            digests = {f: e["sha256"] for f, e in pointer["files"].items()} if pointer["version"] >= 3 else None
            return _parse(source / pointer["current"], _read_version(source, pointer), device, digests)
        except FileNotFoundError as exc:
            again = _read_pointer(source)
            if again == pointer:  # nothing moved: the file really is missing
                if pointer is None:
                    raise
                raise CorruptFileError(source, f"file of the current version is missing: {exc}") from None
            time.sleep(0.001 * attempt)  # a writer switched versions under us: read the new one
    raise CorruptFileError(source, f"the store changed {_READ_TRIES} times while being read")


def _parse(where: Path, blobs: dict[str, bytes], device, digests: dict | None = None) -> tuple[dict, list[dict], Any]:
    """digests: the verified SHA-256 of each blob (the pointer's), where the manifest must bind them."""
    mpath = where / MANIFEST
    manifest = parse_json(blobs[MANIFEST], mpath)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CorruptFileError(mpath, f"is not a {FORMAT} manifest")
    metric, dim, next_label = _check_manifest(manifest, mpath)
    if digests is not None or "binds" in manifest:
        binds = get(manifest, "binds", dict, mpath)
        held = {f: (digests or {}).get(f) or sha256(p) for f, p in blobs.items() if f != MANIFEST}
        if binds != held:
            raise CorruptFileError(where, f"{MANIFEST} was written with other files than the {sorted(held)} "
                                          "beside it (files of different saves)")
    records = _parse_records(where / RECORDS, blobs[RECORDS])
    labels = [r["label"] for r in records]
    if "count" in manifest and get(manifest, "count", int, mpath) != len(records):
        raise CorruptFileError(where, f"manifest counts {manifest['count']} records, {RECORDS} holds {len(records)}")
    if labels and max(labels) >= next_label and "next_label" in manifest:
        raise CorruptFileError(where, f"next_label {next_label} is not above every label (max {max(labels)})")
    index = None
    if INDEX in blobs:
        index = index_from_bytes(blobs[INDEX], device=device, source=str(where / INDEX))
        expected = index_metric(metric)
        if index.metric != expected or (dim is not None and index.d != dim):
            raise CorruptFileError(where, f"index (d={index.d}, metric={index.metric}) does not match the "
                                          f"manifest (dim={dim}, metric={metric})")
        stored = index.labels().cpu().tolist()
        if len(stored) != len(records) or set(stored) != set(labels):
            raise CorruptFileError(where, f"the index's {len(stored)} labels are not the {len(records)} "
                                          "records' labels (files from different saves?)")
    elif records:
        raise CorruptFileError(where, f"{len(records)} records but no {INDEX}")
    return manifest, records, index


def _check_manifest(manifest: dict, mpath: Path) -> tuple[str, int | None, int]:
    """(metric, dim, next_label) of a manifest whose every field is what a save writes."""
    version = get(manifest, "version", int, mpath)
    if version > VERSION or version < 1:
        raise CorruptFileError(mpath, f"collection format version {version} is not one this torch-ivf "
                                      f"understands (1..{VERSION}); upgrade torch-ivf")
    metric = get(manifest, "metric", str, mpath)
    try:
        metric = check_metric(metric)
        IndexPlan(get(manifest, "index", str, mpath), "l2", torch.device("cpu"),
                  get(manifest, "nprobe", (int, type(None)), mpath) if "nprobe" in manifest else None)
    except (TypeError, ValueError) as exc:
        raise CorruptFileError(mpath, f"holds settings no store has: {exc}") from None
    dim = get(manifest, "dim", (int, type(None)), mpath)
    counters = {k: get(manifest, k, int, mpath) for k in ("next_label", "trained_n", "count") if k in manifest}
    if (dim is not None and dim < 1) or any(v < 0 for v in counters.values()) or counters.get("next_label", 0) > 1 << 63:
        raise CorruptFileError(mpath, f"holds an impossible dim or counter (dim={dim!r}, {counters})")
    return metric, dim, counters.get("next_label", 0)


def _parse_records(path: Path, payload: bytes) -> list[dict]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(path, f"is not UTF-8 ({exc})") from None
    records, ids, labels = [], set(), set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        rec = parse_json(line, path, f"line {n}")
        what = f"line {n}"
        rid = get(rec, "id", str, path, what)
        label = get(rec, "label", int, path, what)
        get(rec, "text", (str, type(None)), path, what)
        if rec.get("metadata") is not None:
            get(rec, "metadata", dict, path, what)
        if label < 0 or label in labels or rid in ids:
            raise CorruptFileError(path, f"{what}: negative or duplicate label {label} / id {rid!r}")
        ids.add(rid)
        labels.add(label)
        records.append(rec)
    return records
