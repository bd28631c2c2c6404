"""Bad input: a ValueError/TypeError naming the argument, raised before any state changes."""
import numpy as np
import pytest
import torch

import torch_ivf as ti


@pytest.fixture
def ivf():
    index = ti.IndexIVFFlat(8, 4, nprobe=2)
    index.train(np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32))
    index.add(np.random.default_rng(1).standard_normal((20, 8)).astype(np.float32))
    return index


def _unchanged(index, fn, exc, match):
    before = {k: v.clone() for k, v in index.state_tensors().items()}
    ntotal, next_label = index.ntotal, index.next_label
    with pytest.raises(exc, match=match):
        fn()
    after = index.state_tensors()
    assert index.ntotal == ntotal and index.next_label == next_label
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_wrong_dimension(ivf):
    _unchanged(ivf, lambda: ivf.add(np.zeros((3, 7), np.float32)), ValueError, r"x must have shape \(n, 8\)")
    _unchanged(ivf, lambda: ivf.search(np.zeros((3, 9), np.float32), 1), ValueError, "shape")
    _unchanged(ivf, lambda: ivf.add(np.zeros((2, 3, 8), np.float32)), ValueError, "shape")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf(ivf, bad):
    x = np.zeros((3, 8), np.float32)
    x[1, 2] = bad
    _unchanged(ivf, lambda: ivf.add(x), ValueError, "NaN or Inf")
    _unchanged(ivf, lambda: ivf.add_with_ids(x, np.arange(100, 103)), ValueError, "NaN or Inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        ivf.search(x, 1)


@pytest.mark.parametrize("k", [0, -1, 1.5, "3", True])
def test_bad_k(ivf, k):
    with pytest.raises(ValueError, match="k must be a positive int"):
        ivf.search(np.zeros((1, 8), np.float32), k)


def test_add_before_train():
    index = ti.IndexIVFFlat(8, 4)
    with pytest.raises(ValueError, match="trained before add"):
        index.add(np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="trained before search"):
        index.search(np.zeros((2, 8), np.float32), 1)
    assert index.ntotal == 0


def test_ids_wrong_length_dtype_duplicates(ivf):
    x = np.zeros((3, 8), np.float32)
    _unchanged(ivf, lambda: ivf.add_with_ids(x, np.arange(2)), ValueError, "ids must have length 3")
    _unchanged(ivf, lambda: ivf.add_with_ids(x, np.array([1.0, 2.0, 3.0])), TypeError, "ids must be integers")
    _unchanged(ivf, lambda: ivf.add_with_ids(x, torch.tensor([1.0, 2.0, 3.0])), TypeError, "ids must be integers")
    _unchanged(ivf, lambda: ivf.add_with_ids(x, np.array([50, 50, 51])), ValueError, "unique")
    _unchanged(ivf, lambda: ivf.add_with_ids(x, np.array([-1, 50, 51])), ValueError, "non-negative")
    _unchanged(ivf, lambda: ivf.add_with_ids(x, np.array([0, 50, 51])), ValueError, "already present")
    _unchanged(ivf, lambda: ivf.add_with_ids(x, "abc"), TypeError, "ids")


def test_bad_types(ivf):
    _unchanged(ivf, lambda: ivf.add([[0.0] * 8]), TypeError, "numpy array or torch tensor")
    _unchanged(ivf, lambda: ivf.add(np.array([["a"] * 8])), TypeError, "x must hold numbers")
    with pytest.raises(TypeError, match="params"):
        ivf.search(np.zeros((1, 8), np.float32), 1, params={"nprobe": 2})
    with pytest.raises(TypeError, match="ids must be integers"):
        ivf.remove_ids(np.array([0.5]))


@pytest.mark.parametrize("metric", ["cos", "L1", 7, None])
def test_unknown_metric(metric):
    with pytest.raises(ValueError, match="metric must be"):
        ti.IndexIVFFlat(8, 4, metric)
    with pytest.raises(ValueError, match="metric must be"):
        ti.IndexFlat(8, metric)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="d must be a positive int"):
        ti.IndexFlatL2(0)
    with pytest.raises(ValueError, match="nlist must be a positive int"):
        ti.IndexIVFFlat(8, 0)
    with pytest.raises(ValueError, match="nprobe must be a positive int"):
        ti.IndexIVFFlat(8, 4, nprobe=0)
    with pytest.raises(ValueError, match="dtype must be"):
        ti.IndexFlat(8, dtype=torch.int8)
    with pytest.raises(ValueError, match="search_mode must be one of"):
        ti.IndexIVFFlat(8, 4, search_mode="fast")
    with pytest.raises(ValueError, match="max_codes"):
        ti.IndexIVFFlat(8, 4, max_codes=-5)


def test_train_needs_enough_points():
    index = ti.IndexIVFFlat(8, 16)
    with pytest.raises(ValueError, match="at least nlist=16"):
        index.train(np.zeros((4, 8), np.float32))
    assert not index.is_trained


def test_reconstruct_missing_label(ivf):
    with pytest.raises(ValueError, match="label 999 is not in the index"):
        ivf.reconstruct(999)
