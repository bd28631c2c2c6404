"""CUDA-graph replay for small batches, for every index type.

A small search is ~30 small kernels whose launch cost (~1 ms of Python + driver time on an H100 for
nq=1) dwarfs their work; replaying a captured graph launches them all at once. A search is captured
once per shape key on its first call. Only paths that never wait for the host can be captured; a
capture that fails anyway (a sync or host-to-device copy slipped in) marks its key, and that shape
runs uncaptured from then on instead of raising.
"""
from __future__ import annotations

import threading

import torch

GRAPH_MAX_NQ = 256  # larger batches launch few kernels per query: capturing buys little there
_GRAPH_CACHE = 8


def usable(device: torch.device, nq: int) -> bool:
    """Graph replay applies: a CUDA device, a small batch, and no capture running already (a refine
    index captures its base's search inside its own graph)."""
    return device.type == "cuda" and nq <= GRAPH_MAX_NQ and not torch.cuda.is_current_stream_capturing()


def replay_graph(owner, key, q, run, stats_owner=None):
    """run(q) -> (D, I) through a CUDA graph captured for ``key`` (owner keeps the last few graphs).

    A Panorama index (``stats_owner``, by default owner) counts scanned dimensions in device counters:
    they are graph outputs too, so after each replay its ``panorama_stats`` holds that replay's counts."""
    from ..panorama import PanoramaStats
    stats_owner = owner if stats_owner is None else stats_owner
    scales = owner.__dict__.setdefault("_graph_stat_scales", {})

    def counted(x):
        out = run(x)
        stats = stats_owner.__dict__.get("panorama_stats")
        if stats is None:
            return out
        scales[key] = (stats._scanned, stats._total, [scale for _, scale in stats._pending])
        return (*out, *(counts for counts, _ in stats._pending))

    # searches of one index run concurrently (they share its read lock), but a graph has one static
    # input and output: one replay at a time, its outputs cloned before the next may start
    with owner.__dict__.setdefault("_graph_lock", threading.Lock()):
        cache = owner.__dict__.setdefault("_graphs", {})
        entry = cache.pop(key, None)
        if entry is None:
            entry = _capture(counted, q)
            while len(cache) >= _GRAPH_CACHE:
                cache.pop(next(iter(cache)))
        cache[key] = entry  # most recently used last
        if entry is False:  # this shape could not be captured
            out = counted(q)
        else:
            graph, static_q, captured = entry
            static_q.copy_(q)
            graph.replay()
            out = tuple(t.clone() for t in captured)
    if key in scales:
        scanned, total, per = scales[key]
        stats_owner.panorama_stats = PanoramaStats(scanned, total)
        for counts, scale in zip(out[2:], per):
            stats_owner.panorama_stats.add_counts(counts, scale)
    return out[0], out[1]


def _capture(run, q):
    static_q = q.clone()
    side = torch.cuda.Stream(device=q.device)
    side.wait_stream(torch.cuda.current_stream(q.device))
    with torch.cuda.stream(side):  # warm-up: compiles kernels, fills caches outside the capture
        run(static_q)
    torch.cuda.current_stream(q.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            out = run(static_q)
    except RuntimeError:  # the path waited for the host after all: run it uncaptured
        torch.cuda.synchronize(q.device)
        return False
    return graph, static_q, out
