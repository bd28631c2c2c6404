"""The ``torch-ivf`` command: build a store from files, query it, show what a saved store holds, time it.

    torch-ivf build DOCS STORE [--index auto] [--device cpu]   DOCS: a folder (*.txt, *.md, *.rst) or a
                                                              JSONL file with "text" (+ "id", metadata)
    torch-ivf query STORE "question" [-k 4] [--mode hybrid] [--alpha 0.5] [--filter '{"source": "a.md"}']
    torch-ivf info STORE
    torch-ivf bench [--n 20000] [--dim 384] [--device cpu]    exact vs IVF search on this machine

Embeddings come from the bundled all-MiniLM-L6-v2 (the ``embeddings`` extra), offline; keyword queries
(``--mode keyword``) need no model at all.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

TEXT_SUFFIXES = (".txt", ".md", ".rst")


def load_model(device):
    """The bundled MiniLM embedder on ``device`` (None: the GPU when present); needs the embeddings extra."""
    from torch_ivf.collection import MiniLMEmbedder

    return MiniLMEmbedder(device=None if device is None else str(device))


def read_docs(source: Path, chunk_words: int) -> tuple[list[str], list[str], list[dict]]:
    """(ids, texts, metadatas) from a JSONL file or a folder of text files cut into word chunks."""
    ids, texts, metas = [], [], []
    if source.is_file():
        with open(source, encoding="utf-8") as fh:
            for n, line in enumerate(fh):
                if not line.strip():
                    continue
                row = json.loads(line)
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise SystemExit(f"{source}:{n + 1}: each line must be a JSON object with a \"text\" string")
                ids.append(str(row.pop("id", f"{source.stem}#{n}")))
                texts.append(row.pop("text"))
                metas.append(row)
        return ids, texts, metas
    if not source.is_dir():
        raise SystemExit(f"{source}: no such file or folder")
    for path in sorted(p for p in source.rglob("*") if p.suffix in TEXT_SUFFIXES and p.is_file()):
        words = path.read_text(encoding="utf-8", errors="replace").split()
        rel = str(path.relative_to(source))
        for c, start in enumerate(range(0, len(words), chunk_words)):
            ids.append(f"{rel}#{c}")
            texts.append(" ".join(words[start:start + chunk_words]))
            metas.append({"source": rel, "chunk": c})
    if not texts:
        raise SystemExit(f"{source}: no {', '.join(TEXT_SUFFIXES)} files found")
    return ids, texts, metas


def cmd_build(args) -> None:
    """``torch-ivf build DOCS STORE``: embed DOCS (a folder of .txt/.md/.rst or a JSONL file) into a saved store."""
    from torch_ivf.collection import Collection, resolve_device

    device = resolve_device(args.device)  # fail before loading the model or reading files
    ids, texts, metas = read_docs(Path(args.docs), args.chunk_words)
    coll = Collection(load_model(device), index=args.index, device=device, progress=not args.quiet)
    start = time.perf_counter()
    coll.upsert(texts, ids=ids, metadatas=metas)
    coll.save(args.store)
    print(f"{len(coll)} documents -> {args.store} in {time.perf_counter() - start:.1f} s; {coll.describe()}")


def _open(store: str, with_model: bool, device):
    from torch_ivf.collection import Collection, resolve_device

    device = resolve_device(device)
    return Collection.load(store, load_model(device) if with_model else None, device=device)


def cmd_query(args) -> None:
    """``torch-ivf query STORE QUESTION``: print the k best hits (score, id, metadata, text) in the chosen mode."""
    filt = json.loads(args.filter) if args.filter else None
    coll = _open(args.store, args.mode != "keyword", args.device)
    hits = coll.search(args.question, args.k, mode=args.mode, alpha=args.alpha, filter=filt)
    for rank, h in enumerate(hits, 1):
        text = (h.text or "").replace("\n", " ")
        print(f"{rank}. {h.score:.3f}  {h.id}  {json.dumps(h.metadata, ensure_ascii=False)}\n   {text[:200]}")
    if not hits:
        print("no results")


def cmd_info(args) -> None:
    """``torch-ivf info STORE``: format, index, dimension, metadata keys and the first documents of a store."""
    from torch_ivf.collection.persist import MANIFEST, _read_legacy, _read_pointer, _read_version

    coll = _open(args.store, False, "cpu")  # checks the store first, with a clear message
    target = Path(args.store)
    pointer = _read_pointer(target)
    files = _read_version(target, pointer) if pointer else _read_legacy(target)
    manifest = json.loads(files[MANIFEST].decode("utf-8"))
    keys = sorted({k for r in coll.records() for k in r.metadata})
    print(f"store    {args.store}")
    print(f"format   {manifest.get('format')} v{manifest.get('version')}")
    print(f"content  {coll.describe()}, dim {coll.dim}")
    print(f"metadata keys: {', '.join(keys) if keys else '(none)'}")
    for r in coll.records()[:3]:
        print(f"  {r.id}: {(r.text or '')[:100]!r}")


def cmd_bench(args) -> None:
    """``torch-ivf bench``: exact vs IVF-Flat search speed (ms per query, batch 1 and all) and recall@k here."""
    from torch_ivf import IndexFlat, IndexIVFFlat
    from torch_ivf.collection import resolve_device

    device = resolve_device(args.device)
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(max(args.n // 100, 1), args.dim, generator=gen) * 3
    xb = centres[torch.randint(0, centres.shape[0], (args.n,), generator=gen)] + torch.randn(args.n, args.dim, generator=gen)
    xq = xb[torch.randperm(args.n, generator=gen)[: args.nq]] + 0.1 * torch.randn(args.nq, args.dim, generator=gen)
    xb, xq = xb.to(device), xq.to(device)
    flat = IndexFlat(args.dim, metric="l2", device=device)
    flat.add(xb)
    nlist = 2 ** round(math.log2(max(4 * math.sqrt(args.n), 16)))
    ivf = IndexIVFFlat(args.dim, nlist, "l2", nprobe=max(1, nlist // 16), device=device)
    t0 = time.perf_counter()
    ivf.train(xb[: nlist * 64])
    ivf.add(xb)
    build = time.perf_counter() - t0
    _, truth = flat.search(xq, args.k)
    print(f"{args.n} x {args.dim} clustered vectors on {device}, k={args.k}; IVF{nlist} trained+added in {build:.1f} s")
    for name, index in (("exact (Flat)", flat), (f"IVF{nlist},Flat nprobe {ivf.nprobe}", ivf)):
        for batch in (1, args.nq):
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                for s in range(0, args.nq, batch):
                    index.search(xq[s:s + batch], args.k)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append((time.perf_counter() - t0) / args.nq)
            _, found = index.search(xq, args.k)
            recall = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth)) / truth.numel()
            print(f"  {name:<28} batch {batch:>5}: {sorted(times)[1] * 1e3:8.3f} ms/query  recall@{args.k} {recall:.3f}")


def main(argv: list[str] | None = None) -> None:
    """Run the ``torch-ivf`` command with ``argv`` (default: sys.argv[1:]).

    Bad input (a missing store, a bad filter, an unknown device) prints one line on stderr and
    exits with status 2.
    """
    ap = argparse.ArgumentParser(prog="torch-ivf", description=__doc__.split("\n\n")[0].replace("``", ""))
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="embed a folder or JSONL file into a saved store")
    b.add_argument("docs", help='a folder of .txt/.md/.rst files, or a JSONL file with "text" (+ "id", metadata)')
    b.add_argument("store", help="directory to save the store in")
    b.add_argument("--index", default="auto",
                   help='"auto" (exact, IVF once large), "Flat", "IVF{nlist},Flat", "IVF1024,PQ32", ...')
    b.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: the GPU when present)")
    b.add_argument("--chunk-words", type=int, default=150, help="words per chunk for text files (~200 MiniLM tokens)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(fn=cmd_build)
    q = sub.add_parser("query", help="search a saved store")
    q.add_argument("store", help="a store saved by build (or by a LangChain / LlamaIndex store)")
    q.add_argument("question")
    q.add_argument("-k", type=int, default=4, help="number of hits")
    q.add_argument("--mode", default="dense", choices=["dense", "keyword", "sparse", "hybrid"])
    q.add_argument("--alpha", type=float, default=0.5, help="hybrid weight: 1 dense only, 0 keyword only")
    q.add_argument("--filter", default=None, help="JSON metadata filter, e.g. '{\"source\": \"a.md\"}'")
    q.add_argument("--device", default=None)
    q.set_defaults(fn=cmd_query)
    i = sub.add_parser("info", help="what a saved store holds")
    i.add_argument("store", help="a saved store directory")
    i.set_defaults(fn=cmd_info)
    m = sub.add_parser("bench", help="exact vs IVF search speed and recall on this machine")
    m.add_argument("--n", type=int, default=20_000, help="stored vectors")
    m.add_argument("--dim", type=int, default=384, help="vector dimension")
    m.add_argument("--nq", type=int, default=100, help="queries")
    m.add_argument("-k", type=int, default=10, help="results per query (recall@k)")
    m.add_argument("--device", default=None)
    m.set_defaults(fn=cmd_bench)
    args = ap.parse_args(argv)
    try:
        args.fn(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"torch-ivf {args.command}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
