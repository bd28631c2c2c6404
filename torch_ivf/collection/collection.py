"""Collection: a framework-neutral document store over a torch_ivf index.

Holds texts + metadata under string ids, the vectors in the index under int64 labels, and turns
filters into label masks that the index applies inside its scan. The LangChain and LlamaIndex
adapters only translate their types to and from this class.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..arrays import positive_int
from . import persist
from ..devices import resolve_device
from .embeddings import Embedder, as_embedder, embed_in_batches
from .filters import compile_filter, filter_cache_key
from .fusion import blend, check_alpha, check_mode
from .indexing import IndexPlan, is_ivf
from .inputs import check_text, clean_metadata
from .keyword import KeywordIndex
from .mmr import mmr_select
from .records import Hit, Record, RecordTable, copy_metadata
from .scores import check_metric, index_metric, relevance

Filter = Mapping[str, Any] | Callable[[Mapping[str, Any]], bool] | None
log = logging.getLogger("torch_ivf.collection")  # a child of "torch_ivf": configure that one

_MASK_CACHE_SIZE = 16
_TRAIN_POINTS_PER_LIST = 256  # k-means sample size per list (Faiss's default cap)
_HYBRID_MIN_FETCH = 40  # hybrid candidates per ranking: at least this many, or 4k


def _str_list(values: Any, name: str) -> list[str]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a list of strings, got {type(values).__name__}")
    out = list(values)
    for v in out:
        if not isinstance(v, str):
            raise TypeError(f"{name} must contain only strings, got {type(v).__name__}")
    return out


class Collection:
    """Documents (id, text, metadata, vector) with filtered search, MMR, upsert/delete, save/load.

    Args:
        embedding: anything :func:`as_embedder` accepts (LangChain / LlamaIndex embeddings, a
            sentence-transformers model, a callable texts -> (n, d) array), or None to pass vectors.
        dim: vector dimension (default: taken from the first vectors added).
        index: "auto" (exact until IVF wins on this device), "Flat", "IVF{nlist},Flat",
            "IVF1024,Flat", "IVF{nlist},SQ8" or "sq8" (8-bit codes: a quarter of the memory of
            float32 vectors at nearly their recall), "IVF1024,PQ32", ... (index_factory strings).
            An explicit IVF spec searches exactly until there are enough documents to train it.
        metric: "cosine" (default), "ip" or "l2".
        device: torch device of the index; None picks the GPU when torch sees one.
        nprobe: lists scanned per query on IVF indexes (default: chosen with the index).
        batch_size: texts embedded per model call.
        progress: progress bars for embedding and IVF (re)training: True always, False never, None
            for long work (embedding 256 texts or more; long k-means on a terminal).

    Raises:
        ValueError: a bad metric, index spec, dim or batch_size, or a device that does not exist
            (named with the fix, before any embedding).
        TypeError: an embedding of no supported kind.
    """

    # A filter allowing at most this many documents (or 1/16 of them) is served by exact search over
    # just those vectors (an index cached with the filter's mask) instead of scanning everything or
    # probing IVF lists: less work, and it cannot miss a match in an unprobed list.
    exact_subset_min = 4096

    def __init__(self, embedding: Any = None, *, dim: int | None = None, index: str = "auto",
                 metric: str = "cosine", device: str | torch.device | None = None,
                 nprobe: int | None = None, batch_size: int = 64, progress: bool | None = None):
        self.metric = check_metric(metric)
        if dim is not None:
            dim = positive_int(dim, "dim")
        self.batch_size = positive_int(batch_size, "batch_size")
        self.embedder: Embedder | None = as_embedder(embedding)
        self.device = resolve_device(device)
        self.plan = IndexPlan(index, index_metric(self.metric), self.device, nprobe)
        self.progress = progress
        self.dim = dim
        self._table = RecordTable()
        self._index = None
        self._trained_n = 0
        self._version = 0
        # filter key -> [version, mask, count, exact index over just the matches (built on demand)]
        self._masks: OrderedDict[str, list] = OrderedDict()
        self._keyword: KeywordIndex | None = None  # built from the stored texts on first keyword search
        self._warned_small = False
        self._lock = threading.RLock()

    # ---- sizes and introspection ------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._table

    @property
    def index(self):
        """The underlying torch_ivf index (None while empty)."""
        return self._index

    @property
    def index_description(self) -> str:
        """What searches run on: "empty", "Flat (exact)" or "IVF<nlist>,<codec> (nprobe=...)"."""
        if self._index is None:
            return "empty"
        if is_ivf(self._index):
            return f"IVF{self._index.nlist},{self.plan.codec()} (nprobe={self._index.nprobe})"
        return "Flat (exact)"

    def describe(self) -> str:
        """One line: documents, device, index and metric (what the stores log when they start)."""
        return (f"{len(self)} documents on {self.device}, index {self.index_description} "
                f"(spec {self.plan.spec!r}), metric {self.metric}")

    # ---- writing ------------------------------------------------------------------------------
    def upsert(self, texts: Sequence[str | None] | None = None, *, ids: Sequence[str | None] | None = None,
               metadatas: Sequence[Mapping[str, Any] | None] | None = None, vectors: Any = None,
               batch_size: int | None = None, progress: bool | None = None) -> list[str]:
        """Add documents; an existing id is replaced (text, metadata and vector). Returns the ids.

        Everything is validated (and embedded) before the collection changes, so a bad argument
        raises ValueError/TypeError and leaves the collection as it was. Metadata must be what JSON
        holds and gives back unchanged (see :mod:`torch_ivf.collection.inputs`: str keys, no sets,
        bytes, datetimes, NaN; tuples and numpy scalars are converted); texts and ids valid Unicode.
        """
        n = None
        if texts is not None:
            if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
                raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}")
            texts = list(texts)
            for t in texts:
                if t is not None and not isinstance(t, str):
                    raise TypeError(f"texts must contain strings, got {type(t).__name__}")
            n = len(texts)
        if vectors is not None:
            vectors = self._coerce_vectors(vectors, "vectors")
            if n is not None and vectors.shape[0] != n:
                raise ValueError(f"vectors has {vectors.shape[0]} rows for {n} texts")
            n = vectors.shape[0]
        if n is None:
            raise ValueError("upsert needs texts, vectors or both")
        if ids is None:
            ids = [None] * n
        else:
            if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
                raise TypeError(f"ids must be a list of strings, got {type(ids).__name__}")
            ids = list(ids)
            if len(ids) != n:
                raise ValueError(f"ids has {len(ids)} entries for {n} documents")
            for i in ids:
                if i is not None and not isinstance(i, str):
                    raise TypeError(f"ids must contain strings, got {type(i).__name__}")
        ids = [i if i else uuid.uuid4().hex for i in ids]
        if metadatas is None:
            metadatas = [None] * n
        else:
            if isinstance(metadatas, (Mapping, str, bytes)) or not isinstance(metadatas, Iterable):
                raise TypeError(f"metadatas must be a list of dicts (one per document), got "
                                f"{type(metadatas).__name__}")
            metadatas = list(metadatas)
            if len(metadatas) != n:
                raise ValueError(f"metadatas has {len(metadatas)} entries for {n} documents")
        # Checked (and copied) now, before embedding: what JSON cannot hold is refused at add, not at save.
        metadatas = [clean_metadata(m, f"metadatas[{row}] (id {ids[row]!r})") for row, m in enumerate(metadatas)]
        for row, doc_id in enumerate(ids):
            check_text(doc_id, f"ids[{row}]")
        if texts is None:
            texts = [None] * n
        else:
            for row, t in enumerate(texts):
                check_text(t, f"texts[{row}] (id {ids[row]!r})")
        if vectors is None:
            if self.embedder is None:
                raise ValueError("vectors are required: this collection has no embedding model")
            if any(t is None for t in texts):
                raise ValueError("texts must not contain None when they are to be embedded")
            bs = self.batch_size if batch_size is None else positive_int(batch_size, "batch_size")
            shown = self.progress if progress is None else progress
            vectors = self._coerce_vectors(embed_in_batches(self.embedder, texts, bs, shown), "embedding")
        if n == 0:
            return []
        if self.metric == "cosine":
            vectors = torch.nn.functional.normalize(vectors, dim=1)
        # Last occurrence of a repeated id wins, as if the rows were upserted one by one.
        last = {doc_id: row for row, doc_id in enumerate(ids)}
        rows = sorted(last.values())
        records = [Record(ids[r], texts[r], metadatas[r]) for r in rows]
        with self._lock:
            self.dim = vectors.shape[1]
            self._drop_labels(self._table.labels_of(last))
            for rec in records:
                self._table.pop(rec.id)
            labels = torch.tensor([self._table.put(rec) for rec in records], dtype=torch.int64)
            if self._index is None:
                self._index = self.plan.new_flat(self.dim)
            self._index.add_with_ids(vectors[rows].to(self.device), labels.to(self.device))
            if self._keyword is not None:
                self._keyword.add(labels.tolist(), [rec.text for rec in records])
            self._changed()
            self._maybe_reindex()
        return list(ids)

    def delete(self, ids: Iterable[str]) -> int:
        """Delete by id; unknown ids are ignored. Returns how many documents were removed."""
        ids = _str_list(ids, "ids")
        with self._lock:
            labels = self._table.labels_of(dict.fromkeys(ids))
            self._drop_labels(labels)
            for doc_id in ids:
                self._table.pop(doc_id)
            if labels:
                self._changed()
            return len(labels)

    def delete_where(self, filter: Filter) -> int:
        """Delete every document whose metadata matches ``filter``."""
        with self._lock:
            return self.delete([r.id for r in self.records(filter=filter)])

    def clear(self) -> None:
        """Delete every document (and the index; the next upsert starts afresh)."""
        with self._lock:
            self._table.clear()
            self._index = None
            self._keyword = None
            self._trained_n = 0
            self._changed()

    # ---- reading ------------------------------------------------------------------------------
    def get(self, ids: Iterable[str]) -> list[Record]:
        """Records for the ids that exist, in the order asked (missing ids are skipped)."""
        ids = _str_list(ids, "ids")
        with self._lock:
            return [self._copy(r) for r in (self._table.get(i) for i in ids) if r is not None]

    def records(self, *, filter: Filter = None, ids: Iterable[str] | None = None) -> list[Record]:
        """Every record matching ``filter`` (and among ``ids`` when given), in insertion order."""
        predicate = compile_filter(filter)
        with self._lock:
            if ids is not None:
                pool = [r for r in (self._table.get(i) for i in _str_list(ids, "ids")) if r is not None]
            else:
                pool = list(self._table.by_label.values())
            return [self._copy(r) for r in pool if predicate is None or predicate(r.metadata)]

    def vectors(self, ids: Iterable[str]) -> torch.Tensor:
        """Stored vectors (unit length under cosine) for the ids that exist, as float32 on CPU."""
        ids = _str_list(ids, "ids")
        with self._lock:
            labels = self._table.labels_of(ids)
            if not labels:
                return torch.empty(0, self.dim or 0)
            return self._reconstruct(labels).cpu()

    # ---- searching ----------------------------------------------------------------------------
    def search(self, query: str | Any, k: int = 4, *, mode: str = "dense", alpha: float = 0.5,
               text: str | None = None, filter: Filter = None, ids: Iterable[str] | None = None,
               score_threshold: float | None = None, nprobe: int | None = None,
               fetch_k: int | None = None) -> list[Hit]:
        """Top-k documents for a text or vector query; ``score`` is relevance in [0, 1].

        ``mode``:
          * ``"dense"`` (default): nearest embeddings; score from the metric (see ``scores``).
          * ``"keyword"`` (or ``"sparse"``): BM25 over the stored texts; only documents that
            contain a query term are returned; score = BM25 / its bound for the query (in [0, 1)).
          * ``"hybrid"``: ``alpha * dense + (1 - alpha) * keyword`` over the union of each
            ranking's top ``fetch_k`` (default ``max(4 k, 40)``), both scores computed exactly for
            every candidate. ``alpha=1`` is exactly dense, ``alpha=0`` exactly keyword.

        ``query`` is a text, or a vector; keyword and hybrid search need the text, so with a
        vector pass it as ``text``. ``filter`` and ``ids`` restrict every mode inside the scan:
        dense and hybrid return k hits whenever k documents match, keyword whenever k matching
        documents contain a query term. ``distance`` of a hit is the dense index's raw value
        (NaN in keyword mode, where no embedding is compared).
        """
        k = positive_int(k, "k")
        mode = check_mode(mode)
        alpha = check_alpha(alpha)
        if mode == "hybrid" and alpha in (0.0, 1.0):
            mode = "dense" if alpha == 1.0 else "keyword"
        if score_threshold is not None and not isinstance(score_threshold, (int, float)):
            raise TypeError(f"score_threshold must be a number, got {type(score_threshold).__name__}")
        if nprobe is not None:
            nprobe = positive_int(nprobe, "nprobe")
        fetch_k = max(k * 4, _HYBRID_MIN_FETCH) if fetch_k is None else max(positive_int(fetch_k, "fetch_k"), k)
        if text is not None and not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        words = query if isinstance(query, str) else text
        if mode != "dense" and words is None:
            raise ValueError(f"mode={mode!r} needs the query text: pass a string query, or text= with a vector")
        predicate = compile_filter(filter)
        predicate_key = filter_cache_key(filter)
        id_list = None if ids is None else _str_list(ids, "ids")
        q = None if mode == "keyword" else self._query_vector(query)
        with self._lock:
            if mode == "dense":
                hits = self._search_locked(q, k, predicate, predicate_key, id_list, nprobe)
            elif mode == "keyword":
                hits = self._keyword_locked(words, k, predicate, predicate_key, id_list)
            else:
                hits = self._hybrid_locked(q, words, k, alpha, fetch_k, predicate, predicate_key,
                                           id_list, nprobe)
        if score_threshold is not None:
            hits = [h for h in hits if h.score >= score_threshold]
        return hits

    def mmr(self, query: str | Any, k: int = 4, *, fetch_k: int = 20, lambda_mult: float = 0.5,
            filter: Filter = None, ids: Iterable[str] | None = None,
            nprobe: int | None = None) -> list[Hit]:
        """Maximal marginal relevance: ``fetch_k`` nearest candidates, ``k`` diverse picks.

        ``lambda_mult`` 1 = pure relevance, 0 = pure diversity.
        """
        k = positive_int(k, "k")
        fetch_k = max(positive_int(fetch_k, "fetch_k"), k)
        if not isinstance(lambda_mult, (int, float)) or not 0.0 <= float(lambda_mult) <= 1.0:
            raise ValueError(f"lambda_mult must be a number in [0, 1], got {lambda_mult!r}")
        q = self._query_vector(query)
        predicate = compile_filter(filter)
        id_list = None if ids is None else _str_list(ids, "ids")
        with self._lock:
            pool = self._search_locked(q, fetch_k, predicate, filter_cache_key(filter), id_list, nprobe)
            if not pool:
                return []
            vecs = self._reconstruct([h.label for h in pool])
            order = mmr_select(q.to(vecs.device), vecs, k, float(lambda_mult))
        return [pool[i] for i in order]

    # ---- persistence --------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the whole collection to directory ``path`` (atomic; safetensors + JSON)."""
        with self._lock:
            manifest = {"metric": self.metric, "dim": self.dim, "index": self.plan.spec,
                        "nprobe": self.plan.nprobe, "next_label": self._table.next_label,
                        "trained_n": self._trained_n, "count": len(self._table)}
            rows = [{"id": r.id, "label": r.label, "text": r.text, "metadata": r.metadata}
                    for r in self._table.by_label.values()]
            persist.write_dir(path, manifest, rows, self._index)

    @classmethod
    def load(cls, path, embedding: Any = None, *, device: str | torch.device | None = None,
             nprobe: int | None = None, batch_size: int = 64, progress: bool | None = None) -> "Collection":
        """Read a directory written by :meth:`save`, onto ``device`` (default: GPU when present).

        Metric and index spec come from the saved manifest (the stored vectors depend on them).
        """
        device = resolve_device(device)
        manifest, rows, index = persist.read_dir(path, device=device)
        coll = cls(embedding, dim=manifest.get("dim"), device=device, index=manifest["index"],
                   metric=manifest["metric"], nprobe=nprobe if nprobe is not None else manifest.get("nprobe"),
                   batch_size=batch_size, progress=progress)
        for row in rows:
            coll._table.restore(Record(row["id"], row.get("text"), row.get("metadata") or {}, int(row["label"])))
        coll._table.next_label = max(coll._table.next_label, int(manifest.get("next_label", 0)))
        if index is not None and nprobe is not None and is_ivf(index):
            index.nprobe = coll.plan.default_nprobe(index.nlist)
        coll._index = index
        coll._trained_n = int(manifest.get("trained_n", 0))
        if index is not None and int(index.ntotal) != len(coll._table):
            raise ValueError(f"corrupt collection at {str(path)!r}: index holds {index.ntotal} vectors "
                             f"for {len(coll._table)} records")
        return coll

    # ---- internals ----------------------------------------------------------------------------
    def _changed(self) -> None:
        self._version += 1
        self._masks.clear()

    def _copy(self, rec: Record) -> Record:
        return Record(rec.id, rec.text, copy_metadata(rec.metadata), rec.label)

    def _coerce_vectors(self, x: Any, name: str) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            t = x.detach().to("cpu", torch.float32)
        else:
            try:
                t = torch.as_tensor(np.asarray(x, dtype=np.float32))
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{name} must be a 2-D array of numbers: {exc}") from exc
        if t.ndim == 1 and t.numel() == 0:
            t = t.reshape(0, self.dim or 0)
        if t.ndim != 2:
            raise ValueError(f"{name} must have shape (n, d), got {tuple(t.shape)}")
        if t.shape[0] and self.dim is not None and t.shape[1] != self.dim:
            raise ValueError(f"{name} has dimension {t.shape[1]}, the collection has {self.dim}")
        if t.shape[0] and t.shape[1] == 0:
            raise ValueError(f"{name} has dimension 0")
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or Inf")
        return t

    def _query_vector(self, query: Any) -> torch.Tensor:
        if isinstance(query, str):
            if self.embedder is None:
                raise ValueError("query is text but this collection has no embedding model; pass a vector")
            q = self.embedder.query(query)
        else:
            try:
                raw = query if isinstance(query, torch.Tensor) else np.asarray(query, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"query must be a string or a vector of numbers: {exc}") from exc
            q = self._coerce_vectors(raw.reshape(1, -1), "query")[0]
        if not torch.isfinite(q).all():
            raise ValueError("query embedding contains NaN or Inf")
        if self.dim is not None and q.shape[0] != self.dim:
            raise ValueError(f"query has dimension {q.shape[0]}, the collection has {self.dim}")
        if self.metric == "cosine":
            q = torch.nn.functional.normalize(q, dim=0)
        return q

    def _drop_labels(self, labels: list[int]) -> None:
        if labels and self._index is not None:
            self._index.remove_ids(torch.tensor(labels, dtype=torch.int64, device=self.device))
        if labels and self._keyword is not None:
            self._keyword.remove(labels)

    def _keyword_index(self) -> KeywordIndex:
        if self._keyword is None:
            kw = KeywordIndex(self.device)
            kw.add(self._table.by_label.keys(), (r.text for r in self._table.by_label.values()))
            self._keyword = kw
        return self._keyword

    def _hit(self, label: int, score: float, distance: float) -> Hit | None:
        rec = self._table.by_label.get(label) if label >= 0 else None
        if rec is None:
            return None
        return Hit(rec.id, rec.text, copy_metadata(rec.metadata), score, distance, label)

    def _keyword_locked(self, words, k, predicate, key, id_list) -> list[Hit]:
        if not len(self._table):
            return []
        mask, allowed = self._allowed(predicate, key, id_list)
        if allowed == 0:
            return []
        labels, rel = self._keyword_index().top(words, k, mask)
        return [h for h in (self._hit(lb, s, float("nan")) for lb, s in zip(labels, rel)) if h is not None]

    def _hybrid_locked(self, q, words, k, alpha, fetch_k, predicate, key, id_list, nprobe) -> list[Hit]:
        if not len(self._table):
            return []
        restriction = self._allowed(predicate, key, id_list)
        dense = self._search_locked(q, fetch_k, predicate, key, id_list, nprobe, restriction)
        if not dense:
            return []
        mask = restriction[0]
        keyword = self._keyword_index()
        kw_rel, kw_labels = keyword.scores(words, mask)
        seen = {h.label for h in dense}
        top = torch.topk(kw_rel, min(fetch_k, int((kw_rel > 0).sum()))).indices
        extra = [lb for lb in kw_labels[top].tolist() if lb not in seen]
        labels = [h.label for h in dense] + extra
        dense_rel = [h.score for h in dense]
        distances = [h.distance for h in dense]
        if extra:
            raw = self._raw_distance(q, extra)
            distances += raw.tolist()
            dense_rel += relevance(raw, self.plan.metric).tolist()
        kw = keyword.lookup(kw_rel, labels).cpu()
        order, fused = blend(torch.tensor(dense_rel), kw, alpha, k)
        hits = (self._hit(labels[i], s, distances[i]) for i, s in zip(order, fused))
        return [h for h in hits if h is not None]

    def _raw_distance(self, q: torch.Tensor, labels: list[int]) -> torch.Tensor:
        """The index's raw value (inner product or squared L2) between ``q`` and stored vectors."""
        vecs = self._reconstruct(labels).to(torch.float32)
        q = q.to(vecs.device, torch.float32)
        if self.plan.metric == "l2":
            return ((vecs - q) ** 2).sum(dim=1).cpu()
        return (vecs @ q).cpu()

    def _reconstruct(self, labels: list[int]) -> torch.Tensor:
        return self._index.reconstruct_batch(torch.tensor(labels, dtype=torch.int64, device=self.device))

    def _maybe_reindex(self) -> None:
        n, index = len(self._table), self._index
        if is_ivf(index) and not getattr(index, "lossless", True):
            return  # PQ codes decode to approximations: retraining from them would compound the loss
        nlist = self.plan.needs_change(index.nlist if is_ivf(index) else None, self._trained_n, n, self.dim)
        if nlist is None:
            need = self.plan.min_train_size()
            if need is not None and not is_ivf(index) and n < need and not self._warned_small:
                self._warned_small = True
                log.warning("index=%r needs at least %d documents to train (the collection has %d): "
                            "search stays exact until then", self.plan.spec, need, n)
            return
        labels = torch.tensor(list(self._table.by_label), dtype=torch.int64, device=self.device)
        vecs = index.reconstruct_batch(labels)
        gen = torch.Generator(device="cpu").manual_seed(n)  # deterministic training sample
        sample = torch.randperm(n, generator=gen)[: nlist * _TRAIN_POINTS_PER_LIST].to(vecs.device)
        start = time.perf_counter()
        # the collection's progress setting covers k-means and the re-add too (the CLI's --quiet)
        ivf = self.plan.new_ivf(self.dim, nlist, vecs[sample], None if self.progress is None else bool(self.progress))
        ivf.add_with_ids(vecs, labels)
        log.info("%s IVF%d,%s on %s: k-means on %d of %d vectors (d=%d) + re-adding them took %.2f s; nprobe %d",
                 "retrained" if is_ivf(index) else "trained", nlist, self.plan.codec(), self.device,
                 int(sample.numel()), n, self.dim, time.perf_counter() - start, ivf.nprobe)
        self._index, self._trained_n = ivf, n

    def _allowed(self, predicate, key: str | None, id_list: list[str] | None) -> tuple[torch.Tensor | None, int]:
        """Bool mask over labels (None = everything) and how many live documents it allows."""
        if predicate is None and id_list is None:
            return None, len(self._table)
        cache_key = None if id_list is not None or (predicate is not None and key is None) else key
        if cache_key is not None and cache_key in self._masks:
            version, mask, count, _ = self._masks[cache_key]
            if version == self._version:
                self._masks.move_to_end(cache_key)
                return mask, count
        pool = (self._table.by_label.values() if id_list is None
                else [r for r in (self._table.get(i) for i in id_list) if r is not None])
        labels = [r.label for r in pool if predicate is None or predicate(r.metadata)]
        host = torch.zeros(self._table.next_label, dtype=torch.bool)
        if labels:
            host[torch.tensor(labels, dtype=torch.int64)] = True
        mask = host.to(self.device)
        if cache_key is not None:
            self._masks[cache_key] = [self._version, mask, len(labels), None]
            while len(self._masks) > _MASK_CACHE_SIZE:
                self._masks.popitem(last=False)
        return mask, len(labels)

    def _search_locked(self, q, k, predicate, key, id_list, nprobe, restriction=None) -> list[Hit]:
        if self._index is None or not len(self._table):
            return []
        mask, allowed = restriction or self._allowed(predicate, key, id_list)
        k = min(k, allowed)
        if k == 0:
            return []
        cache_key = key if id_list is None else None
        D, I = self._search_index(q.to(self.device).reshape(1, -1), k, mask, allowed, nprobe, cache_key)
        rel = relevance(D[0], self.plan.metric).tolist()
        hits = (self._hit(label, score, dist) for label, dist, score in zip(I[0].tolist(), D[0].tolist(), rel))
        return [h for h in hits if h is not None]

    def _search_index(self, q, k, mask, allowed, nprobe, cache_key=None):
        from torch_ivf import SearchParams

        index = self._index
        ivf = is_ivf(index)
        if mask is not None and allowed <= max(self.exact_subset_min, index.ntotal // 16):
            entry = self._masks.get(cache_key) if cache_key is not None else None
            if entry is not None and entry[0] == self._version:
                if entry[3] is None:
                    entry[3] = self._subset_index(mask)
                return entry[3].search(q, k)
            # One-off filter (callable, ids): one exhaustive masked scan beats building a subset.
            return index.search(q, k, params=SearchParams(nprobe=index.nlist if ivf else None, allowed=mask))
        if not ivf:
            return index.search(q, k, params=SearchParams(allowed=mask))
        D, I = index.search(q, k, params=SearchParams(nprobe=nprobe, allowed=mask))
        if int((I >= 0).sum(dim=1).min()) < k:
            # Probed lists held fewer than k matches: widen to every list so k hits come back.
            D, I = index.search(q, k, params=SearchParams(nprobe=index.nlist, allowed=mask))
        return D, I

    def _subset_index(self, mask):
        """Exact index over just the allowed vectors; cached with the mask until the next write."""
        from torch_ivf import IndexFlat

        labels = torch.nonzero(mask, as_tuple=False).flatten()
        exact = IndexFlat(self.dim, metric=self.plan.metric, device=self.device)
        exact.add_with_ids(self._index.reconstruct_batch(labels), labels)
        return exact
