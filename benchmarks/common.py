"""Measurement helpers shared by every runner.

This module imports only numpy and torch (never ``torch_ivf``): the subprocess that runs the earlier
torch-ivf 0.1.1 imports it too, with the old package first on ``sys.path``.
"""
from __future__ import annotations

import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


# --------------------------------------------------------------------------------------------- #
# recall
# --------------------------------------------------------------------------------------------- #
def recall_at_k(I: np.ndarray, gt: np.ndarray, k: int) -> float:
    """Classic recall@k: |returned top-k  intersect  exact top-k| / k, averaged over queries."""
    I = np.asarray(I)[:, :k]
    g = np.asarray(gt)[: I.shape[0], :k]
    hits = 0
    for row, grow in zip(I, g):
        hits += len(np.intersect1d(row[row >= 0], grow, assume_unique=False))
    return hits / float(I.shape[0] * k)


def recall_tensors(I, gt) -> float:
    """recall_at_k of tensors on any device (k = gt's width), without a copy to the host."""
    k = gt.shape[1]
    I = I[: gt.shape[0], :k]
    hits = (I[:, :, None] == gt[:, None, :]).any(2).sum()
    return float(hits) / gt.numel()


def recall_tie_aware(I: np.ndarray, xq: np.ndarray, xb: np.ndarray, gt_d: np.ndarray, k: int,
                     metric: str) -> float:
    """Recall that counts a returned id as correct when its exact distance is no worse than the exact
    k-th distance (duplicates in real data make plain recall under-count). Distances in float64."""
    I = np.asarray(I)[:, :k]
    nq = I.shape[0]
    hits = 0
    for qi in range(nq):
        ids = np.unique(I[qi][I[qi] >= 0])
        if ids.size == 0:
            continue
        v = xb[ids].astype(np.float64)
        q = xq[qi].astype(np.float64)
        kth = float(gt_d[qi, k - 1])
        if metric == "l2":
            dist = ((v - q) ** 2).sum(1)
            ok = dist <= kth * (1 + 1e-5) + 1e-6
        else:
            dist = v @ q
            ok = dist >= kth - abs(kth) * 1e-5 - 1e-6
        hits += min(int(ok.sum()), k)
    return hits / float(nq * k)


# --------------------------------------------------------------------------------------------- #
# machine description
# --------------------------------------------------------------------------------------------- #
def _lscpu_summary() -> dict:
    out = {}
    try:
        txt = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in txt.splitlines():
            if ":" not in line:
                continue
            key, val = (s.strip() for s in line.split(":", 1))
            if key in ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "Socket(s)",
                       "Vendor ID", "Hypervisor vendor", "L2 cache", "L3 cache", "Architecture"):
                out[key] = val
        flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "avx_vnni")
                 if f" {f} " in f" {txt} " or f" {f}\n" in txt]
        out["simd"] = ",".join(flags)
    except Exception as e:  # pragma: no cover - lscpu missing
        out["error"] = repr(e)
    return out


def machine_info(device: str) -> dict:
    import torch

    info = {
        "hostname_hash": abs(hash(platform.node())) % 10**8,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _lscpu_summary(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "device": device,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = p.name
        info["gpu_mem_gib"] = round(p.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
        info["allow_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
        try:
            import triton  # noqa: F401

            info["triton"] = triton.__version__
        except Exception:
            info["triton"] = None
    return info


# --------------------------------------------------------------------------------------------- #
# memory accounting
# --------------------------------------------------------------------------------------------- #
def tensor_bytes(obj, _seen=None, _depth=0) -> int:
    """Bytes of every distinct torch tensor storage reachable from ``obj`` (attributes, lists, dicts).
    Counts capacity the index really holds (slack of growable lists included)."""
    import torch

    if _seen is None:
        _seen = set()
    if _depth > 6:
        return 0
    if isinstance(obj, torch.Tensor):
        try:
            st = obj.untyped_storage()
            key = (st.data_ptr(), obj.device.type)
            if key in _seen or st.data_ptr() == 0:
                return 0
            _seen.add(key)
            return int(st.nbytes())
        except Exception:
            return int(obj.numel() * obj.element_size())
    if id(obj) in _seen:
        return 0
    _seen.add(id(obj))
    total = 0
    if isinstance(obj, dict):
        for v in obj.values():
            total += tensor_bytes(v, _seen, _depth + 1)
    elif isinstance(obj, (list, tuple, set)):
        for v in obj:
            total += tensor_bytes(v, _seen, _depth + 1)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type) and type(obj).__module__ not in (
            "builtins",):
        for v in vars(obj).values():
            total += tensor_bytes(v, _seen, _depth + 1)
    elif hasattr(obj, "__slots__"):
        for name in obj.__slots__:
            total += tensor_bytes(getattr(obj, name, None), _seen, _depth + 1)
    return total


# --------------------------------------------------------------------------------------------- #
# timing
# --------------------------------------------------------------------------------------------- #
@dataclass
class TimingPolicy:
    warmup: int = 1
    min_repeats: int = 3
    max_repeats: int = 15
    target_s: float = 1.0          # keep repeating until this much time is measured (>= min_repeats)
    max_call_s: float = 20.0       # skip a batch predicted to take longer than this per call
    latency_queries: int = 200     # single-query calls timed for p50/p99 at nq = 1
    latency_target_s: float = 4.0  # ... but stop sooner once this much time was spent


def cpu_busy(sample_s: float = 0.3) -> float:
    """Fraction of all CPUs busy over ``sample_s`` (call it while this process is idle: then it is what
    other processes use). Linux only; 0.0 elsewhere."""
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v), idle
    try:
        t0, i0 = read()
        time.sleep(sample_s)
        t1, i1 = read()
        return max(0.0, 1.0 - (i1 - i0) / max(1, t1 - t0))
    except Exception:
        return 0.0


class CpuWindow:
    """CPU time that processes other than this one used during a window, as a fraction of all CPUs:
    (busy jiffies of the machine - jiffies of this process) / all jiffies. Linux only."""

    @staticmethod
    def _snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        mine = int(fields[11]) + int(fields[12])          # utime + stime
        return sum(v), sum(v) - idle, mine

    def __enter__(self):
        try:
            self.a = self._snap()
        except Exception:
            self.a = None
        return self

    def __exit__(self, *exc):
        try:
            self.b = self._snap() if self.a else None
        except Exception:
            self.b = None
        return False

    @property
    def others(self) -> float | None:
        if not self.a or not self.b:
            return None
        tot = self.b[0] - self.a[0]
        busy = (self.b[1] - self.a[1]) - (self.b[2] - self.a[2])
        return max(0.0, busy / max(1, tot))


class QuietGate:
    """On a shared CPU machine, waits (bounded) until other processes leave the CPUs alone before a
    measurement, and says how busy they were, so contended rows can be told apart."""

    def __init__(self, enabled: bool, threshold: float = 0.25, max_wait_s: float = 45.0,
                 total_wait_s: float = 240.0, max_tries: int = 3):
        self.enabled = enabled
        self.max_tries = max_tries
        self.threshold = threshold
        self.max_wait_s = max_wait_s
        self.total_left = total_wait_s

    def wait(self) -> float:
        if not self.enabled:
            return 0.0
        busy = cpu_busy()
        t0 = time.perf_counter()
        while busy > self.threshold and self.total_left > 0 and time.perf_counter() - t0 < self.max_wait_s:
            time.sleep(1.0)
            busy = cpu_busy()
        waited = time.perf_counter() - t0
        self.total_left -= waited
        if waited > 1.5:
            log(f"    waited {waited:.0f} s for other processes to leave the CPUs (busy now {busy:.0%})")
        return busy


class Deadline:
    def __init__(self, seconds: float | None):
        self.t0 = time.perf_counter()
        self.seconds = seconds

    def left(self) -> float:
        if self.seconds is None:
            return float("inf")
        return self.seconds - (time.perf_counter() - self.t0)

    def expired(self) -> bool:
        return self.left() <= 0


def time_batches(call: Callable, xq, nq: int, policy: TimingPolicy, sync: Callable[[], None]) -> dict:
    """Times one ``call`` on the first ``nq`` queries (see ``time_group``)."""
    return time_group([call], xq, nq, policy, sync)[0]


def time_group(calls: list[Callable], xq, nq: int, policy: TimingPolicy,
               sync: Callable[[], None]) -> list[dict]:
    """Times several ways of answering the same batch, interleaved call by call (round robin), so a
    load change on a shared machine hits them all alike and their ratios stay meaningful.

    nq == 1: each of up to ``latency_queries`` single queries is asked of every call in turn; p50/p99
    latency per call; QPS = 1 / median latency.
    nq > 1: one warm-up call each on the full batch (on 2,048 of its queries when nq > 4,096), then rounds
    until ``target_s`` is measured per call and ``min_repeats`` rounds are done; QPS = nq / median.
    Returns, per call: qps, median_s, repeats, times_s (or p50_ms / p99_ms), and I of the first call.
    """
    m = len(calls)
    if nq == 1:
        nlat = min(policy.latency_queries, xq.shape[0])
        for i in range(min(3, nlat)):                     # warm-up
            for c in calls:
                c(xq[i:i + 1])
        sync()
        lats = [[] for _ in calls]
        outs = [[] for _ in calls]
        t_start = time.perf_counter()
        rng = random.Random(0)
        for i in range(nlat):
            q = xq[i:i + 1]
            for j in rng.sample(range(m), m):      # random order: no fixed cache-warm neighbour
                c = calls[j]
                t0 = time.perf_counter()
                out = c(q)
                sync()
                lats[j].append(time.perf_counter() - t0)
                outs[j].append(out)
            if time.perf_counter() - t_start > policy.latency_target_s * m and i >= 20:
                break
        res = []
        for j in range(m):
            lat = np.asarray(lats[j])
            res.append(dict(nq=1, median_s=float(np.median(lat)),
                            p50_ms=float(np.percentile(lat, 50) * 1e3),
                            p99_ms=float(np.percentile(lat, 99) * 1e3), repeats=int(lat.size),
                            qps=float(1.0 / np.median(lat)),
                            I=np.concatenate([to_np(o) for o in outs[j]], 0), recall_queries=int(lat.size)))
        return res

    batch = xq[:nq]
    warm = [0.0] * m
    for _ in range(policy.warmup):
        for j, c in enumerate(calls):
            t0 = time.perf_counter()
            c(batch if nq <= 4096 else batch[:2048])
            sync()
            warm[j] = (time.perf_counter() - t0) * (nq / 2048 if nq > 4096 else 1.0)
    # per round, each call runs about target_s / min_repeats worth of calls (at least one)
    per_round = policy.target_s / max(1, policy.min_repeats)
    reps = [max(1, min(10, int(per_round / max(w, 1e-6)))) for w in warm]
    min_rounds = policy.min_repeats if max(warm) < 2.0 else min(2, policy.min_repeats)
    times = [[] for _ in calls]
    first = [None] * m
    total = [0.0] * m
    rounds = 0
    while True:
        for j, c in enumerate(calls):
            for _ in range(reps[j]):
                t0 = time.perf_counter()
                out = c(batch)
                sync()
                dt = time.perf_counter() - t0
                times[j].append(dt)
                total[j] += dt
                if first[j] is None:
                    first[j] = to_np(out)
                del out
        rounds += 1
        if rounds >= policy.max_repeats:
            break
        if rounds >= min_rounds and min(total) >= policy.target_s * 0.9:
            break
        if rounds >= min_rounds and max(total) >= policy.max_call_s:
            break                                          # a long call: stop at min_repeats rounds
        if rounds >= 1 and max(t[-1] for t in times) > policy.max_call_s / 3:
            break                                          # very long calls: one round
    res = []
    for j in range(m):
        med = statistics.median(times[j])
        res.append(dict(nq=nq, median_s=float(med), qps=float(nq / med), repeats=len(times[j]),
                        times_s=[round(t, 6) for t in times[j]], I=first[j], recall_queries=nq))
    return res


def to_np(I) -> np.ndarray:
    if hasattr(I, "detach"):
        I = I.detach().cpu().numpy()
    return np.asarray(I)


def timed(fn: Callable[[], object], sync: Callable[[], None] = lambda: None) -> tuple[float, object]:
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def write_row(path: str | None, row: dict) -> None:
    row = {k: v for k, v in row.items() if k != "I"}
    line = json.dumps(row, default=_json_default)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
    else:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


def log(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()
