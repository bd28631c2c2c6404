"""Carry the MiniLM shards to the GPU machine in fewer bytes: each float16 shard split into its high and
low byte planes, each xz-compressed (lossless, ~29% smaller), so all four shards and the faiss wheel fit
in one device call's 64 MiB.

    python -m benchmarks.pq.shards pack benchmarks/pq/.data 0 1 2 3   # here (reads $BENCH_DATA_DIR or the data folder)
    python -m benchmarks.pq.shards unpack benchmarks/pq/.data         # on the GPU machine -> .npy
"""
from __future__ import annotations

import glob
import lzma
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("BENCH_DATA_DIR", os.path.join(HERE, "..", "..", ".data"))


def pack(dest: str, shards: list[int]) -> None:
    os.makedirs(dest, exist_ok=True)
    for i in shards:
        x = np.load(os.path.join(SRC, f"manpages-minilm-{i}.npy"))
        u = np.ascontiguousarray(x).view(np.uint16)
        planes = [np.frombuffer(lzma.compress((p & 0xFF).astype(np.uint8).tobytes(), preset=9), np.uint8)
                  for p in (u >> 8, u)]
        np.savez(os.path.join(dest, f"manpages-minilm-{i}.xz.npz"), hi=planes[0], lo=planes[1],
                 shape=np.array(x.shape))


def unpack(folder: str) -> None:
    for f in sorted(glob.glob(os.path.join(folder, "manpages-minilm-*.xz.npz"))):
        z = np.load(f, allow_pickle=False)
        hi, lo = (np.frombuffer(lzma.decompress(z[p].tobytes()), np.uint8).astype(np.uint16) for p in ("hi", "lo"))
        x = ((hi << 8) | lo).view(np.float16).reshape(tuple(z["shape"]))
        np.save(f.replace(".xz.npz", ".npy"), x)
        os.remove(f)


if __name__ == "__main__":
    cmd, folder, *rest = sys.argv[1:]
    pack(folder, [int(s) for s in rest] or [0, 1, 2, 3]) if cmd == "pack" else unpack(folder)
