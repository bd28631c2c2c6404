"""Search results of every index type pinned on fixed seeds: a restructuring of the engine must give
the same ids and distances as the recorded ones (tests/golden/results-<machine>.npz).

Bitwise float results depend on the CPU's kernels (k-means and GEMM summation order differ between
processors and torch builds), so each fixture holds one machine's results (CPU model, instruction
set flags, torch and numpy) and the comparison runs where one matches; elsewhere it is skipped.
Record this machine's (or, only when a result is meant to change, re-record it):
TORCH_IVF_WRITE_GOLDEN=1 pytest tests/test_golden.py. Cases added after a fixture was recorded are
skipped on that machine until it is re-recorded there.
"""
from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

import torch_ivf as ti
from conftest import clustered

GOLDEN = Path(__file__).parent / "golden"
D_TOL = 1e-6  # relative; a change of float summation order may move the last bit, never an id
N, DIM, NQ, K = 1500, 32, 12, 10


def _build(spec):
    kind, arg, metric = spec
    if kind == "flat":
        return ti.IndexFlat(DIM, metric)
    if kind == "flatl2":
        return ti.IndexFlatL2(DIM)
    if kind == "flatip":
        return ti.IndexFlatIP(DIM)
    if kind == "flat_fp16":
        return ti.IndexFlat(DIM, metric, dtype=torch.float16)
    if kind == "ivfflat_fp16":
        return ti.IndexIVFFlat(DIM, 16, metric, dtype=torch.float16)
    if kind == "ivfflat_quantizer":
        return ti.IndexIVFFlat(ti.IndexFlatL2(DIM), DIM, 16, metric)
    return ti.index_factory(DIM, arg, metric)


CASES = {
    "flat_l2": ("flat", None, "l2"),
    "flat_ip": ("flat", None, "ip"),
    "flat_cosine": ("flat", None, "cosine"),
    "flatl2": ("flatl2", None, "l2"),
    "flatip": ("flatip", None, "ip"),
    "flat_fp16": ("flat_fp16", None, "l2"),
    "ivfflat_l2": ("factory", "IVF16,Flat", "l2"),
    "ivfflat_ip": ("factory", "IVF16,Flat", "ip"),
    "ivfflat_cosine": ("factory", "IVF16,Flat", "cosine"),
    "ivfflat_fp16": ("ivfflat_fp16", None, "l2"),
    "ivfflat_quantizer": ("ivfflat_quantizer", None, "l2"),
    "ivfpq_l2": ("factory", "IVF16,PQ8", "l2"),
    "ivfpq_ip": ("factory", "IVF16,PQ8x6", "ip"),
    "ivfpq_rflat": ("factory", "IVF16,PQ8,RFlat", "l2"),
    "ivfpq_refine_flat": ("factory", "IVF16,PQ8,Refine(Flat)", "ip"),
    "ivfpq_panorama": ("factory", "IVF16,PQ8Panorama4", "l2"),
    "ivfpq_panorama_t": ("factory", "PanoramaT,IVF16,PQ8Panorama4", "l2"),
    "ivfflat_panorama": ("factory", "IVF16,FlatPanorama4", "l2"),
    "ivfflat_panorama_t": ("factory", "PanoramaT,IVF16,FlatPanorama4", "ip"),
    "ivfsq8_l2": ("factory", "IVF16,SQ8", "l2"),
    "ivfsq4_ip": ("factory", "IVF16,SQ4", "ip"),
    "ivfsqfp16_cosine": ("factory", "IVF16,SQfp16", "cosine"),
    "sq8_direct_signed": ("factory", "SQ8_direct_signed", "l2"),
    "ivfsq6_rflat": ("factory", "IVF16,SQ6,RFlat", "ip"),
}


def _machine() -> str:
    """CPU model and instruction-set flags (the kernels torch picks), torch and numpy versions."""
    info = {}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = hashlib.sha1(info.get("flags", "").encode()).hexdigest()[:12]
    return f"{platform.machine()}|{info.get('model name', '')}|flags {flags}|torch {torch.__version__}|numpy {np.__version__}"


def _data():
    x = clustered(N + NQ, DIM, centres=20, seed=7)
    return x[:N], x[N:]


def _results(name) -> dict[str, np.ndarray]:
    """Every recorded array of one case: searches in each mode and with each parameter kind."""
    torch.manual_seed(0)
    xb, xq = _data()
    index = _build(CASES[name])
    index.train(xb)
    index.add(xb[:1000])
    index.add_with_ids(xb[1000:], np.arange(5000, 5000 + N - 1000))
    index.remove_ids(np.arange(0, 1000, 7))
    ivf = getattr(index, "base", index)
    is_ivf = isinstance(ivf, ti.IndexIVF) and not isinstance(ivf, ti.IndexFlat)
    if is_ivf:
        ivf.nprobe = 3
    out = {}
    mask = np.zeros(6000, dtype=bool)
    mask[::3] = True
    runs = {"plain": None, "allowed": ti.SearchParams(allowed=mask),
            "sel": ti.SearchParams(sel=ti.IDSelectorRange(200, 5300))}
    if is_ivf:
        runs.update({"nprobe8": ti.SearchParams(nprobe=8), "max_codes": ti.SearchParams(max_codes=150),
                     "max_codes_allowed": ti.SearchParams(max_codes=200, nprobe=6, allowed=mask)})
    modes = ("grouped", "matrix") if is_ivf else (None,)
    for mode in modes:
        if mode is not None:
            ivf.search_mode = mode
        for run, params in runs.items():
            D, I = index.search(xq, K, params=params)
            out[f"{name}/{mode}/{run}/D"], out[f"{name}/{mode}/{run}/I"] = D, I
    radius = float(np.median(index.search(xq, 5)[0][:, -1]))
    lims, D, I = index.range_search(xq, radius)
    out[f"{name}/range/lims"], out[f"{name}/range/D"], out[f"{name}/range/I"] = lims, D, I
    out[f"{name}/reconstruct"] = np.asarray(index.reconstruct(5003)) if not isinstance(index, ti.IndexRefine) \
        else np.zeros(0, np.float32)
    return out


def _fixture(machine: str) -> Path:
    return GOLDEN / f"results-{hashlib.sha1(machine.encode()).hexdigest()[:12]}.npz"


@pytest.fixture(scope="module")
def golden():
    machine = _machine()
    path = _fixture(machine)
    if os.environ.get("TORCH_IVF_WRITE_GOLDEN"):
        arrays = {}
        for name in CASES:
            arrays.update(_results(name))
        arrays["machine"] = np.array(machine)
        GOLDEN.mkdir(exist_ok=True)
        # ids fit int32; the comparison is by value
        np.savez_compressed(path, **{k: v.astype(np.int32) if v.dtype == np.int64 else v for k, v in arrays.items()})
    if not path.exists():
        pytest.skip(f"no golden results recorded on {machine} (tests/golden holds {len(list(GOLDEN.glob('*.npz')))})")
    with np.load(path, allow_pickle=False) as f:
        recorded = {k: f[k] for k in f.files}
    assert str(recorded.pop("machine")) == machine, path  # a hash collision, or a renamed file
    return recorded


@pytest.mark.parametrize("name", list(CASES))
def test_results_match_recorded(golden, name):
    want = {k: v for k, v in golden.items() if k.startswith(name + "/")}
    if not want:
        pytest.skip(f"{name} was added after this machine's fixture was recorded")
    got = _results(name)
    assert got.keys() == want.keys()
    for key, value in got.items():
        value = np.asarray(value)
        if key.endswith("/I") or key.endswith("/lims"):
            np.testing.assert_array_equal(value, want[key], err_msg=key)
        else:
            scale = max(1.0, float(np.abs(want[key][np.isfinite(want[key])]).max(initial=0)))
            big = np.finfo(np.float32).max
            np.testing.assert_array_equal(np.abs(value) >= big, np.abs(want[key]) >= big, err_msg=key)
            np.testing.assert_allclose(value, want[key], rtol=0, atol=D_TOL * scale, err_msg=key)
