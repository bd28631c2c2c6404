"""The one place that chooses a search path for a batch: "grouped" (per-list GEMMs, or bucketed batched
GEMMs on GPUs), "matrix" (a codec's Triton scan, else a padded torch gather) or, chosen by "auto"
only, "query" (CPUs, small batches: each query's lists scored one by one, search/per_query.py)."""
from __future__ import annotations

from .. import kernels

SEARCH_MODES = ("auto", "grouped", "csr", "matrix")
# "auto" without kernels: the padded gather while it materialises at most this many elements. H200
# (benchmarks/latency/results/h200-run4, kernels off): clustered 1M x 128 (longest list 10.5k rows)
# nq 4 / 16 / 64 gather 86M / 344M / 1.4G: matrix 1.43 / 4.59 / 16.9 ms, grouped 3.59 / 4.25 / 6.99;
# MiniLM 40k x 384 (longest ~640) nq 64 / 256 gather 0.25G / 1G: matrix 1.89 / 7.33, grouped 2.81 / 4.42
MATRIX_GATHER = 1 << 29  # elements
# CPU batches up to this size take the per-query path. IVFFlat 200k x 128, nprobe 16, 2-core machine
# at load 8: nq = 1 1.26 ms vs 1.34 grouped, nq = 2 3.5 vs 1.9, nq = 4 7.4 vs 6.0 (grouped since it
# selects over all lists at once, search/select.py); only the per-query path splits one query's lists
PER_QUERY_MAX_NQ = 1


def choose_path(index, nq: int, nprobe: int, max_codes: int = 0) -> str:
    """"auto": the cheaper path by measurements (benchmarks/results).

    CPUs: always grouped (per-list GEMMs beat the gather at every nq measured). GPUs with Triton:
    the codec's Triton scan (matrix; for IVFFlat it beat torch's bucketed GEMMs at every nq timed
    on the H200, benchmarks/pq/README.md). GPUs without it (DirectML, no Triton): matrix while the
    gathered rows stay small, else grouped; codecs without a batched list scan (PQ) always take
    matrix on GPUs (H100: 6.8k -> 17-400k QPS)."""
    if index.search_mode != "auto":
        return index.search_mode
    if index.wave_scan:
        # Panorama's wave scan: its launches scale with waves x levels, not with lists, which is what
        # a GPU needs; on the CPU its flat pair batches beat the per-list loop 3-7x (MiniLM 80k, nprobe 8-64).
        return "matrix"
    if index.device.type == "cpu":
        return "query" if nq <= PER_QUERY_MAX_NQ and not max_codes else "grouped"
    if not index.scanner.batched_lists or (index.scanner.kernel_scan and kernels.available(index.device)):
        return "matrix"
    gathered = nq * nprobe * index.invlists.max_size * index.scanner.gather_cost()
    return "matrix" if gathered <= MATRIX_GATHER else "grouped"
