"""Progress bars for long work: k-means, PQ training and encoding, large adds.

Every place that can take a while asks ``bar(...)`` with an estimate of its work (``score_work``) and
a ``verbose`` setting (an index's ``verbose``, or the function's own argument):

- ``True``: always a bar on stderr (Faiss's ``verbose``), whatever the size or the terminal;
- ``False``: never;
- ``None`` (the indexes' default): only for long work (``LONG_WORK`` units or more), only
  when stderr is a terminal (tqdm's ``disable=None``), and only once it has run ``DELAY_S`` seconds
  (tqdm's ``delay``), so fast devices and small jobs print nothing.

The "torch_ivf" logger's INFO records (training times) are separate and stay as they are.
"""
from __future__ import annotations

from tqdm.auto import tqdm

# Work units: a multiply-add, and SCORE_COST more per (vector, centroid) score: below d ~ 64 the
# score matrix and its argmax, not the GEMM, take the time (k-means on a 2-core CPU: 2-4e7 scores/s
# for d 4 to 128). LONG_WORK is 1-3 s there; k-means on 100k x 128 with 1,024 lists, 40 s, is 3.9e11.
SCORE_COST = 64
LONG_WORK = 1e10
DELAY_S = 1.0


def score_work(n: int, k: int, d: int) -> float:
    """Work units of scoring n vectors of dimension d against k centroids."""
    return float(n) * k * (d + SCORE_COST)


def check_verbose(value, name: str = "verbose"):
    """``value`` if it is True, False or None; TypeError otherwise."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{name} must be True, False or None (a bar for long work only), got {value!r}")
    return value


def bar(total: int | None, desc: str, *, verbose: bool | None, work: float, unit: str = "it") -> tqdm:
    """A tqdm bar of ``total`` steps, disabled (a no-op) unless ``verbose`` and ``work`` ask for one.

    Args:
        total: number of steps the caller will report with ``update`` (None: unknown).
        desc: the bar's label.
        verbose: True (always), False (never) or None (long work on a terminal only).
        work: estimated work units of the whole job (score_work).
        unit: the unit of a step.

    Returns:
        A tqdm object (use as a context manager; ``update`` on a disabled one costs nothing).
    """
    shown = {"total": total, "desc": desc, "unit": unit, "leave": False, "unit_scale": unit == "vec"}  # 1.2M vec
    if verbose is True:
        return tqdm(**shown)
    if verbose is None and work >= LONG_WORK:
        return tqdm(**shown, disable=None, delay=DELAY_S)
    return tqdm(total=total, disable=True)
