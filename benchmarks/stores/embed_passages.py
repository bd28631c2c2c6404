"""Make the MiniLM shard the store benchmarks read, where the data folder's shards are not (the GPU machine).

    python -m benchmarks.stores.embed_passages --model-dir DIR --rows 26000 --out DATA/manpages-minilm-0.npy \
        [--check REF.npy]

Embeds the first ``rows`` passages of ``$BENCH_DATA_DIR/manpages-passages.jsonl.gz`` the way the shared shards
were made (all-MiniLM-L6-v2 in float16, L2-normalised, stored as float16) into one file; data.minilm reads
shard 0 alone when it holds enough rows. ``--check`` compares the first rows with a slice of the real shards
and fails when they differ by more than float16 noise.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", default="float16", choices=["float32", "float16"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--check", default=None, help=".npy with the first rows of the real shards")
    parser.add_argument("--tolerance", type=float, default=4e-3, help="largest allowed |difference| per component")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    from torch_ivf.collection import default_device

    from .data import passages

    rows = passages(args.rows)
    if len(rows) < args.rows:
        raise SystemExit(f"embed_passages: asked for {args.rows} passages, the file has {len(rows)}")
    device = default_device()
    model = SentenceTransformer(args.model_dir, device=device).to(getattr(torch, args.dtype))
    t0 = time.perf_counter()
    vecs = model.encode([r["text"] for r in rows], batch_size=args.batch_size, convert_to_numpy=True,
                        normalize_embeddings=True, show_progress_bar=False).astype(np.float16)
    seconds = time.perf_counter() - t0
    report = {"rows": len(vecs), "device": device, "dtype": args.dtype, "seconds": round(seconds, 2)}
    if args.check:
        ref = np.load(args.check).astype(np.float32)
        diff = np.abs(vecs[:len(ref)].astype(np.float32) - ref)
        cos = (vecs[:len(ref)].astype(np.float32) * ref).sum(1)
        report.update(checked_rows=len(ref), max_abs_diff=float(diff.max()), min_cosine=round(float(cos.min()), 6))
        if diff.max() > args.tolerance:
            raise SystemExit(f"embed_passages: vectors differ from the real shards: {json.dumps(report)}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.save(args.out, vecs)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
