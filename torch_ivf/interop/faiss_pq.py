"""from_faiss / to_faiss for IndexIVFPQ: coarse centroids, PQ codebooks, codes and labels carried over
unchanged (codes are unpacked from / packed to Faiss's bit stream), so searches return the same ids."""
from __future__ import annotations

import numpy as np
import torch

from ..index.ivf_pq import IndexIVFPQ
from ..pq import pack_codes, unpack_codes
from .faiss import (_FROM, _TO, _faiss, load_lists, metric_from_faiss, metric_to_faiss, read_faiss_lists,
                    stored_rows, write_faiss_lists)


def _is_ivfpq(faiss_index) -> bool:
    faiss = _faiss()
    return type(faiss_index) is faiss.IndexIVFPQ


def ivfpq_from_faiss(ivf, device=None, dtype=torch.float32) -> IndexIVFPQ:
    faiss = _faiss()
    pq = ivf.pq
    index = IndexIVFPQ(ivf.d, ivf.nlist, pq.M, pq.nbits, metric_from_faiss(ivf), by_residual=bool(ivf.by_residual),
                       nprobe=max(1, ivf.nprobe), device=device, dtype=dtype)
    index.centroids = torch.from_numpy(ivf.quantizer.reconstruct_n(0, ivf.nlist)).float().to(index.device)
    cb = faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub)
    index.pq.set_centroids(torch.from_numpy(cb))
    for lst, ids, codes in read_faiss_lists(ivf):
        codes_t = torch.from_numpy(unpack_codes(codes, pq.M, pq.nbits)).to(index.device)
        lists = torch.full((len(ids),), lst, dtype=torch.int64, device=index.device)
        fields = index._fields_from_codes(codes_t, lists)
        fields["labels"] = torch.from_numpy(ids)
        load_lists(index, np.full(len(ids), lst), fields)
    return index


def ivfpq_to_faiss(index: IndexIVFPQ):
    faiss = _faiss()
    metric = metric_to_faiss(index)
    quantizer = faiss.IndexFlat(index.d, metric)
    quantizer.add(index.centroids.cpu().numpy())
    out = faiss.IndexIVFPQ(quantizer, index.d, index.nlist, index.M, index.nbits, metric)
    out.by_residual = index.by_residual
    faiss.copy_array_to_vector(index.pq.centroids.cpu().numpy().reshape(-1), out.pq.centroids)
    out.is_trained = True
    out.nprobe = min(index.nprobe, index.nlist)
    out.precompute_table()
    pos, lists, labels = stored_rows(index)
    codes = pack_codes(index.codec.code_rows(index.invlists, pos).cpu().numpy(), index.nbits)
    write_faiss_lists(out, lists, labels, codes)
    quantizer.this.disown()  # faiss frees the quantizer with the index
    out.own_fields = True
    return out


_FROM.append((_is_ivfpq, ivfpq_from_faiss))
_TO.append((IndexIVFPQ, ivfpq_to_faiss))
