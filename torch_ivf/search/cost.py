"""The cost model that picks a search's path: which scan, and how a GPU scan splits its work.

Every figure here was measured (benchmarks/latency). Figures for one device can be stored with
``save_figures`` (e.g. after running benchmarks/latency/sweep.py there): a JSON file per device
name in the user's cache directory, read here when present, never required.

GPU scans are list-major or query-major programs; what they need is enough programs to fill the
device. A batch of nq queries probing P lists of mean size m has about nq * P * m rows to score:
- IVFFlat's list-GEMM kernel gives each (list, query block) a program; below a few thousand such
  programs it also splits lists into row chunks, so the longest probed list does not run alone;
- the PQ look-up scan gives each (query, group of 16 lists) a program; with fewer queries than the
  device runs programs at once it gives each (query, span of its rows) one instead.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
from pathlib import Path

import torch

# Programs a GPU scan should have in flight, per multiprocessor (H200: 132 SMs). Overridden by a
# calibration file where one exists. flat_query_major_elems: IVFFlat batches with nq * d up to this
# take the query-major kernel (H200, 1M rows, nprobe 16, benchmarks/latency/results/h200-gpuflat-2:
# d 128 ahead of the list-major kernel at nq 1 and 4 (0.225 / 0.414 vs 0.428 / 0.550 ms), behind from
# 16 (0.80 vs 0.615); d 384 ahead at nq 1 only (0.378 vs 0.552), behind at 4 (0.694 vs 0.600): each
# query re-reading its lists costs more than the list-major sorts as soon as queries share lists);
# flat_exact_kernel_nq: exact (one-list) searches up to this size take it too, 0 (off) until it is
# timed ahead of the GEMV + torch top-k (benchmarks/latency/flat_small.py, "kernel" vs "gemm").
DEFAULTS = {"flat_programs_per_sm": 32, "pq_programs_per_sm": 8, "min_chunk_rows": 128, "min_span_rows": 128,
            "pq_buffer_share": 1 / 64, "flat_query_major_elems": 512, "probe_tile_rows": 128, "flat_exact_kernel_nq": 0}


def cache_file(device: torch.device) -> Path:
    """Where calibrate() stores this device's figures (one JSON file per device name)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torch_ivf"
    name = "".join(c if c.isalnum() else "-" for c in _device_name(device))
    return base / f"cost-{name}.json"


@functools.lru_cache(maxsize=None)
def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


@functools.lru_cache(maxsize=None)
def _sms(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1


@functools.lru_cache(maxsize=None)
def figures(device: torch.device) -> dict:
    """DEFAULTS, updated by this device's calibration file when one exists (unreadable files ignored)."""
    out = dict(DEFAULTS)
    try:
        stored = json.loads(cache_file(device).read_text())
        out.update({k: v for k, v in stored.items() if k in DEFAULTS and isinstance(v, (int, float))})
    except (OSError, ValueError):
        pass
    return out


def save_figures(device: torch.device, **values) -> Path:
    """Store figures (keys of DEFAULTS) for this device; later processes read them instead."""
    unknown = set(values) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown cost figures {sorted(unknown)}; expected some of {sorted(DEFAULTS)}")
    path = cache_file(device)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**figures(device), **values}, indent=1))
    figures.cache_clear()
    return path


def _pow2_at_least(x: float) -> int:
    return 1 << max(0, int(x - 1).bit_length()) if x > 1 else 1


def flat_chunk_rows(nq: int, P: int, nlist: int, ntotal: int, max_size: int, device: torch.device) -> int:
    """Row chunk of IVFFlat's list kernel (0: whole lists). Unchunked, about min(nlist, nq P) + nq P / 16
    programs read m = ntotal / nlist rows each; chunks of c rows give that many times m / c, and c is
    the smallest power of two that keeps the programs near the target (so large batches stay whole)."""
    f = figures(device)
    pairs = nq * P
    programs = min(nlist, pairs) + pairs / 16
    rows = programs * max(1.0, ntotal / max(nlist, 1))
    target = f["flat_programs_per_sm"] * _sms(device)
    chunk = max(int(f["min_chunk_rows"]), _pow2_at_least(rows / target))
    return 0 if chunk >= max_size else chunk


def longest_chunks(sizes_host: torch.Tensor, P: int, chunk_rows: int) -> int:
    """Row chunks of the P longest lists: the most chunks one query probing P lists can meet (a bound
    known on the host). Cached on the sizes tensor itself, checked against its version counter, so a
    search of a few queries does not redo the host top-k."""
    memo = getattr(sizes_host, "_longest_chunks", None)
    if memo is None or memo[0] != sizes_host._version:
        memo = (sizes_host._version, {})
        sizes_host._longest_chunks = memo
    hit = memo[1].get((P, chunk_rows))
    if hit is None:
        chunks = (sizes_host + chunk_rows - 1) // chunk_rows
        hit = memo[1][(P, chunk_rows)] = int(chunks.topk(min(P, chunks.shape[0])).values.sum())
    return hit


def flat_probe_rows(nq: int, d: int, k: int, device: torch.device) -> int:
    """Rows per program of IVFFlat's query-major kernel (one program per query and tile of a probed
    list), 0 where the list-major kernel is the faster: nq * d above flat_query_major_elems (a list read
    once per block of queries beats each query reading its own lists) and k beyond 32 (the kernel
    keeps k maxima per tile)."""
    f = figures(device)
    return int(f["probe_tile_rows"]) if nq * d <= f["flat_query_major_elems"] and k <= 32 else 0


@functools.lru_cache(maxsize=None)
def _memory(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else 0


def pq_chunk_queries(nq: int, P: int, width: int, budget: int, device: torch.device) -> int:
    """Queries per launch of the PQ look-up scan, whose score buffer is (queries, width). ``budget``
    elements bound it on CPUs; on a GPU the buffer may take pq_buffer_share of the device's memory, so
    that one launch has several times the programs the device runs at once: each query gives
    ceil(P / 16) programs, and at 100M rows (width ~ 500k) the budget alone left ~70 of them per
    launch on 132 SMs, a throughput that fell as 1/nprobe."""
    chunk = max(1, budget // max(width, 1))
    if device.type == "cuda":
        f = figures(device)
        want = 4 * f["pq_programs_per_sm"] * _sms(device) // max(1, -(-P // 16))
        cap = int(_memory(device) * f["pq_buffer_share"]) // (4 * max(width, 1))
        chunk = max(chunk, min(want, cap))
    return max(1, min(nq, chunk))


def pq_span(nq: int, P: int, width: int, device: torch.device) -> int:
    """Rows per program of the PQ look-up scans split over (query, span of its row), 0 for the
    (query, group of lists) programs: split while the queries alone do not fill the device."""
    f = figures(device)
    target = f["pq_programs_per_sm"] * _sms(device)
    if device.type != "cuda" or nq * max(1, -(-P // 16)) >= target:
        return 0
    span = max(int(f["min_span_rows"]), _pow2_at_least(nq * width / target))
    return 0 if span >= width else span


# ---- CPU threads ------------------------------------------------------------------------------
# A search is tens to thousands of small torch ops; each parallel op wakes every OpenMP thread and
# waits for all of them. On the 2-core machine with other processes busy (load 4-12), IVFFlat
# 200k x 128 ran 2-50x slower with torch's 2 threads than with 1 at nq = 1..1024
# (benchmarks/latency/README.md), while faiss-cpu kept its speed. So:
# - an index whose search is one large GEMM per chunk (Flat) keeps the caller's threads inside its
#   ops, except for small batches;
# - an index whose search is many small ops (IVF) runs every op on one thread, and its grouped scan
#   spreads lists over list workers (search/workers.py), as many as the caller's thread setting.
# The counts depend on the batch only, never on the load: a float32 GEMM's rounding depends on how it
# is split over threads, and a query's result must not depend on what else runs.
SMALL_BATCH = 4  # batches up to this size run on one thread: thread wake-ups cost more than they save
_caller = threading.local()  # the caller's thread setting during a search (searches may nest)


def cpu_threads(nq: int, ops_parallel: bool = True) -> int:
    """OpenMP threads inside each op of a CPU search of nq queries: one for small batches and for
    indexes of many small ops (ops_parallel False), else the caller's setting."""
    return 1 if nq <= SMALL_BATCH or not ops_parallel else torch.get_num_threads()


def cpu_workers(nq: int) -> int:
    """List workers of a CPU grouped scan of nq queries: the caller's thread setting (read when the
    search began), one for small batches."""
    return 1 if nq <= SMALL_BATCH else getattr(_caller, "threads", 1)


# A single query's lists may be shared out to list workers from this many scored elements (rows x d)
# on; None: never (the default). On the 2-core machine shared with other agents (load 5-7), IVFFlat
# 200k x 128 nprobe 16 nq = 1 ran 1.7 ms on two workers against 0.99 on one in bench.py's interleaved
# calls (a worker that takes a list and loses its core holds the query back), and direct A/Bs gave
# 1.07 vs 1.07 ms at load 6 and 1.12 vs 0.99 at load 0.25 (16 GEMVs of ~20 us: the hand-off costs what
# the second core saves), so one query stays on one thread unless a caller sets this (e.g. 1 << 19).
QUERY_SPLIT_ELEMENTS: int | None = None


def query_workers(elements: int) -> int:
    """List workers for one query of the per-query path scoring ``elements`` values (rows x d): the
    caller's thread setting (read when the search began) for scans of QUERY_SPLIT_ELEMENTS or more,
    else one."""
    split = QUERY_SPLIT_ELEMENTS is not None and elements >= QUERY_SPLIT_ELEMENTS
    return getattr(_caller, "threads", 1) if split else 1


@contextlib.contextmanager
def cpu_threads_for(device: torch.device, nq: int, ops_parallel: bool = True):
    """torch's intra-op threads set to cpu_threads(nq, ops_parallel) for a CPU search, the caller's
    count restored after (a user's global setting is never left changed)."""
    saved = torch.get_num_threads()
    want = cpu_threads(nq, ops_parallel) if device.type == "cpu" else saved
    outer = getattr(_caller, "threads", None)
    if outer is None:  # a nested search (a refine index's base) keeps the outermost caller's setting
        _caller.threads = saved
    if want != saved:
        torch.set_num_threads(want)
    try:
        yield
    finally:
        if want != saved:
            torch.set_num_threads(saved)
        if outer is None:
            del _caller.threads
