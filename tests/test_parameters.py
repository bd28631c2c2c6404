"""Faiss-style tuning and output calls: ParameterSpace, search(..., D=, I=), factory spellings."""
import numpy as np
import pytest
import torch
from conftest import clustered

import torch_ivf as ti


@pytest.fixture(scope="module")
def data():
    return clustered(3000, 32, centres=30, seed=3), clustered(20, 32, centres=30, seed=4)


def test_parameter_space_sets_through_refine_like_faiss(data):
    faiss = pytest.importorskip("faiss")
    xb, xq = data
    ours = ti.index_factory(32, "IVF16,PQ8,RFlat")
    theirs = faiss.index_factory(32, "IVF16,PQ8,RFlat")
    for ps, ix in ((ti.ParameterSpace(), ours), (faiss.ParameterSpace(), theirs)):
        ps.set_index_parameters(ix, "nprobe=5,k_factor_rf=4")
        ps.set_index_parameter(ix, "max_codes", 700)
    ivf = faiss.extract_index_ivf(theirs)
    assert (ours.base.nprobe, ours.base.max_codes, ours.k_factor) == (ivf.nprobe, ivf.max_codes, theirs.k_factor)
    ours.train(xb)
    ours.add(xb)
    D, I = ours.search(xq, 5)
    kk = ours.search(xq, 5, params=ti.IndexRefineSearchParameters(
        k_factor=4, base_index_params=ti.SearchParametersIVF(nprobe=5, max_codes=700)))
    assert np.array_equal(I, kk[1]) and np.array_equal(D, kk[0])


def test_parameter_space_rejects_unknown_and_bad_values(data):
    ps = ti.ParameterSpace()
    ivf = ti.IndexIVFFlat(32, 16, nprobe=2)
    for name, value, err in (("efSearch", 3, RuntimeError), ("k_factor_rf", 2, ValueError),
                             ("nprobe", 0, ValueError), ("nprobe", 2.5, ValueError), ("nprobe", "3", TypeError),
                             (3, 3, TypeError)):
        with pytest.raises(err):
            ps.set_index_parameter(ivf, name, value)
    with pytest.raises(ValueError, match="name=number"):
        ps.set_index_parameters(ivf, "nprobe=4,max_codes")
    assert ivf.nprobe == 2 and ivf.max_codes == 0  # a malformed description changes nothing
    with pytest.raises(ti.ParameterError):  # Flat has no nprobe, as in Faiss
        ps.set_index_parameter(ti.IndexFlat(32), "nprobe", 4)
    refine = ti.index_factory(32, "IVF16,PQ8,RFlat")
    with pytest.raises(ValueError, match="k_factor"):
        refine.k_factor = 0.5
    assert refine.k_factor == 1.0


@pytest.mark.parametrize("as_tensor", [False, True])
def test_search_fills_given_outputs(data, as_tensor):
    xb, xq = data
    index = ti.IndexIVFFlat(32, 16, nprobe=4)
    index.train(xb)
    index.add(xb)
    q = torch.from_numpy(xq) if as_tensor else xq
    new = (torch.empty if as_tensor else np.empty)
    D = new((20, 7), dtype=torch.float32 if as_tensor else np.float32)
    I = new((20, 7), dtype=torch.int64 if as_tensor else np.int64)
    D2, I2 = index.search(q, 7, D=D, I=I)
    assert D2 is D and I2 is I
    De, Ie = index.search(q, 7)
    assert (D == De).all() and (I == Ie).all()
    for bad in (dict(D=np.empty((20, 6), np.float32)), dict(I=np.empty((20, 7), np.int32))):
        with pytest.raises(ValueError, match="shape"):
            index.search(xq, 7, **bad)


def test_factory_spellings(data):
    xb, _ = data
    assert type(ti.index_factory(32, "IVF16,PQ8np")) is ti.IndexIVFPQ
    assert ti.index_factory(32, "IVF16,PQ8x4np").nbits == 4
    ix = ti.index_factory(32, "IDMap,IVF16,Flat")
    assert type(ix) is ti.IndexIVFFlat
    ix.train(xb)
    ix.add_with_ids(xb[:10], np.arange(100, 110))
    assert ix.search(xb[:1], 1)[1][0, 0] == 100
