"""One index over a torch.distributed group: each process holds one shard (DistributedIndex).

Collective methods (train, add, search, remove_ids, ntotal, save, load) must be called by every rank
of the group, in the same order. Each starts with one small all-gather in which every rank states
what it was given and whether that was valid, so that a bad argument on one rank raises the same
ValueError on every rank instead of leaving the others waiting in a collective forever.

Works over NCCL (GPUs; also RCCL on ROCm, which PyTorch names "nccl"; call torch.cuda.set_device
first) and gloo (CPUs). Nothing is pickled: what travels is tensors, and saved shards are
torch_ivf index files plus a JSON manifest.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .index.base import Index, SearchParams
from .integrity import parse_json
from .io import atomic_write_bytes, index_from_bytes, index_to_bytes, read_index, write_index
from .selectors import IDSelector
from .shards import _out, _rows, copy_training, merge_topk

MANIFEST = "manifest.json"
FORMAT = "torch-ivf-distributed"
_MSG = 400  # bytes of an error message carried by the agreement


class _Group:
    """A process group, the device its collectives run on, and the agreement step."""

    def __init__(self, group):
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("torch.distributed must be initialised first (torch.distributed.init_process_group)")
        self.group = group
        self.rank, self.size = dist.get_rank(group), dist.get_world_size(group)
        self.nccl = "nccl" in str(dist.get_backend(group))
        self.device = torch.device("cuda", torch.cuda.current_device()) if self.nccl else torch.device("cpu")
        self.root = 0 if group is None else dist.get_global_rank(group, 0)  # group rank 0, as src/dst

    def agree(self, op: str, error: str | None, info=()) -> list[list[int]]:
        """All-gather (error?, info ints) from every rank; raise the same ValueError everywhere if any
        rank had an error. Returns every rank's info, by rank."""
        msg, m = (error or "").encode()[:_MSG], len(info)
        row = torch.zeros(2 + m + _MSG, dtype=torch.int64)
        row[0], row[1] = int(error is not None), len(msg)
        row[2:2 + m] = torch.tensor([int(v) for v in info], dtype=torch.int64)
        row[2 + m:2 + m + len(msg)] = torch.tensor(list(msg), dtype=torch.int64)
        rows = torch.stack(self.all_gather(row.to(self.device))).cpu()
        bad = [(r, bytes(rows[r, 2 + m:2 + m + int(rows[r, 1])].tolist()).decode(errors="replace"))
               for r in range(self.size) if rows[r, 0]]
        if bad:
            raise ValueError(f"{op}: " + "; ".join(f"rank {r}: {text}" for r, text in bad))
        return rows[:, 2:2 + m].tolist()

    def all_gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        out = [torch.empty_like(t) for _ in range(self.size)]
        dist.all_gather(out, t, group=self.group)
        return out

    def gather_rows(self, x: torch.Tensor, counts: list[int], to_all: bool):
        """Rows of every rank concatenated by rank (on rank 0 only unless to_all; None elsewhere),
        through buffers padded to the largest count."""
        buf = torch.zeros(max(counts), x.shape[1], dtype=x.dtype, device=self.device)
        buf[: x.shape[0]] = x
        if to_all:
            parts = self.all_gather(buf)
        else:
            parts = [torch.empty_like(buf) for _ in range(self.size)] if self.rank == 0 else None
            dist.gather(buf, parts, dst=self.root, group=self.group)
            if parts is None:
                return None
        return torch.cat([p[:c] for p, c in zip(parts, counts)])

    def broadcast_bytes(self, payload: bytes | None, error: str | None) -> bytes:
        """Rank 0's payload on every rank, or rank 0's error raised on every rank."""
        head = torch.tensor([0, 0], dtype=torch.int64)
        if self.rank == 0:
            payload = error.encode() if error is not None else payload
            head[:] = torch.tensor([int(error is not None), len(payload)])
        head = head.to(self.device)
        dist.broadcast(head, src=self.root, group=self.group)
        failed, size = head.tolist()
        data = (torch.frombuffer(bytearray(payload), dtype=torch.uint8) if self.rank == 0 and size
                else torch.empty(size, dtype=torch.uint8)).to(self.device)
        dist.broadcast(data, src=self.root, group=self.group)
        out = data.cpu().numpy().tobytes()
        if failed:
            raise ValueError(f"rank 0: {out.decode(errors='replace')}")
        return out


class DistributedIndex:
    """``DistributedIndex(local_index, group=None)``: this rank's shard of one index (collective:
    every rank constructs it, with indexes of the same class and settings)."""

    def __init__(self, local_index, group=None):
        self._group = _Group(group)
        self.group, self.rank, self.world_size = group, self._group.rank, self._group.size
        error, sig = None, [0, 0, 0]
        if not isinstance(local_index, Index):
            error = f"local_index must be a torch_ivf index, got {type(local_index).__name__}"
        else:
            kind = json.dumps([type(local_index).__name__, local_index.config()], sort_keys=True)
            sig = [local_index.d, zlib.crc32(kind.encode()), local_index.metric_type]
        infos = self._group.agree("DistributedIndex", error, sig)
        ds = [row[0] for row in infos]
        if len(set(ds)) > 1:
            raise ValueError(f"DistributedIndex: every rank's local index must have the same d, got {ds} by rank")
        if len({tuple(row) for row in infos}) > 1:
            raise ValueError("DistributedIndex: every rank's local index must have the same class and settings")
        self.local_index = local_index

    def _rows(self, x):
        try:
            xv, was_numpy = _rows(x, self.local_index.d)
            return xv, was_numpy, None
        except (TypeError, ValueError) as e:
            return None, isinstance(x, np.ndarray), str(e)

    # ---- collective operations ---------------------------------------------------------
    def train(self, x) -> None:
        """Collective. Trains on the rows every rank passes (any count, 0 included): they are gathered
        on rank 0, which trains its shard; every rank then takes rank 0's trained state (identical
        coarse centroids and codebooks). The shards must be empty."""
        xv, _, error = self._rows(x)
        if error is None and self.local_index.ntotal:
            error = f"train needs empty shards; this one holds {self.local_index.ntotal} vectors (reset() first)"
        counts = [c[0] for c in self._group.agree("train", error, [xv.shape[0] if xv is not None else 0])]
        need = getattr(self.local_index, "nlist", 1)
        if sum(counts) < need:
            raise ValueError(f"train: the ranks passed {sum(counts)} rows in all, fewer than nlist={need}")
        sample = self._group.gather_rows(xv, counts, to_all=False)
        payload, error = None, None
        if self.rank == 0:
            try:
                self.local_index.train(sample.to(self.local_index.device))
                payload = index_to_bytes(self.local_index)
            except (TypeError, ValueError, RuntimeError) as e:  # reported to every rank, not left hanging
                error = str(e)
        try:
            payload = self._group.broadcast_bytes(payload, error)
        except ValueError as e:
            raise ValueError(f"train: {e}") from None
        if self.rank != 0:
            trained = index_from_bytes(payload, device=self.local_index.device, source="rank 0's training")
            copy_training(trained, self.local_index)

    def add(self, x) -> None:
        """Collective. Every rank adds its own rows (any count); labels are global and successive: rank
        0's rows first, then rank 1's, ..., after the largest label handed out so far."""
        xv, _, error = self._rows(x)
        if error is None and not self.local_index.is_trained:
            error = "the local index must be trained before add (DistributedIndex.train)"
        infos = self._group.agree("add", error, [xv.shape[0] if xv is not None else 0, self.local_index.next_label])
        base = max(row[1] for row in infos)
        start = base + sum(row[0] for row in infos[: self.rank])
        if xv.shape[0]:
            self.local_index.add_with_ids(xv, torch.arange(start, start + xv.shape[0], dtype=torch.int64))

    def add_with_ids(self, x, ids) -> None:
        """Local (not collective): add to this rank's shard under the given global labels; keeping them
        unique across ranks is the caller's part."""
        self.local_index.add_with_ids(x, ids)

    def search(self, x, k, params: SearchParams | None = None):
        """Collective. Each rank passes its own queries (any count, 0 included) and gets the global
        top-k for them (numpy in, numpy out; tensors come back on their device). k and params must be
        the same on every rank. The queries of all ranks are gathered, each shard searches them all,
        and each rank receives and merges every shard's results for its own queries."""
        error, (q, was_numpy) = None, (None, isinstance(x, np.ndarray))
        try:
            k = Index._check_k(k)
            if params is not None and not isinstance(params, SearchParams):
                raise TypeError(f"params must be a SearchParams, got {type(params).__name__}")
            if not self.local_index.is_trained:
                raise ValueError("the index must be trained before search")
            q, was_numpy = _rows(x, self.local_index.d)
        except (TypeError, ValueError) as e:
            error, k = str(e), 0
        probe = (-1, -1) if params is None else (params.nprobe or -1, params.max_codes or -1)
        infos = self._group.agree("search", error, [q.shape[0] if q is not None else 0, k, *probe])
        if len({tuple(row[1:]) for row in infos}) > 1:
            raise ValueError(f"search: k and params.nprobe / max_codes must be the same on every rank, got "
                             f"{[tuple(row[1:]) for row in infos]} by rank")
        counts, mine = [row[0] for row in infos], q.shape[0]
        out_device = q.device
        if sum(counts) == 0:
            D = torch.empty(0, k, device=out_device)
            return _out(was_numpy, D, torch.empty(0, k, dtype=torch.int64, device=out_device))
        queries = self._group.gather_rows(q, counts, to_all=True)
        D, I = self.local_index.search(queries.to(self.local_index.device), k, params=params)
        # one exchange carries both: labels, then the distances' bits widened to int64
        packed = torch.cat([I, D.contiguous().view(torch.int32).to(torch.int64)], 1).to(self._group.device)
        got = torch.empty(self.world_size * mine, 2 * k, dtype=torch.int64, device=self._group.device)
        dist.all_to_all_single(got, packed, [mine] * self.world_size, counts, group=self.group)
        got = got.view(self.world_size, mine, 2 * k).transpose(0, 1).to(out_device)  # (mine, rank, 2k)
        Is = got[..., :k].reshape(mine, self.world_size * k)
        Ds = got[..., k:].to(torch.int32).view(torch.float32).reshape(mine, self.world_size * k)
        return _out(was_numpy, *merge_topk(Ds, Is, k, self.local_index.largest))

    def remove_ids(self, ids) -> int:
        """Collective. Every rank passes the labels to drop (or a bool mask over labels, or an
        IDSelector); returns the number removed over all ranks (the same on every rank)."""
        error = _check_ids(ids)
        self._group.agree("remove_ids", error)
        removed = torch.tensor([self.local_index.remove_ids(ids)], dtype=torch.int64, device=self._group.device)
        dist.all_reduce(removed, group=self.group)
        return int(removed.item())

    @property
    def ntotal(self) -> int:
        """Collective: vectors stored over all ranks."""
        n = torch.tensor([self.local_index.ntotal], dtype=torch.int64, device=self._group.device)
        dist.all_reduce(n, group=self.group)
        return int(n.item())

    def save(self, path) -> None:
        """Collective. ``path`` is a directory: each rank writes its shard (rank00000.tivf, ...), rank 0
        the manifest (JSON) once every shard is written."""
        path = Path(path)
        name = f"rank{self.rank:05d}.tivf"
        error = None
        try:
            write_index(self.local_index, path / name)
        except OSError as e:
            error = f"cannot write {path / name}: {e}"
        infos = self._group.agree("save", error, [self.local_index.ntotal])
        error = None
        if self.rank == 0:
            manifest = {"format": FORMAT, "version": 1, "world_size": self.world_size,
                        "shards": [{"file": f"rank{r:05d}.tivf", "ntotal": row[0]} for r, row in enumerate(infos)]}
            try:
                atomic_write_bytes(path / MANIFEST, json.dumps(manifest, indent=1).encode())
            except OSError as e:
                error = f"cannot write {path / MANIFEST}: {e}"
        self._group.agree("save", error)

    @classmethod
    def load(cls, path, group=None, device=None) -> "DistributedIndex":
        """Collective. Each rank reads its shard of a directory written by save() (a group of the same
        size). device: where the shard goes (default: the current CUDA device under NCCL, else CPU)."""
        g = _Group(group)
        if device is None and g.nccl:
            device = g.device
        path = Path(path)
        local, error = None, None
        try:
            manifest = parse_json((path / MANIFEST).read_bytes(), path / MANIFEST)  # CorruptFileError, not RecursionError
            if not isinstance(manifest, dict):
                raise ValueError(f"{path / MANIFEST} is not a JSON object")
            if manifest.get("format") != FORMAT or manifest.get("world_size") != g.size:
                raise ValueError(f"{path / MANIFEST} describes {manifest.get('world_size')!r} shards "
                                 f"(format {manifest.get('format')!r}); this group has {g.size} ranks")
            entry = manifest["shards"][g.rank]
            local = read_index(path / Path(entry["file"]).name, device=device)
            if local.ntotal != entry["ntotal"]:
                raise ValueError(f"{entry['file']} holds {local.ntotal} vectors, the manifest says {entry['ntotal']}")
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:  # json errors are ValueErrors
            error = str(e)
        g.agree("DistributedIndex.load", error)
        return cls(local, group)

    def __repr__(self) -> str:
        return (f"DistributedIndex(rank={self.rank}/{self.world_size}, local={self.local_index!r})")


def _check_ids(ids) -> str | None:
    """Why ids cannot be removed by (None when they can), before any rank changes anything."""
    if isinstance(ids, IDSelector):
        return None
    if isinstance(ids, (np.ndarray, torch.Tensor)):
        ok = ids.dtype == np.bool_ or np.issubdtype(ids.dtype, np.integer) if isinstance(ids, np.ndarray) else \
            (ids.dtype == torch.bool or not (ids.dtype.is_floating_point or ids.is_complex()))
        return None if ok else f"ids must be integer labels, a bool mask or an IDSelector, got dtype {ids.dtype}"
    try:
        arr = np.asarray(list(ids))
    except TypeError:
        return f"ids must be integer labels, a bool mask or an IDSelector, got {type(ids).__name__}"
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        return f"ids must be integer labels, got {arr.dtype}"
    return None
