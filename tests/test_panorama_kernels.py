"""IVFPQPanorama's Triton scans (kernels/pq_panorama.py) against IndexIVFPQ's with the same codebooks:
bitwise the same distances and ids for the seeded small-batch scan (k up to and past its seed tile),
the running scan and the waves, with filters, max_codes and busy lists (pq_lists). CPU: Triton's
interpreter in a subprocess (TRITON_INTERPRET is read when kernels are defined), skipped without
Triton; the GPU runs the same comparisons in tests/test_gpu_small_batches.py."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import clustered

pytest.importorskip("triton")

_SCRIPT = textwrap.dedent("""
    import numpy as np, torch
    import torch_ivf as ti
    import torch_ivf.kernels as K
    from torch_ivf.search import cost
    from torch_ivf.kernels import pq_panorama
    import triton.language as tl
    K.available = lambda dev: K.enabled and K._HAVE_TRITON
    xb = np.load(%r)
    pano = ti.IndexIVFPQPanorama(32, 16, 8, 8, 4, nprobe=6, niter=4, pq_niter=4)
    pano.train(xb)
    pano.add(xb)
    pq = ti.IndexIVFPQ(32, 16, 8, 8, nprobe=6)
    pq.centroids = pano.centroids.clone()
    pq.pq.set_centroids(pano.pq.centroids)
    pq.add(pano._transform(torch.as_tensor(xb)))
    pano.search_mode = pq.search_mode = "matrix"
    every = (ti.SearchParams(), ti.SearchParams(allowed=np.arange(0, len(xb), 3)), ti.SearchParams(max_codes=300))
    ratios = []
    for nq, span, k, params in ((3, 64, 10, every), (3, 64, 80, every[:2]), (3, 0, 10, every[1:2]),
                                (3, 0, 40, every[1:]), (10, 64, 10, every[:1]),  # nq 10: busy lists
                                (3, 64, 10, every[:1])):  # last: a seed shorter than the nearest list
        cost.pq_span = lambda *a, _s=span: _s
        if params is every[:1] and nq == 3:
            pq_panorama.SEED_TILES = tl.constexpr(1)
        q = torch.as_tensor(xb[:nq] + 0.05)
        for p in params:
            D, I = pano.search(q, k, params=p)
            Dr, Ir = pq.search(pano._transform(q), k, params=p)
            assert torch.equal(D, Dr) and torch.equal(I, Ir), (nq, span, k, p)
            ratios.append(pano.panorama_stats.ratio_dims_scanned)
    assert max(ratios) <= 1.0 and min(ratios) < 0.3, ratios  # (k 80 filtered: the seed list has < k rows)
    print("panorama ok")
""")


def test_panorama_kernels_identical_to_ivfpq(tmp_path):
    data = tmp_path / "x.npy"
    np.save(data, clustered(1500, 32, centres=30, seed=5))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    path = tmp_path / "run.py"
    path.write_text(_SCRIPT % str(data))
    done = subprocess.run([sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "panorama ok" in done.stdout
