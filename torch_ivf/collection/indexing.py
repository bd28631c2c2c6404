"""Which index a collection uses, and when it trains or retrains one.

Exact search is the fast path at RAG scale (an exact scan of a few thousand vectors beats probing
lists), so a collection starts on a flat index and only moves to IVF once it is big enough for IVF to win on its device.
Results are exact until then, also for an explicit "IVF..." spec that has too little data to train.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from ..arrays import positive_int

# Largest n * d served by exact search under "auto", per device type. GPU: an H100 measurement
# (37k x 384 exact at 862k QPS vs 49k QPS IVF) leaves exact ahead far beyond RAG sizes.
# CPU (benchmarks/results/stores-auto-cpu.json, 2 cores, MiniLM d=384, single queries): exact takes
# 1 ms at 10k, 2.7 ms at 20k, 20 ms at 40k (out of cache); auto's IVF 0.7 / 1.3 / 2.4 ms at recall@10
# 0.96 / 0.98 / 0.99. Exact (recall 1.0) stays while it costs a few ms; IVF takes over past 20k x 384.
EXACT_WORK_LIMIT = {"cuda": 2_000_000 * 384, "cpu": 20_000 * 384}
MIN_POINTS_PER_LIST = 39  # k-means needs ~39 points per centroid for stable lists (Faiss's warning)
RETRAIN_GROWTH = 4.0       # retrain an auto-sized IVF once it holds 4x the data it was trained on

_IVF_SPEC = re.compile(r"^IVF(\{nlist\}|\d+),(.+)$")
# Named choices: "sq8" is IVF over 8-bit scalar-quantized residuals, sized like "auto"'s IVF: a
# quarter of IVFFlat's float32 memory at nearly its recall (benchmarks/results/sq/README.md).
NAMED_SPECS = {"sq8": "IVF{nlist},SQ8"}


@dataclass
class IndexPlan:
    spec: str            # "auto", "Flat", "IVF{nlist},Flat", "IVF1024,Flat", "IVF{nlist},SQ8", "sq8", ...
    metric: str          # index metric: "l2" or "ip" (cosine arrives here as ip over unit vectors)
    device: torch.device
    nprobe: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.spec, str):
            raise TypeError(f"index must be a spec string, got {type(self.spec).__name__}")
        from torch_ivf.factory import is_codec

        self.spec = NAMED_SPECS.get(self.spec, self.spec)
        ivf = _IVF_SPEC.match(self.spec)
        if self.spec != "auto" and self.spec != "Flat" and not (ivf and is_codec(ivf.group(2))):
            raise ValueError(f"index must be 'auto', 'Flat', one of {sorted(NAMED_SPECS)} or "
                             f"'IVF<nlist|{{nlist}}>,<codec>' (codec: Flat, SQ8, PQ32x8, ...), got {self.spec!r}")
        if self.nprobe is not None:
            self.nprobe = positive_int(self.nprobe, "nprobe")

    # ---- decisions --------------------------------------------------------------------------
    def target_nlist(self, n: int, d: int) -> int | None:
        """nlist the collection should be trained with at size n, or None for exact search."""
        if self.spec == "Flat":
            return None
        if self.spec == "auto":
            kind = "cuda" if self.device.type == "cuda" else "cpu"
            if n * d <= EXACT_WORK_LIMIT[kind]:
                return None
            return self._auto_nlist(n)
        fixed = _IVF_SPEC.match(self.spec).group(1)
        nlist = self._auto_nlist(n) if fixed == "{nlist}" else int(fixed)
        return nlist if n >= max(nlist * MIN_POINTS_PER_LIST, 1024) else None

    @staticmethod
    def _auto_nlist(n: int) -> int:
        # ~4 sqrt(n) lists, rounded to a power of two, with enough points per list to train.
        nlist = 2 ** round(math.log2(max(4 * math.sqrt(n), 16)))
        while nlist > 16 and n < nlist * MIN_POINTS_PER_LIST:
            nlist //= 2
        return nlist

    def min_train_size(self) -> int | None:
        """Documents an explicit IVF spec needs before it trains (None for "auto" and "Flat")."""
        if self.spec in ("auto", "Flat"):
            return None
        fixed = _IVF_SPEC.match(self.spec).group(1)
        nlist = 16 if fixed == "{nlist}" else int(fixed)
        return max(nlist * MIN_POINTS_PER_LIST, 1024)

    def needs_change(self, current_nlist: int | None, trained_n: int, n: int, d: int) -> int | None:
        """New nlist to (re)train with, or None to keep the current index."""
        target = self.target_nlist(n, d)
        if target is None:
            return None
        if current_nlist is None:
            return target
        auto_sized = self.spec == "auto" or "{nlist}" in self.spec
        if auto_sized and n > RETRAIN_GROWTH * trained_n:
            return target
        return None

    def default_nprobe(self, nlist: int) -> int:
        if self.nprobe is not None:
            return min(self.nprobe, nlist)
        # ~1/16 of the lists keeps recall@10 high on clustered text embeddings.
        return max(1, min(nlist, math.ceil(nlist / 16), 64)) if nlist > 16 else nlist

    def codec(self) -> str:
        if self.spec in ("auto", "Flat"):
            return "Flat"
        return _IVF_SPEC.match(self.spec).group(2)

    # ---- construction -----------------------------------------------------------------------
    def new_flat(self, d: int):
        from torch_ivf import IndexFlat

        return IndexFlat(d, metric=self.metric, device=self.device)

    def new_ivf(self, d: int, nlist: int, train: torch.Tensor, verbose: bool | None = None):
        """An IVF index trained on ``train``; verbose: its progress bars (an index's verbose)."""
        from torch_ivf import index_factory

        index = index_factory(d, f"IVF{nlist},{self.codec()}", metric=self.metric, verbose=verbose)
        index = index.to(self.device)
        index.train(train.to(self.device))
        index.nprobe = self.default_nprobe(nlist)
        return index


def is_ivf(index) -> bool:
    from torch_ivf import IndexIVF

    return isinstance(index, IndexIVF)
