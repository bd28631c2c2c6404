"""from_faiss / to_faiss for refine indexes: faiss.IndexRefineFlat (or IndexRefine over an IndexFlat)
<-> IndexRefineFlat. The base index goes through its own converter; the refine store keeps float32
vectors under the base's labels (Faiss's refine store is positional, so labels must be 0..n-1)."""
from __future__ import annotations

import torch

from ..index.flat import IndexFlat
from ..index.refine import IndexRefine, IndexRefineFlat
from .faiss import _FROM, _TO, _faiss, from_faiss, metric_to_faiss, to_faiss


def _is_refine(faiss_index) -> bool:
    faiss = _faiss()
    return type(faiss_index) in (faiss.IndexRefineFlat, faiss.IndexRefine)


def refine_from_faiss(fr, device=None, dtype=torch.float32) -> IndexRefineFlat:
    faiss = _faiss()
    store = faiss.downcast_index(fr.refine_index)
    if not isinstance(store, faiss.IndexFlat):
        raise TypeError(f"from_faiss supports refine indexes over an IndexFlat, got {type(store).__name__}")
    base = from_faiss(faiss.downcast_index(fr.base_index), device=device, dtype=dtype)
    out = IndexRefineFlat(IndexFlat(base.d, base.metric, device=base.device), fr.k_factor)
    out.base = base  # constructed around an empty stand-in: the converted base already holds its vectors
    if store.ntotal:
        out.refine.add_with_ids(store.reconstruct_n(0, store.ntotal), torch.arange(store.ntotal))
    out.next_label = base.next_label
    return out


def refine_to_faiss(index: IndexRefine):
    faiss = _faiss()
    labels = index.refine.labels()
    if not torch.equal(torch.sort(labels.cpu()).values, torch.arange(index.ntotal)):
        raise ValueError("to_faiss needs labels 0..ntotal-1 for a refine index (Faiss's refine store is positional)")
    base = to_faiss(index.base)
    store = faiss.IndexFlat(index.d, metric_to_faiss(index))
    if index.ntotal:
        store.add(index.refine.reconstruct_batch(torch.arange(index.ntotal)).float().cpu().numpy())
    out = faiss.IndexRefine(base, store)
    out.k_factor = index.k_factor
    base.this.disown()  # faiss frees both with the refine index
    store.this.disown()
    out.own_fields = out.own_refine_index = True
    return out


_FROM.append((_is_refine, refine_from_faiss))
_TO.extend([(IndexRefine, refine_to_faiss), (IndexRefineFlat, refine_to_faiss)])
