"""IVFFlat with Panorama pruning (Faiss's IndexIVFFlatPanorama): the same Cauchy-Schwarz bound on the
exact vectors, levels of d / L dimensions, suffix norms stored per vector. Results equal IndexIVFFlat's
(ties aside: the level-wise sum rounds differently from the GEMM). Optionally learns a
PanoramaTransform (off by default, as in Faiss, where callers apply their own PCA first). On GPUs with
Triton the default scan is IVFFlat's list-GEMM kernel without pruning (faster there; stats then say 1.0)."""
from __future__ import annotations

import torch

from .. import kernels
from ..arrays import take_rows
from ..codecs import PanoramaFlatCodec
from ..panorama import level_slice
from ..search.state import PanoramaFlatState
from .flat_codes import FlatCodes
from .ivf import faiss_form
from .ivf_flat import IndexIVFFlat
from .ivf_pq_panorama import PanoramaScan


class IndexIVFFlatPanorama(PanoramaScan, FlatCodes, IndexIVFFlat):
    """IndexIVFFlat's results with candidates pruned level by level (Cauchy-Schwarz bound on the
    unscanned dimensions).

    ``IndexIVFFlatPanorama(d, nlist, n_levels=8, metric="l2", nprobe=1, *, transform=False, ...)``, or
    Faiss's form with a leading quantizer: ``IndexIVFFlatPanorama(quantizer, d, nlist, n_levels, metric)``.

    Args:
        d, nlist, metric, nprobe: as for IndexIVFFlat (d may be Faiss's leading quantizer).
        n_levels: levels the d dimensions are split into (ceil(d / n_levels) each, the last ones
            narrower when n_levels does not divide d; with transform=True it must divide d).
        transform: learn a PanoramaTransform first (off by default: flat codes lose nothing to
            uneven energy, but pruning needs it front-loaded).
        cap: the transform's cap on one level's energy, in multiples of the mean.
        norm_dtype: "float32" or "float16" suffix norms.
        dtype: float32 only (half storage is not supported).
        device, search_mode, max_codes, seed, niter, quantizer, verbose: as for IndexIVFFlat.

    Raises:
        ValueError: n_levels not dividing d with transform=True, a dtype other than float32, or a bad
            IndexIVFFlat argument.
        TypeError: a non-bool transform.
    """

    graph_safe_kernels = True  # IVFFlat's list kernel does not wait for the host

    @faiss_form
    def __init__(self, d: int, nlist: int, n_levels: int = 8, metric="l2", nprobe: int = 1, *,
                 transform: bool = False, cap: float = 1e9, norm_dtype: str = "float32", device=None,
                 dtype=torch.float32, search_mode: str = "auto", max_codes: int = 0, seed: int = 1234,
                 niter: int = 20, quantizer=None, verbose: bool | None = None):
        # levels may split d unevenly (as in Faiss), except for the transform's rotation blocks
        self._init_levels(n_levels, transform, cap, norm_dtype, ("d", d) if transform else None)
        if isinstance(d, int) and 0 < d < self.n_levels:
            raise ValueError(f"n_levels must be at most d={d}, got n_levels={n_levels}")
        if dtype not in (torch.float32, "float32"):
            raise ValueError("dtype must be float32 for IndexIVFFlatPanorama (half storage is not supported yet)")
        IndexIVFFlat.__init__(self, d, nlist, metric, nprobe, device=device, dtype=dtype,
                              search_mode=search_mode, max_codes=max_codes, seed=seed, niter=niter,
                              quantizer=quantizer, verbose=verbose)
        # Flat codes lose nothing to uneven energy, so by default nothing caps the PCA front-loading.
        self._make_transform()

    def _make_codec(self) -> PanoramaFlatCodec:
        return PanoramaFlatCodec(self.d, self.metric, self.n_levels, self.norm_dtype)

    # ---- scanner: the index itself (PanoramaScan._make_scanner) ------------------------------
    state_type = PanoramaFlatState

    def prepare(self, q, probe, coarse) -> PanoramaFlatState:
        ctx = super().prepare(q, probe, coarse)
        ctx.ct = torch.zeros(probe.shape, device=q.device)
        return self._pano_ctx(ctx, q)

    def _base(self, ctx, pos, ct):
        if self.metric == "l2":
            return ct - self.invlists.field("bias")[pos]
        return ct + torch.zeros_like(pos, dtype=torch.float32)

    def _pairs_fns(self, ctx):
        coef = self._coef()
        vec, q = self.invlists.field("vectors"), ctx.q

        def level_part(qi, pos, j):  # qi, pos broadcastable
            sl = level_slice(self.d, self.n_levels, j)
            return coef * (take_rows(q[:, sl], qi) * take_rows(vec[:, sl], pos).float()).sum(-1)

        def exact(qi, pos, ct):
            return self._base(ctx, pos, ct) + coef * (take_rows(q, qi) * take_rows(vec, pos).float()).sum(-1)
        return level_part, exact

    def _scan_matrix(self, ctx, probe, k, mask, max_codes):
        if not kernels.available(self.device):
            return super()._scan_matrix(ctx, probe, k, mask, max_codes)
        # GPUs with Triton: IVFFlat's list-GEMM kernel over every dimension. Per-row level bounds cost
        # more there than the dot products they would save (H200, MiniLM 75k, nprobe 16: the pruned
        # torch waves 16k QPS, this kernel 2.9M), and the results are the same (rounding aside).
        self._count_dense(ctx, probe, max_codes)  # every dimension of every row scanned
        out = self.scan_kernel(ctx, probe, k, mask, max_codes)
        return out if out is not None else self._scan_padded(ctx, probe, k, mask, max_codes)

    def _survivor_exact(self, exact, ctp):
        return None  # the fully summed partial is the exact score

    def gather_cost(self) -> int:
        return self.d
