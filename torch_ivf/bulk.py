"""Building large indexes: training on a sample, adding from a memmap or a stream in bounded chunks,
and checking beforehand that the index will fit in the memory of the devices it lives on.

    index = torch_ivf.IndexIVFPQ(96, 16384, 48, device="cuda")
    x = np.load("vectors.npy", mmap_mode="r")        # never read into memory as a whole
    check_fits(index, len(x))                         # MemoryError naming the bytes needed vs free
    train_on_sample(index, x, 1_000_000)
    add_in_chunks(index, x, chunk_size=1 << 20)
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from .index.base import Index
from .index.refine import IndexRefine
from .index.stored import StoredIndex
from .progress import LONG_WORK, bar, check_verbose
from .locking import writing

_HEADROOM = 1 + 1 / 32 + 0.01  # spare rows the inverted lists keep per list, plus the per-list minimum
_CHUNK_BYTES = 256 << 20  # default chunk: this many bytes of float32 input rows


def _bar(total: int | None, desc: str, progress):
    """The job's tqdm bar (torch_ivf.progress): progress True always, False never, None for a million
    rows or more on a terminal (total None, a stream of unknown length, counts as small)."""
    check_verbose(progress, "progress")
    big = total is not None and total >= 1_000_000
    return bar(total, desc, verbose=progress, work=LONG_WORK if big else 0, unit="vec")


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_rows(x, d: int, name: str = "x") -> None:
    """x must be a 2-D numpy array (a memmap included) or tensor with d columns."""
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{name} must be a numpy array, memmap or torch tensor of shape (n, {d}), "
                        f"got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"{name} must have shape (n, {d}), got {tuple(x.shape)}")


def _rows(x, rows) -> torch.Tensor:
    """Rows of a numpy array / memmap (read from disk only now) or tensor, as a tensor."""
    if isinstance(x, np.ndarray):
        a = x[rows]  # a memmap is read here, one chunk at a time (copied: its pages may be read-only)
        return torch.from_numpy(a if a.flags.writeable and a.flags.c_contiguous else np.array(a))
    return x[torch.as_tensor(rows, device=x.device) if not isinstance(rows, slice) else rows]


# ---- memory --------------------------------------------------------------------------------------
def _stored_parts(index) -> list[StoredIndex]:
    """The packed-list stores of an index (a refine index has two: codes and full vectors)."""
    if isinstance(index, IndexRefine):
        return [index.base, index.refine]
    if isinstance(index, StoredIndex):
        return [index]
    raise TypeError(f"index must be a torch_ivf index that stores vectors, got {type(index).__name__}")


def _row_bytes(store: StoredIndex) -> int:
    lists = store.invlists
    return sum(int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
               for shape, dtype in lists.specs.values())


def bytes_per_vector(index) -> int:
    """Bytes one stored vector takes in the index's slabs (codes, per-vector terms, the int64 label;
    for IndexRefine the full vectors too), before the lists' few percent of spare rows."""
    return sum(_row_bytes(s) for s in _stored_parts(index))


def memory_needed(index, n: int, *, chunk_size: int | None = None) -> dict[torch.device, int]:
    """Bytes that adding n more vectors (in chunks of chunk_size rows) needs on each device: the new
    rows with the lists' spare rows, a copy of the slab already held (it is re-allocated once, when
    the lists grow), and the working memory of one chunk (its float32 rows, their encoding and the
    chunked centroid scores)."""
    n = _check_int(n, "n", 0)
    chunk = _chunk_rows(index.d, chunk_size, n)
    out: dict[torch.device, int] = {}
    for store in _stored_parts(index):
        dev = store.invlists.device
        held = store.invlists.nbytes() if store.ntotal else 0
        new = int(n * _row_bytes(store) * _HEADROOM) + 8 * store.invlists.nlist
        work = chunk * (store.d * 4 * 3 + _row_bytes(store)) + (256 << 20 if n else 0)
        out[dev] = out.get(dev, 0) + new + held + work
    return out


def free_bytes(device) -> int | None:
    """Bytes that can still be allocated on ``device``: cuda free memory plus what PyTorch's caching
    allocator holds unused; for the CPU, MemAvailable (Linux) or free physical pages; None if unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def _gib(b: int) -> str:
    return f"{b / 2**30:.2f} GiB ({b:,} bytes)"


def check_fits(index, n: int, *, chunk_size: int | None = None, margin: float = 0.05) -> dict[torch.device, int]:
    """Raise MemoryError, naming the bytes needed and free on the device, when adding n more vectors
    to ``index`` would not fit (with ``margin`` of the free memory kept back for the search's own
    buffers); else return memory_needed's bytes per device. Devices whose free memory cannot be read
    are not checked."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        raise ValueError(f"margin must be a number in [0, 1), got {margin!r}")
    needed = memory_needed(index, n, chunk_size=chunk_size)
    for dev, b in needed.items():
        free = free_bytes(dev)
        if free is not None and b > free * (1 - margin):
            per = bytes_per_vector(index)
            raise MemoryError(
                f"{type(index).__name__} with {index.ntotal + n:,} vectors needs {_gib(b)} more on {dev} "
                f"({per} bytes per vector plus spare rows and working memory) but {_gib(free)} is free; "
                "use a smaller code (PQ M, SQ), keep refine vectors on the host (refine_device='cpu') "
                "or shard the index (IndexShards, torch_ivf.distributed)")
    return needed


# ---- training --------------------------------------------------------------------------------------
def train_on_sample(index, x, n_sample: int | None = None, *, seed: int = 0, progress=None,
                    chunk_size: int | None = None) -> torch.Tensor:
    """Train ``index`` on n_sample rows of x drawn uniformly without replacement (all rows when
    n_sample is None or >= len(x)); returns the sampled row numbers.

    Args:
        index: an untrained index (any torch_ivf index with train()).
        x: (n, d) numpy array, memmap (only the sampled rows are read, in ascending order) or tensor.
        n_sample: rows to train on; default: the coarse quantizer's 256 per list (k-means would
            subsample to that anyway), at least 65,536 (the PQ's training set).
        seed: the sample's seed.
        progress: show a tqdm bar (True), never (False) or for samples of a million rows or more, on a
            terminal (None).
        chunk_size: rows read per step."""
    if not isinstance(index, Index) or not hasattr(index, "train"):
        raise TypeError(f"index must be a torch_ivf index, got {type(index).__name__}")
    _check_rows(x, index.d)
    n = x.shape[0]
    if n_sample is None:
        n_sample = max(65536, 256 * int(getattr(index, "nlist", getattr(getattr(index, "base", None), "nlist", 1))))
    n_sample = min(_check_int(n_sample, "n_sample", 1), n)
    if n_sample == 0:
        raise ValueError("x has no rows to train on")
    gen = np.random.default_rng(seed)
    picked = np.arange(n) if n_sample == n else np.sort(gen.choice(n, n_sample, replace=False))
    step = _chunk_rows(index.d, chunk_size, n_sample)
    sample = torch.empty((n_sample, index.d), dtype=torch.float32, device=index.device)
    shown = _bar(n_sample, "sample", progress)
    for a in range(0, n_sample, step):
        rows = picked[a:a + step]
        sample[a:a + len(rows)] = _rows(x, rows).to(index.device, torch.float32)
        shown.update(len(rows))
    shown.set_description("train")
    try:
        index.train(sample)
    finally:
        shown.close()
    return torch.from_numpy(picked)


# ---- adding ----------------------------------------------------------------------------------------
def _chunk_rows(d: int, chunk_size, n: int) -> int:
    if chunk_size is None:
        return max(1, min(max(n, 1), _CHUNK_BYTES // (4 * d)))
    return _check_int(chunk_size, "chunk_size", 1)


def _chunks(x, d: int, step: int) -> Iterator[torch.Tensor]:
    if isinstance(x, (np.ndarray, torch.Tensor)):
        for a in range(0, x.shape[0], step):
            yield _rows(x, slice(a, a + step))
        return
    for i, c in enumerate(x):
        if not isinstance(c, (np.ndarray, torch.Tensor)):
            raise TypeError(f"chunk {i} of x must be a numpy array or tensor, got {type(c).__name__}")
        if c.ndim != 2 or c.shape[1] != d:
            raise ValueError(f"chunk {i} of x must have shape (n, {d}), got {tuple(c.shape)}")
        for a in range(0, c.shape[0], step):  # a large chunk is split so memory stays bounded
            yield _rows(c, slice(a, a + step))


def _reserve(index, x, step: int) -> None:
    """One pass of coarse assignment over x, then room for every row in its list: the adds that
    follow move no list (without this, a list that fills is moved with a few percent of spare rows,
    again and again as chunks arrive)."""
    n = x.shape[0]
    for store in _stored_parts(index):
        lists = store.invlists
        if lists.nlist == 1:
            with writing(index), writing(store):
                lists.reserve(torch.tensor([n]))
            continue
        counts = torch.zeros(lists.nlist, dtype=torch.int64, device=store.device)
        for c in _chunks(x, index.d, step):
            xv, _ = store._vectors(c)
            counts += torch.bincount(store._assign(store._transform(xv)), minlength=lists.nlist)
        with writing(index), writing(store):  # a reservation moves lists: no search may read them meanwhile
            lists.reserve(counts)


def add_in_chunks(index, x, *, ids=None, chunk_size: int | None = None, progress=None,
                  reserve: bool = True, check_memory: bool = True) -> int:
    """Add x to ``index`` chunk by chunk, each chunk moved to the index's device only when it is
    added, so the extra memory is one chunk's, whatever len(x); returns the rows added.

    Args:
        index: a trained torch_ivf index (or IndexShards / anything with add and add_with_ids).
        x: (n, d) numpy array, memmap, tensor (any device), or an iterable of (m, d) arrays/tensors.
        ids: optional (n,) int64 labels (numpy or tensor), in x's row order; default successive labels.
        chunk_size: rows per chunk (default: 256 MiB of float32 rows).
        progress: tqdm bar: True, False, or None (shown for a million rows or more, on a terminal).
        reserve: for arrays and tensors, first assign every row to its list and make room in one
            step (one more pass of the coarse assignment; no list is moved later).
        check_memory: for arrays and tensors, check_fits first (MemoryError naming the bytes)."""
    if not getattr(index, "is_trained", False):
        raise ValueError(f"index must be trained before add_in_chunks, got an untrained {type(index).__name__}")
    sized = isinstance(x, (np.ndarray, torch.Tensor))
    if sized:
        _check_rows(x, index.d)
    elif not isinstance(x, Iterable):
        raise TypeError(f"x must be an array, memmap, tensor or iterable of chunks, got {type(x).__name__}")
    n = x.shape[0] if sized else None
    step = _chunk_rows(index.d, chunk_size, n or 0)
    if ids is not None:
        if not isinstance(ids, (np.ndarray, torch.Tensor)) or ids.ndim != 1:
            raise TypeError(f"ids must be a 1-D int64 numpy array or tensor, got {type(ids).__name__}")
        if n is not None and ids.shape[0] != n:
            raise ValueError(f"ids must have length {n} (one per row of x), got {ids.shape[0]}")
    stores = isinstance(index, (StoredIndex, IndexRefine))
    if sized and stores and check_memory:
        check_fits(index, n, chunk_size=step)
    if sized and stores and reserve and n:
        _reserve(index, x, step)
    shown = _bar(n, "add", progress)
    done = 0
    try:
        for c in _chunks(x, index.d, step):
            m = c.shape[0]
            if ids is None:
                index.add(c)
            else:
                if done + m > ids.shape[0]:
                    raise ValueError(f"ids has {ids.shape[0]} labels but x has more rows")
                index.add_with_ids(c, ids[done:done + m])
            done += m
            shown.update(m)
    finally:
        shown.close()
    if ids is not None and done != ids.shape[0]:
        raise ValueError(f"ids has {ids.shape[0]} labels but x had {done} rows (the rows were added)")
    return done
