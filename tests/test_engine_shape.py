"""The engine's parts as objects: a shareable coarse quantizer, typed per-query state that receives the
coarse scores, IndexFlat without IVF settings."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import torch_ivf as ti
from conftest import clustered


@pytest.fixture(scope="module")
def data():
    x = clustered(2100, 32, centres=20, seed=11)
    return x[:2000], x[2000:]


def test_ivf_indexes_share_the_quantizer_object_as_in_faiss(data):
    xb, xq = data
    q = ti.IndexFlatL2(32)
    a = ti.IndexIVFFlat(q, 32, 16, ti.METRIC_L2)
    assert a.quantizer is q and not a.is_trained
    a.train(xb)  # training the IVF index trains (fills) the quantizer it was given
    assert q.ntotal == 16 and torch.equal(a.centroids, q.reconstruct_n(0, 16))
    b = ti.IndexIVFFlat(q, 32, 16, ti.METRIC_L2)
    assert b.is_trained and b.quantizer is q
    a.add(xb)
    b.add(xb)
    a.nprobe = b.nprobe = 4
    for x, y in zip(a.search(xq, 10), b.search(xq, 10)):
        np.testing.assert_array_equal(x, y)
    pq = ti.IndexIVFPQ(q, 32, 16, 8, 8)  # another codec on the same trained quantizer
    pq.train(xb)
    assert q.ntotal == 16 and torch.equal(pq.centroids, a.centroids)


def test_quantizer_with_wrong_size_is_refused():
    q = ti.IndexFlatL2(8)
    q.add(np.zeros((3, 8), np.float32))
    with pytest.raises(ValueError, match="nlist"):
        ti.IndexIVFFlat(q, 8, 4)
    with pytest.raises(ValueError, match="d=16"):
        ti.IndexIVFFlat(ti.IndexFlatL2(8), 16, 4)


@pytest.mark.parametrize("description", ["IVF16,Flat", "IVF16,PQ8", "IVF16,PQ8Panorama4", "IVF16,FlatPanorama4"])
def test_query_state_is_typed_and_takes_the_coarse_scores(data, description):
    xb, xq = data
    index = ti.index_factory(32, description)
    index.train(xb)
    q = torch.from_numpy(xq)
    probe, coarse = index.coarse.probe(q, 4)
    state = index.scanner.prepare(q, probe, coarse)
    assert dataclasses.is_dataclass(state) and state.coarse is coarse
    if hasattr(state, "ct") and getattr(index, "by_residual", False):  # IVFPQ: no second coarse GEMM
        assert torch.equal(state.ct, coarse.gather(1, probe))


def test_flat_has_no_ivf_settings():
    flat = ti.IndexFlat(8)
    for name in ("nprobe", "search_mode", "max_codes", "seed", "niter", "nlist", "centroids"):
        assert not hasattr(flat, name), name
    assert not isinstance(flat, ti.IndexIVF)


def test_nprobe_positional_in_ivf_search(data):
    xb, xq = data
    index = ti.IndexIVFFlat(32, 16)
    index.train(xb)
    index.add(xb)
    for a, b in zip(index.search(xq, 5, 8), index.search(xq, 5, params=ti.SearchParams(nprobe=8))):
        np.testing.assert_array_equal(a, b)
    assert index.nprobe == 1
    with pytest.raises(ValueError, match="nprobe"):
        index.search(xq, 5, 0)


@pytest.mark.parametrize("description", ["Flat", "SQ8", "IVF16,Flat", "IVF16,SQ8", "IVF16,SQfp16", "IVF16,PQ8",
                                         "IVF16,PQ8Panorama4", "IVF16,FlatPanorama4"])
def test_every_index_type_stores_through_a_codec_object(data, description):
    from torch_ivf.codecs import Codec

    xb, _ = data
    index = ti.index_factory(32, description)
    assert isinstance(index.codec, Codec)
    assert set(index.invlists.specs) == set(index.codec.fields()) | {"labels"}
    index.train(xb)
    index.add(xb[:200])
    pos, lists = index.invlists.live_positions()
    c = index.centroids[lists] if index.codec.by_residual else 0
    rows = index.codec.rows(index.invlists, pos) + c  # decoded through the codec alone
    labels = index.invlists.labels_at(pos)
    np.testing.assert_allclose(index.reconstruct_batch(labels).numpy(), index._untransform(rows).numpy(), atol=1e-5)
    head = index.coarse_code_size() if isinstance(index, ti.IndexIVF) else 0
    assert index.sa_code_size() == head + index.codec.sa_bytes()


@pytest.mark.parametrize("description", ["Flat", "SQ8", "IVF16,Flat", "IVF16,SQ8", "IVF16,SQ4", "IVF16,PQ8"])
def test_indexes_hold_a_scanner_object(data, description):
    import copy

    from torch_ivf.index.flat_codes import FlatScanner
    from torch_ivf.index.ivf_pq import PQScanner
    from torch_ivf.search.scanner import Scanner

    xb, xq = data
    index = ti.index_factory(32, description)
    scanner = index.scanner
    assert type(scanner) is (PQScanner if "PQ" in description else FlatScanner)
    assert scanner is not index and not isinstance(index, Scanner)
    assert scanner.codec is index.codec and scanner.invlists is index.invlists
    assert not hasattr(index, "score_block") and not hasattr(index, "prepare")
    index.train(xb)
    index.add(xb)
    twin = copy.deepcopy(index)  # the copy's scanner reads the copy's lists, not the original's
    assert twin.scanner.invlists is twin.invlists and twin.scanner.codec is twin.codec
    index.remove_ids(np.arange(0, 2000, 2))
    assert twin.ntotal == 2000 and not np.isin(index.search(xq, 10)[1], np.arange(0, 2000, 2)).any()
    assert np.isin(twin.search(xq, 10)[1], np.arange(0, 2000, 2)).any()
