"""Every Triton kernel compiles for NVIDIA (sm_90) and AMD (gfx942) targets, no GPU needed: ROCm's
Triton has no TF32 dots, so kernels.dot_precision must hand it IEEE float32 ones."""
import inspect

import pytest
import torch

triton = pytest.importorskip("triton")
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from torch_ivf import kernels  # noqa: E402

_POINTERS = {"CODES": "*u8", "MASK": "*u8", "VALID": "*i1", "X": "*fp16", "ORDER": "*i32", "FIRST": "*i32",
             "COUNT": "*i32", "TILE_END": "*i32", "CHUNKS": "*i32", "SLOT": "*i32", "OUT_R": "*i32", "SURV_ROW": "*i32", "SURV_AT": "*i32",
             "STARTS": "*i64", "SIZES": "*i64", "PROBE": "*i64", "OFF": "*i64", "OFFL": "*i64", "BEFORE": "*i64",
             "LABELS": "*i64", "ROWS": "*i64", "INDICES": "*i64", "STATS": "*i64"}


def _signature(fn, consts):
    """Capitalised parameters are pointers (float32 unless listed), except the sizes P and W."""
    def kind(name):
        if name in consts:
            return "constexpr"
        if name in ("P", "W") or not name[0].isupper():
            return "fp32" if name == "coef" else "i32"
        return _POINTERS.get(name, "*fp32")
    return {name: kind(name) for name in inspect.signature(fn.fn).parameters}


def _cases(precision):
    from torch_ivf.kernels import flat_scan, pq_lists, pq_panorama, pq_scan, refine_scores, row_topk
    pq = dict(HAS_MASK=True, HAS_MAXC=True, WORDS=True)
    return [
        (flat_scan._flat_lists, dict(SCALE=2.0, HAS_BIAS=True, HAS_CT=True, HAS_MASK=True, HAS_MAXC=True, KOUT=16,
                                     BLOCK_Q=32, BLOCK_N=64, BLOCK_D=16, PRECISION=precision, CHUNKED=False, GROUPED=True), 4),
        (flat_scan._flat_lists, dict(SCALE=1.0, HAS_BIAS=False, HAS_CT=False, HAS_MASK=False, HAS_MAXC=False, KOUT=16,
                                     BLOCK_Q=16, BLOCK_N=64, BLOCK_D=16, PRECISION=precision, CHUNKED=True, GROUPED=False), 4),
        (flat_scan._flat_lists, dict(SCALE=1.0, HAS_BIAS=False, HAS_CT=False, HAS_MASK=False, HAS_MAXC=False, KOUT=8,
                                     BLOCK_Q=64, BLOCK_N=64, BLOCK_D=16, PRECISION=precision, CHUNKED=True, GROUPED=True), 4),
        (pq_lists._pq_lists, dict(DSUB=4, KSUB=256, LAYOUT_W=12, HAS_MASK=True, HAS_MAXC=True, BLOCK_Q=32,
                                  BLOCK_N=64, BLOCK_D=16, PRECISION=precision), 4),
        (pq_scan._pq_scan, dict(M=96, LAYOUT_W=96, LISTS=16, BLOCK_N=128, SPLIT=False, **pq), 4),
        (pq_scan._pq_scan, dict(M=96, LAYOUT_W=96, LISTS=16, BLOCK_N=64, SPLIT=True, **pq), 4),
        (pq_panorama._pq_tiles_seeded, dict(L=8, ML=12, DL=48, LP=8, BLOCK_D=512, LAYOUT_W=12, LISTS=16, SEED=True,
                                            KTH=9, HAS_THR=True, BLOCK_N=64, **pq), 4),
        (pq_panorama._pq_tiles_seeded, dict(L=8, ML=12, DL=48, LP=8, BLOCK_D=512, LAYOUT_W=12, LISTS=16, SEED=False,
                                            KTH=0, HAS_THR=True, BLOCK_N=64, **pq), 4),
        (pq_panorama._pq_scan_pruned, dict(L=8, ML=12, LP=8, LAYOUT_W=12, LISTS=8, RUNNING=True, KTH=9, BLOCK_N=32, **pq), 1),
        (pq_panorama._pq_scan_pruned, dict(L=8, ML=12, LP=8, LAYOUT_W=12, LISTS=16, RUNNING=False, KTH=0, BLOCK_N=64, **pq), 2),
        (refine_scores._refine_scores, dict(L2=True, BLOCK_N=16, BLOCK_D=128), 4),
        (flat_scan._flat_probes, dict(SCALE=2.0, HAS_BIAS=True, HAS_CT=True, HAS_MASK=True, HAS_MAXC=True,
                                      K=10, BLOCK_K=16, BLOCK_P=16, BLOCK_N=64, BLOCK_D=128), 4),
        (flat_scan._flat_probes, dict(SCALE=1.0, HAS_BIAS=False, HAS_CT=False, HAS_MASK=False, HAS_MAXC=False,
                                      K=32, BLOCK_K=32, BLOCK_P=32, BLOCK_N=256, BLOCK_D=64), 8),
        (row_topk._row_topk, dict(K=10, BLOCK=1024, HAS_ROWS=False), 4),
        (row_topk._row_topk, dict(K=10, BLOCK=4096, HAS_ROWS=True), 8),
    ]


@pytest.mark.parametrize("hip", [None, "6.2"])
def test_kernels_compile_for_the_build(hip, monkeypatch):
    monkeypatch.setattr(torch.version, "hip", hip)
    precision = kernels.dot_precision("tf32x3")
    assert precision == ("ieee" if hip else "tf32x3")
    target = GPUTarget("hip", "gfx942", 64) if hip else GPUTarget("cuda", 90, 32)
    for fn, consts, warps in _cases(precision):
        triton.compile(ASTSource(fn, _signature(fn, consts), consts), target=target, options={"num_warps": warps})
