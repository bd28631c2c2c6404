"""BM25 keyword retrieval over the collection's stored texts, scored with torch on the index's device.

Exact identifiers, error codes and rare words are where dense sentence embeddings miss; BM25 finds them.

Tokens: lower-cased runs of letters, digits and ``_`` (``\\w+``), so ``O_NONBLOCK`` and ``EADDRINUSE``
stay whole while ``ls -la`` gives ``ls`` and ``la``. No stemming and no stop list: BM25's IDF already
gives words that most documents contain almost no weight.

Score of document D for query Q (each distinct query term counted once), with N live documents, df(t)
of them containing t, tf(t, D) occurrences of t in D, |D| its token count and avgdl the mean of |D|::

    idf(t)     = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    bm25(D, Q) = sum over t in Q of idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |D| / avgdl))

with k1 = 1.2 and b = 0.75 (Lucene's defaults). Relevance is bm25 divided by its bound for that
query, sum of idf(t) * (k1 + 1), so it lies in [0, 1) and does not depend on ``k`` or on a filter.

Documents are tokenised when they are written; the term-major postings the scorer reads are rebuilt
on the first keyword search after a write (one sort over all postings), so a burst of upserts costs
one rebuild and dense-only use costs nothing (the collection creates this index on first use).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

import numpy as np
import torch

K1 = 1.2
B = 0.75
_TOKEN = re.compile(r"\w+")


def tokenize(text: str | None) -> list[str]:
    """Lower-cased ``\\w+`` tokens of ``text`` (None -> no tokens)."""
    return _TOKEN.findall(text.lower()) if text else []


class KeywordIndex:
    """Per-label term counts with BM25 scoring; labels are the collection's int64 labels."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self._vocab: dict[str, int] = {}
        # label -> (distinct term ids, their counts, token count)
        self._docs: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
        self._postings = None  # built lazily by _compiled(); None after every write

    def __len__(self) -> int:
        return len(self._docs)

    # ---- writing ------------------------------------------------------------------------------
    def add(self, labels: Iterable[int], texts: Iterable[str | None]) -> None:
        """Index ``texts`` under ``labels`` (a label already present is replaced)."""
        vocab = self._vocab
        for label, text in zip(labels, texts):
            tokens = tokenize(text)
            counts = Counter(tokens)  # C-accelerated; 1.4x faster than np.unique per document
            terms = np.fromiter((vocab.setdefault(t, len(vocab)) for t in counts), dtype=np.int64, count=len(counts))
            self._docs[int(label)] = (terms, np.fromiter(counts.values(), dtype=np.float32, count=len(counts)),
                                      len(tokens))
        self._postings = None

    def remove(self, labels: Iterable[int]) -> None:
        for label in labels:
            self._docs.pop(int(label), None)
        self._postings = None

    def clear(self) -> None:
        self._docs.clear()
        self._vocab.clear()
        self._postings = None

    # ---- scoring ------------------------------------------------------------------------------
    def _compiled(self):
        """Term-major postings on the device: (indptr, rows, tf, doc length per row, labels per row,
        row per label (-1 = none))."""
        if self._postings is not None:
            return self._postings
        labels = np.fromiter(self._docs.keys(), dtype=np.int64, count=len(self._docs))
        docs = list(self._docs.values())
        sizes = np.fromiter((len(t) for t, _, _ in docs), dtype=np.int64, count=len(docs))
        lengths = np.fromiter((n for _, _, n in docs), dtype=np.float32, count=len(docs))
        if docs and sizes.sum():
            terms = np.concatenate([t for t, _, _ in docs])
            tfs = np.concatenate([c for _, c, _ in docs])
        else:
            terms, tfs = np.empty(0, np.int64), np.empty(0, np.float32)
        rows = np.repeat(np.arange(len(docs), dtype=np.int64), sizes)
        order = np.argsort(terms, kind="stable")
        indptr = np.zeros(len(self._vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(terms, minlength=len(self._vocab)), out=indptr[1:])
        row_of = np.full(int(labels.max()) + 1 if len(labels) else 0, -1, dtype=np.int64)
        row_of[labels] = np.arange(len(labels))
        dev = self.device
        self._postings = (indptr, torch.from_numpy(rows[order]).to(dev), torch.from_numpy(tfs[order]).to(dev),
                          torch.from_numpy(lengths).to(dev), torch.from_numpy(labels).to(dev),
                          torch.from_numpy(row_of).to(dev))
        return self._postings

    def scores(self, query: str, allowed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(relevance in [0, 1), labels) for every live document, one entry per document.

        ``allowed`` is a bool mask over labels (None = all): documents outside it score 0.
        """
        indptr, rows, tfs, lengths, labels, _ = self._compiled()
        n = int(labels.numel())
        out = torch.zeros(n, dtype=torch.float32, device=self.device)
        terms = sorted({self._vocab[t] for t in tokenize(query) if t in self._vocab})
        if not n or not terms:
            return out, labels
        avgdl = max(float(lengths.mean()), 1e-9)
        norm = K1 * (1.0 - B + B * lengths / avgdl)  # per row
        bound = 0.0
        for t in terms:
            start, end = int(indptr[t]), int(indptr[t + 1])
            if start == end:
                continue
            idf = math.log(1.0 + (n - (end - start) + 0.5) / (end - start + 0.5))
            bound += idf * (K1 + 1.0)
            r, tf = rows[start:end], tfs[start:end]
            out.index_add_(0, r, idf * tf * (K1 + 1.0) / (tf + norm[r]))
        if bound > 0:
            out /= bound
        if allowed is not None:
            out = torch.where(allowed[labels], out, torch.zeros((), device=self.device))
        return out, labels

    def lookup(self, rel: torch.Tensor, labels: list[int]) -> torch.Tensor:
        """Entries of ``rel`` (as returned by :meth:`scores`) for live ``labels``."""
        row_of = self._compiled()[5]
        return rel[row_of[torch.tensor(labels, dtype=torch.int64, device=row_of.device)]]

    def top(self, query: str, k: int, allowed: torch.Tensor | None = None) -> tuple[list[int], list[float]]:
        """Labels and relevances of the ``k`` best documents that contain a query term."""
        rel, labels = self.scores(query, allowed)
        hits = int((rel > 0).sum())
        if not hits:
            return [], []
        vals, pos = torch.topk(rel, min(k, hits))
        return labels[pos].tolist(), vals.tolist()
