"""The collection's directory format: no pickle, loads on any device, written atomically.

    <dir>/manifest.json      format name + version, metric, dimension, index plan, label counter
    <dir>/records.jsonl      one JSON object a line: id, label, text, metadata
    <dir>/index.safetensors  the index itself (torch_ivf.write_index), absent while empty

Everything is written into a sibling temporary directory which then replaces ``<dir>`` with
renames, so a crash mid-save leaves either the old store or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

FORMAT = "torch-ivf-collection"
VERSION = 1
MANIFEST = "manifest.json"
RECORDS = "records.jsonl"
INDEX = "index.safetensors"


def write_dir(path: str | os.PathLike, manifest: dict[str, Any], records: list[dict[str, Any]],
              index=None) -> Path:
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ValueError(f"path {str(target)!r} exists and is not a directory")
    # Serialise first: non-JSON metadata must fail before anything on disk is touched.
    lines = []
    for rec in records:
        try:
            lines.append(json.dumps(rec, ensure_ascii=False, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"metadata of id {rec.get('id')!r} is not JSON-serialisable: {exc}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        with open(tmp / RECORDS, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line)
                fh.write("\n")
        if index is not None:
            from torch_ivf import write_index

            write_index(index, str(tmp / INDEX))
        with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump({"format": FORMAT, "version": VERSION, **manifest}, fh, indent=1)
        for name in (RECORDS, MANIFEST):
            _fsync(tmp / name)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _swap_in(tmp: Path, target: Path) -> None:
    if not target.exists():
        os.replace(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rmdir(old)
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def read_dir(path: str | os.PathLike, device=None) -> tuple[dict[str, Any], list[dict[str, Any]], Any]:
    source = Path(path)
    manifest_path = source / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no torch-ivf collection at {str(source)!r} (missing {MANIFEST})")
    with open(manifest_path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{str(manifest_path)!r} is not a {FORMAT} manifest")
    if int(manifest.get("version", 0)) > VERSION:
        raise ValueError(f"collection format version {manifest['version']} is newer than this "
                         f"torch-ivf understands ({VERSION}); upgrade torch-ivf")
    records = []
    with open(source / RECORDS, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                records.append(json.loads(line))
    index = None
    if (source / INDEX).is_file():
        from torch_ivf import read_index

        index = read_index(str(source / INDEX), device=device)
    return manifest, records, index
