"""IVF constructors show explicit signatures and take both our form and Faiss's leading quantizer."""
from __future__ import annotations

import inspect

import pytest

import torch_ivf as ti
import torch_ivf.faiss as tfaiss

IVF = [ti.IndexIVFFlat, ti.IndexIVFPQ, ti.IndexIVFPQPanorama, ti.IndexIVFFlatPanorama,
       ti.IndexIVFScalarQuantizer, tfaiss.IndexIVFFlat, tfaiss.IndexIVFPQ, tfaiss.IndexIVFPQPanorama]


@pytest.mark.parametrize("cls", IVF, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_signature_is_explicit(cls):
    params = inspect.signature(cls).parameters
    assert list(params)[:2] == ["d", "nlist"]
    assert not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params.values())
    assert "nprobe" in params and "verbose" in params


def test_both_forms_and_positional_nprobe():
    assert ti.IndexIVFFlat(8, 4, "ip", 3).nprobe == 3
    q = ti.IndexFlatIP(8)
    index = ti.IndexIVFFlat(q, 8, 4, ti.METRIC_INNER_PRODUCT)
    assert (index.d, index.nlist, index.metric, index.quantizer) == (8, 4, "ip", q)
    pq = ti.IndexIVFPQ(ti.IndexFlatL2(8), 8, 4, 2, 6)
    assert (pq.M, pq.nbits, pq.metric) == (2, 6, "l2")
    sq = ti.IndexIVFScalarQuantizer(ti.IndexFlatL2(8), 8, 4, ti.ScalarQuantizer.QT_8bit, ti.METRIC_L2, False)
    assert sq.by_residual is False
    with pytest.raises(TypeError, match="IndexIVFFlat"):
        ti.IndexIVFFlat(8, 4, "l2", 2, 5)
    with pytest.raises(TypeError, match="quantizer given twice"):
        ti.IndexIVFFlat(q, 8, 4, quantizer=q)
