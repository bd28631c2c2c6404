"""from_faiss / to_faiss for Flat and IVFFlat: centroids, lists and labels carried over as they are,
so a converted index returns the same results. Other index types register converters here."""
from __future__ import annotations

import numpy as np
import torch

from ..index.flat import IndexFlat
from ..index.ivf_flat import IndexIVFFlat

_FROM: list = []  # (predicate(faiss_index), converter(faiss_index, device, dtype))
_TO: list = []  # (our class, converter(index))


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - exercised only without faiss
        raise ImportError("faiss is needed for this conversion: pip install faiss-cpu "
                          "(the faiss extra of the torch-ivf checkout)") from e
    return faiss


def metric_from_faiss(faiss_index) -> str:
    faiss = _faiss()
    if faiss_index.metric_type == faiss.METRIC_L2:
        return "l2"
    if faiss_index.metric_type == faiss.METRIC_INNER_PRODUCT:
        return "ip"
    raise ValueError(f"faiss metric_type {faiss_index.metric_type} is not supported (only L2 and inner product)")


def metric_to_faiss(index) -> int:
    faiss = _faiss()
    # cosine indexes store normalised vectors, so faiss sees plain inner product (normalise queries yourself).
    return faiss.METRIC_L2 if index.metric == "l2" else faiss.METRIC_INNER_PRODUCT


def read_faiss_lists(ivf, code_dtype=np.uint8):
    """Yield (list_no, ids int64 (n,), codes (n, code_size)) for every non-empty list of a faiss IVF."""
    faiss = _faiss()
    invlists = ivf.invlists
    for lst in range(ivf.nlist):
        n = invlists.list_size(lst)
        if n == 0:
            continue
        ids = faiss.rev_swig_ptr(invlists.get_ids(lst), n).copy().astype(np.int64)
        codes = faiss.rev_swig_ptr(invlists.get_codes(lst), n * invlists.code_size).copy()
        yield lst, ids, codes.reshape(n, invlists.code_size).view(code_dtype)


def write_faiss_lists(ivf, lists: torch.Tensor, labels: torch.Tensor, codes: np.ndarray) -> None:
    """Append codes (n, code_size bytes) with labels to the given faiss lists, keeping our list order."""
    faiss = _faiss()
    lists_np = lists.cpu().numpy()
    labels_np = np.ascontiguousarray(labels.cpu().numpy().astype(np.int64))
    codes = np.ascontiguousarray(codes.view(np.uint8).reshape(len(lists_np), -1))
    for lst in np.unique(lists_np):
        rows = np.nonzero(lists_np == lst)[0]
        ids = np.ascontiguousarray(labels_np[rows])
        block = np.ascontiguousarray(codes[rows])
        ivf.invlists.add_entries(int(lst), len(rows), faiss.swig_ptr(ids), faiss.swig_ptr(block))
    ivf.ntotal = ivf.ntotal + len(lists_np)


def load_lists(index, lists: np.ndarray, fields: dict[str, torch.Tensor]) -> None:
    """Put already-encoded rows into the given lists of our index (no re-assignment)."""
    lists_t = torch.as_tensor(lists, dtype=torch.int64, device=index.device)
    index.invlists.append(lists_t, {k: v.to(index.device) for k, v in fields.items()})
    if len(lists_t):
        index.next_label = max(index.next_label, int(fields["labels"].max()) + 1)


def stored_rows(index):
    """(lists, labels) of every stored vector in list order, with the slab rows they sit in."""
    pos, lists = index.invlists.live_positions()
    return pos, lists, index.invlists.labels_at(pos)


def from_faiss(faiss_index, *, device=None, dtype=torch.float32):
    """Convert a faiss Flat or IVFFlat index (or any type with a registered converter)."""
    faiss = _faiss()
    for accepts, convert in _FROM:
        if accepts(faiss_index):
            return convert(faiss_index, device, dtype)
    if isinstance(faiss_index, faiss.IndexFlat):
        index = IndexFlat(faiss_index.d, metric_from_faiss(faiss_index), device=device, dtype=dtype)
        if faiss_index.ntotal:
            index.add(faiss_index.reconstruct_n(0, faiss_index.ntotal))
        return index
    if isinstance(faiss_index, faiss.IndexIVFFlat):
        ivf = faiss_index
        index = IndexIVFFlat(ivf.d, ivf.nlist, metric_from_faiss(ivf), nprobe=ivf.nprobe, device=device, dtype=dtype)
        index.centroids = torch.from_numpy(ivf.quantizer.reconstruct_n(0, ivf.nlist)).float().to(index.device)
        for lst, ids, codes in read_faiss_lists(ivf, np.float32):
            x = torch.from_numpy(codes).to(index.device)
            fields = index._encode(x, torch.full((len(ids),), lst, dtype=torch.int64, device=index.device))
            fields["labels"] = torch.from_numpy(ids)
            load_lists(index, np.full(len(ids), lst), fields)
        return index
    raise TypeError(f"from_faiss does not support {type(faiss_index).__name__}")


def to_faiss(index):
    """Convert to the matching faiss index (cosine becomes inner product over the stored unit vectors)."""
    faiss = _faiss()
    for cls, convert in _TO:
        if type(index) is cls:
            return convert(index)
    metric = metric_to_faiss(index)
    if isinstance(index, IndexFlat):
        out = faiss.IndexFlat(index.d, metric)
        if index.ntotal:
            pos, lists, labels = stored_rows(index)
            x = index._decode(pos, lists).cpu().numpy()
            if not torch.equal(labels.cpu(), torch.arange(index.ntotal)):
                out = faiss.IndexIDMap2(out)
                out.add_with_ids(x, labels.cpu().numpy())
            else:
                out.add(x)
        return out
    if type(index) is IndexIVFFlat:
        quantizer = faiss.IndexFlat(index.d, metric)
        quantizer.add(index.centroids.cpu().numpy())
        out = faiss.IndexIVFFlat(quantizer, index.d, index.nlist, metric)
        out.is_trained = True
        out.nprobe = min(index.nprobe, index.nlist)
        pos, lists, labels = stored_rows(index)
        write_faiss_lists(out, lists, labels, index._decode(pos, lists).cpu().numpy())
        quantizer.this.disown()  # faiss frees the quantizer with the index
        out.own_fields = True
        return out
    raise TypeError(f"to_faiss does not support {type(index).__name__}")
