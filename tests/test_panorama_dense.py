"""Panorama on accelerators without Triton (DirectML, MPS, ROCm without it): every path scores every
row with the base index's own scans, which wait for the host nowhere (CUDA graphs capture them).
Emulated on the CPU by marking the index as such a device: same results as the base index's paths."""
import numpy as np
import pytest
import torch
from conftest import clustered
from test_panorama import _pair

import torch_ivf as ti
from torch_ivf.index.ivf_pq_panorama import PanoramaScan
from torch_ivf.search.choose import choose_path


@pytest.fixture
def dense(monkeypatch):
    monkeypatch.setattr(PanoramaScan, "_dense_here", lambda self: True)


@pytest.fixture(scope="module")
def data():
    return clustered(3000, 32, centres=40, seed=2), clustered(40, 32, centres=40, seed=3)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_pq_panorama_dense_is_ivfpq(data, dense, metric):
    xb, xq = data
    pano, ref = _pair(xb, metric, M=8, L=4)
    q = torch.as_tensor(xq)
    qt = pano._transform(q)
    assert not pano.wave_scan and not pano.batched_lists and pano.graph_safe
    allowed = np.arange(0, len(xb), 3)
    for mode in ("matrix", "grouped"):
        ref.search_mode = "matrix"  # IVFPQ's torch matrix scan: the padded gather
        pano.search_mode = mode
        for params in (ti.SearchParams(nprobe=5), ti.SearchParams(nprobe=5, allowed=allowed),
                       ti.SearchParams(nprobe=5, max_codes=300)):
            D, I = pano.search(q, 10, params=params)
            Dr, Ir = ref.search(qt, 10, params=params)
            assert torch.equal(I, Ir) or mode == "grouped"
            assert torch.allclose(D, Dr, rtol=1e-5, atol=1e-4)
            if mode == "grouped":
                assert (I == Ir).float().mean() > 0.97  # grouped: ties may order differently
        assert pano.panorama_stats.ratio_dims_scanned == 1.0  # every row scanned, and counted


def test_flat_panorama_dense_takes_ivfflat_paths(data, dense):
    xb, xq = data
    fp = ti.IndexIVFFlatPanorama(32, 16, 4, nprobe=6, niter=4)
    fp.train(xb)
    fp.add(xb)
    ivf = ti.IndexIVFFlat(32, 16, nprobe=6, niter=4)
    ivf.centroids = fp.centroids.clone()
    ivf.add(xb)
    assert fp.batched_lists and not fp.wave_scan and fp.graph_safe
    assert choose_path(fp, 4, 6) == choose_path(ivf, 4, 6)
    q = torch.as_tensor(xq)
    for mode in ("matrix", "grouped"):
        fp.search_mode = ivf.search_mode = mode
        D, I = fp.search(q, 10)
        Dr, Ir = ivf.search(q, 10)
        assert torch.equal(I, Ir)
        assert torch.allclose(D, Dr, rtol=1e-5, atol=1e-4)
    assert fp.panorama_stats.ratio_dims_scanned == 1.0


def test_cpu_still_prunes(data):
    xb, xq = data
    pano, _ = _pair(xb, "l2", M=8, L=4)
    assert pano.wave_scan and not pano.graph_safe
    pano.search(torch.as_tensor(xq), 10, params=ti.SearchParams(nprobe=5))
    assert pano.panorama_stats.ratio_dims_scanned < 1.0
