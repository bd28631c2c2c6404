"""kernels.bitonic.merge_top (the running top-K of IVFFlat's list kernel) keeps exactly the K largest
keys, and flat_scan returns bitwise the same results with it as with the two full sorts per tile.
CPU: Triton's interpreter in a subprocess (TRITON_INTERPRET is read when kernels are defined), skipped
without Triton. GPU: the same comparison on a real index."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import clustered

pytest.importorskip("triton")

_MERGE = textwrap.dedent("""
    import torch, triton, triton.language as tl
    from torch_ivf.kernels.bitonic import merge_top

    @triton.jit
    def _k(B, KEYS, OUT, BQ: tl.constexpr, N: tl.constexpr, K: tl.constexpr, T: tl.constexpr):
        r = tl.arange(0, BQ)[:, None]
        best = tl.load(B + r * K + tl.arange(0, K)[None, :])
        for t in tl.static_range(T):
            best = merge_top(best, tl.load(KEYS + t * BQ * N + r * N + tl.arange(0, N)[None, :]), BQ, N, K)
        tl.store(OUT + r * K + tl.arange(0, K)[None, :], best)

    g = torch.Generator().manual_seed(0)
    for BQ, N, K, T in [(16, 64, 16, 3), (16, 64, 32, 2), (16, 64, 64, 2), (16, 128, 16, 2), (16, 64, 8, 2)]:
        keys = torch.randint(-2**62, 2**62, (T, BQ, N), generator=g, dtype=torch.int64)
        keys[0, :, :5] = keys[0, :, 5:10]  # repeated keys
        keys[-1, :3] = keys[0, :3]  # a later tile repeats an earlier one
        best = torch.randint(-2**62, 2**62, (BQ, K), generator=g, dtype=torch.int64).sort(1, descending=True).values
        out = torch.empty_like(best)
        _k[(1,)](best, keys, out, BQ=BQ, N=N, K=K, T=T)
        ref = torch.cat([best, keys.permute(1, 0, 2).reshape(BQ, -1)], 1).sort(1, descending=True).values[:, :K]
        assert torch.equal(out, ref), (BQ, N, K, T)
    print("merge ok")
""")

_FLAT = textwrap.dedent("""
    import numpy as np, torch
    import torch_ivf as ti
    import torch_ivf.kernels as K
    from torch_ivf.kernels import flat_scan
    K.available = lambda dev: K.enabled and K._HAVE_TRITON
    x = torch.from_numpy(np.load(%r))
    x[100:140] = x[:40]  # duplicate vectors: ties broken by row
    q = x[::150][:6] + 0.01
    for metric, k in (("l2", 10), ("ip", 20)):
        index = ti.IndexIVFFlat(x.shape[1], 8, metric=metric)
        index.train(x)
        index.add(x)
        index.search_mode = "matrix"
        out = []
        for grouped in (False, True):
            flat_scan.GROUPED = grouped
            out.append(index.search(q, k, params=ti.SearchParams(nprobe=3)))
        assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1]), metric
    print("flat ok")
""")


def _interpret(script, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    path = tmp_path / "run.py"
    path.write_text(script)
    done = subprocess.run([sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return done.stdout


def test_merge_top_keeps_the_k_largest(tmp_path):
    assert "merge ok" in _interpret(_MERGE, tmp_path)


def test_flat_scan_grouped_merge_equals_two_sorts(tmp_path):
    data = tmp_path / "x.npy"
    np.save(data, clustered(1500, 16, seed=3))
    assert "flat ok" in _interpret(_FLAT % str(data), tmp_path)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_flat_scan_grouped_merge_equals_two_sorts_gpu():
    import torch_ivf as ti
    from torch_ivf.kernels import flat_scan
    x = torch.from_numpy(clustered(200_000, 64, seed=4)).cuda()
    x[1000:1100] = x[:100]
    index = ti.IndexIVFFlat(64, 256, device="cuda")
    index.train(x)
    index.add(x)
    q = x[::997][:200] + 0.01
    for k in (10, 32):
        out = []
        for grouped in (False, True):
            flat_scan.GROUPED = grouped
            try:
                out.append(index.search(q, k, params=ti.SearchParams(nprobe=8)))
            finally:
                flat_scan.GROUPED = True
        assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1]), k
