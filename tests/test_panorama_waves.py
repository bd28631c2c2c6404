"""The IVFPQPanorama wave scan split into many small chunks of pairs (as on large batches), with the
first wave's self-seeded threshold: results stay identical to IndexIVFPQ, and stats stay consistent."""
import numpy as np
import pytest
from conftest import clustered
from test_panorama import _pair, assert_identical

import torch_ivf as ti
import torch_ivf.index.ivf_pq_panorama as ipp


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("pairs", [97, 1 << 16])
def test_chunked_waves_identical(monkeypatch, metric, pairs):
    monkeypatch.setattr(ipp, "WAVE_PAIRS", pairs)
    xb, xq = clustered(3000, 32, centres=40, seed=11), clustered(60, 32, centres=40, seed=12)
    pano, ref = _pair(xb, metric, M=8, L=4, nlist=32)
    pano.search_mode = "matrix"
    for nprobe, k in ((1, 10), (6, 10), (32, 3), (3, 400)):
        params = ti.SearchParams(nprobe=nprobe)
        assert_identical(pano, ref, xq, k=k, params=params)
        s = pano.panorama_stats  # total: every probed row once; scanned: what the levels read
        probe, _ = pano._coarse(pano._transform(pano._vectors(xq)[0]), nprobe)
        assert s.total_dims == int(pano.invlists.sizes[probe].sum()) * pano.d
        assert 0 < s.total_dims_scanned <= s.total_dims
    allowed = np.arange(0, len(xb), 5)
    D, I = assert_identical(pano, ref, xq, params=ti.SearchParams(nprobe=8, allowed=allowed))
    assert np.isin(I[I >= 0], allowed).all()
    for mode in ("grouped", "matrix"):  # every scan cuts the list where max_codes runs out
        ref.search_mode = mode
        assert_identical(pano, ref, xq, params=ti.SearchParams(nprobe=8, max_codes=300))
