"""from_faiss / to_faiss for the scalar-quantizer indexes: trained ranges, coarse centroids, codes and
labels carried over unchanged (the code layout is Faiss's), so searches return the same ids."""
from __future__ import annotations

import numpy as np
import torch

from ..index.ivf_sq import IndexIVFScalarQuantizer, IndexScalarQuantizer
from .faiss import (_FROM, _TO, _faiss, load_lists, metric_from_faiss, metric_to_faiss, read_faiss_lists,
                    stored_rows, write_faiss_lists)


def _is_sq(faiss_index) -> bool:
    faiss = _faiss()
    return type(faiss_index) in (faiss.IndexScalarQuantizer, faiss.IndexIVFScalarQuantizer)


def _trained(faiss_sq) -> torch.Tensor:
    return torch.from_numpy(_faiss().vector_to_array(faiss_sq.trained).astype(np.float32))


def sq_from_faiss(f, device=None, dtype=torch.float32):
    faiss = _faiss()
    metric = metric_from_faiss(f)
    if type(f) is faiss.IndexScalarQuantizer:
        index = IndexScalarQuantizer(f.d, f.sq.qtype, metric, device=device)
        index.sq.set_trained(_trained(f.sq))
        if f.ntotal:
            codes = faiss.vector_to_array(f.codes).reshape(f.ntotal, f.sq.code_size)
            lists = np.zeros(f.ntotal, dtype=np.int64)
            fields = index._fields_from_codes(torch.from_numpy(codes).to(index.device), torch.from_numpy(lists))
            fields["labels"] = torch.arange(f.ntotal)
            load_lists(index, lists, fields)
        return index
    index = IndexIVFScalarQuantizer(f.d, f.nlist, f.sq.qtype, metric, bool(f.by_residual),
                                    nprobe=max(1, f.nprobe), device=device)
    index.centroids = torch.from_numpy(f.quantizer.reconstruct_n(0, f.nlist))
    index.sq.set_trained(_trained(f.sq))
    for lst, ids, codes in read_faiss_lists(f):
        lists = torch.full((len(ids),), lst, dtype=torch.int64, device=index.device)
        fields = index._fields_from_codes(torch.from_numpy(codes).to(index.device), lists)
        fields["labels"] = torch.from_numpy(ids)
        load_lists(index, np.full(len(ids), lst), fields)
    return index


def _codes(index, pos) -> np.ndarray:
    return index.invlists.gather("codes", pos).cpu().numpy()


def sq_to_faiss(index):
    faiss = _faiss()
    metric = metric_to_faiss(index)
    if isinstance(index, IndexScalarQuantizer):
        out = faiss.IndexScalarQuantizer(index.d, index.qtype, metric)
        faiss.copy_array_to_vector(index.sq.trained.cpu().numpy(), out.sq.trained)
        out.is_trained = True
        pos, _, labels = stored_rows(index)
        positional = torch.equal(labels.cpu(), torch.arange(index.ntotal))
        wrapped = out if positional else faiss.IndexIDMap2(out)  # faiss wraps only an empty index
        if index.ntotal:
            faiss.copy_array_to_vector(_codes(index, pos).reshape(-1), out.codes)
            out.ntotal = index.ntotal
        if positional:
            return out
        faiss.copy_array_to_vector(labels.cpu().numpy(), wrapped.id_map)
        wrapped.ntotal = index.ntotal
        wrapped.construct_rev_map()
        out.this.disown()  # faiss frees it with the wrapper
        wrapped.own_fields = True
        return wrapped
    quantizer = faiss.IndexFlat(index.d, metric)
    quantizer.add(index.centroids.cpu().numpy())
    out = faiss.IndexIVFScalarQuantizer(quantizer, index.d, index.nlist, index.qtype, metric, index.by_residual)
    faiss.copy_array_to_vector(index.sq.trained.cpu().numpy(), out.sq.trained)
    out.is_trained = True
    out.nprobe = min(index.nprobe, index.nlist)
    pos, lists, labels = stored_rows(index)
    write_faiss_lists(out, lists, labels, _codes(index, pos))
    quantizer.this.disown()  # faiss frees the quantizer with the index
    out.own_fields = True
    return out


_FROM.append((_is_sq, sq_from_faiss))
_TO.extend([(IndexScalarQuantizer, sq_to_faiss), (IndexIVFScalarQuantizer, sq_to_faiss)])
