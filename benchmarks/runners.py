"""Backends run in this process: this project, faiss-cpu, exact torch brute force.
(The earlier torch-ivf runs in a subprocess: see ``old_worker.py``.)"""
from __future__ import annotations

import os
import time

import numpy as np
import torch

from .common import tensor_bytes, timed
from .sweep import Backend

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _sync_fn(device: str):
    if device.startswith("cuda"):
        return torch.cuda.synchronize
    return lambda: None


# --------------------------------------------------------------------------------------------- #
# this project
# --------------------------------------------------------------------------------------------- #
def ours_available() -> tuple[bool, str]:
    try:
        import torch_ivf
        from torch_ivf import IndexIVFFlat, SearchParams  # noqa: F401
    except Exception as e:
        return False, f"this project's torch_ivf does not import IndexIVFFlat yet ({e!r})"
    return True, getattr(torch_ivf, "__version__", "dev")


class OursIVF(Backend):
    library = "torch-ivf"
    MODES = ("auto", "grouped", "matrix")

    def __init__(self, device: str, dtypes=("float32", "float16"), modes=MODES, sweep_modes=("auto",)):
        super().__init__(device)
        import torch_ivf

        self.version = getattr(torch_ivf, "__version__", "dev")
        try:
            import subprocess

            rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout
            self.version += f"+g{rev.strip()}" if rev.strip() else ""
        except Exception:
            pass
        self._dtypes = list(dtypes)
        self._modes = list(modes)
        self._sweep_modes = list(sweep_modes)
        self.idx = None
        self.sync = _sync_fn(device)

    def dtypes(self):
        return self._dtypes

    def variants(self, dtype):
        return [{"mode": m, "dtype": dtype} for m in self._modes]

    def sweep_variants(self, dtype):
        return [{"mode": m, "dtype": dtype} for m in self._sweep_modes]

    def threads(self):
        return torch.get_num_threads() if self.device == "cpu" else None

    def prepare_queries(self, xq):
        return torch.from_numpy(np.ascontiguousarray(xq)).to(self.device)

    def build(self, ds, xt, xb, nlist, dtype):
        from torch_ivf import IndexIVFFlat

        xt_t = torch.from_numpy(np.ascontiguousarray(xt)).to(self.device)
        xb_t = torch.from_numpy(np.ascontiguousarray(xb)).to(self.device)
        self.idx = IndexIVFFlat(ds.d, nlist, metric=ds.metric, device=self.device,
                                dtype=TORCH_DTYPES[dtype])
        train_s, _ = timed(lambda: self.idx.train(xt_t), self.sync)
        add_s, _ = timed(lambda: self.idx.add(xb_t), self.sync)
        del xt_t, xb_t
        nbytes = tensor_bytes(self.idx)
        item = torch.finfo(TORCH_DTYPES[dtype]).bits // 8
        return {"train_s": round(train_s, 4), "add_s": round(add_s, 4),
                "bytes_per_vector": round(nbytes / max(1, self.idx.ntotal), 2),
                "raw_bytes_per_vector": ds.d * item, "ntotal": int(self.idx.ntotal)}

    def searcher(self, variant, k, nprobe):
        from torch_ivf import SearchParams

        idx = self.idx
        mode = variant["mode"]
        params = SearchParams(nprobe=nprobe)

        def call(q):
            idx.search_mode = mode        # set per call: the variants' calls are interleaved
            return idx.search(q, k, params=params)[1]

        return call

    def extra(self, variant, nq, nprobe):
        """Which path ``auto`` takes for this batch (the engine's own rule, asked directly)."""
        if variant["mode"] != "auto" or self.idx is None:
            return {}
        pick = getattr(self.idx, "_pick_mode", None)
        if pick is None:
            return {}
        prev = self.idx.search_mode
        try:
            self.idx.search_mode = "auto"      # _pick_mode answers the forced mode otherwise
            return {"auto_chose": pick(nq, min(nprobe, self.idx.nlist))}
        except Exception as e:
            return {"auto_chose": f"? ({e!r})"}
        finally:
            self.idx.search_mode = prev

    def add(self, x):
        self.idx.add(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))

    def free(self):
        self.idx = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------- #
# faiss-cpu
# --------------------------------------------------------------------------------------------- #
def faiss_available() -> tuple[bool, str]:
    try:
        import faiss

        return True, faiss.__version__
    except Exception as e:
        return False, f"faiss not importable ({e!r}): skipping faiss-cpu"


class FaissIVF(Backend):
    library = "faiss-cpu"

    def __init__(self, device: str = "cpu", threads: int | None = None):
        super().__init__("cpu")
        import faiss

        self.faiss = faiss
        self.version = faiss.__version__
        self.n_threads = threads or os.cpu_count()
        faiss.omp_set_num_threads(self.n_threads)
        self.idx = None

    def variants(self, dtype):
        return [{"mode": "ivfflat", "dtype": dtype}]

    def threads(self):
        return self.faiss.omp_get_max_threads()

    def prepare_queries(self, xq):
        return np.ascontiguousarray(xq, dtype=np.float32)

    def build(self, ds, xt, xb, nlist, dtype):
        faiss = self.faiss
        metric = faiss.METRIC_L2 if ds.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        quant = faiss.IndexFlatL2(ds.d) if ds.metric == "l2" else faiss.IndexFlatIP(ds.d)
        self.idx = faiss.IndexIVFFlat(quant, ds.d, nlist, metric)
        self._quant = quant           # keep the quantizer alive
        xt = np.ascontiguousarray(xt, dtype=np.float32)
        xb = np.ascontiguousarray(xb, dtype=np.float32)
        train_s, _ = timed(lambda: self.idx.train(xt))
        add_s, _ = timed(lambda: self.idx.add(xb))
        nbytes = self.idx.ntotal * (self.idx.code_size + 8) + nlist * ds.d * 4
        return {"train_s": round(train_s, 4), "add_s": round(add_s, 4),
                "bytes_per_vector": round(nbytes / max(1, self.idx.ntotal), 2),
                "raw_bytes_per_vector": ds.d * 4, "ntotal": int(self.idx.ntotal)}

    def searcher(self, variant, k, nprobe):
        idx = self.idx

        def call(q):
            idx.nprobe = nprobe
            return idx.search(q, k)[1]

        return call

    def add(self, x):
        self.idx.add(np.ascontiguousarray(x, dtype=np.float32))

    def free(self):
        self.idx = None


# --------------------------------------------------------------------------------------------- #
# exact torch brute force
# --------------------------------------------------------------------------------------------- #
class BruteForce(Backend):
    library = "torch-exact"
    ivf = False

    def __init__(self, device: str, dtypes=("float32", "float16")):
        super().__init__(device)
        self.version = torch.__version__
        self._dtypes = list(dtypes)
        self.sync = _sync_fn(device)
        self.B = None

    def dtypes(self):
        return self._dtypes

    def variants(self, dtype):
        return [{"mode": "exact", "dtype": dtype}]

    def threads(self):
        return torch.get_num_threads() if self.device == "cpu" else None

    def prepare_queries(self, xq):
        return torch.from_numpy(np.ascontiguousarray(xq)).to(self.device)

    def build(self, ds, xt, xb, nlist, dtype):
        self.metric = ds.metric
        self.dt = TORCH_DTYPES[dtype]

        def _build():
            self.B = torch.from_numpy(np.ascontiguousarray(xb)).to(self.device).to(self.dt)
            self.bn = (self.B.float() ** 2).sum(1).to(self.dt)

        add_s, _ = timed(_build, self.sync)
        n = self.B.shape[0]
        if self.device == "cpu":
            self.step = 256
        else:
            self.step = max(1, min(8192, int(2**29 // n)))      # <= 1 GiB of float16 scores a chunk
        item = self.B.element_size()
        return {"train_s": 0.0, "add_s": round(add_s, 4),
                "bytes_per_vector": round((self.B.numel() * item + self.bn.numel() * item) / n, 2),
                "raw_bytes_per_vector": ds.d * item, "ntotal": int(n)}

    def searcher(self, variant, k, nprobe):
        B, bn, step, l2, dt = self.B, self.bn, self.step, self.metric == "l2", self.dt

        def call(q):
            q = q.to(dt)
            nq = q.shape[0]
            if nq <= step:
                sc = torch.addmm(bn[None, :], q, B.T, beta=1.0, alpha=-2.0) if l2 else q @ B.T
                return torch.topk(sc, k, dim=1, largest=not l2)[1]
            out = torch.empty((nq, k), dtype=torch.long, device=q.device)
            buf = torch.empty((step, B.shape[0]), dtype=dt, device=q.device)
            for s in range(0, nq, step):
                e = min(nq, s + step)
                sc = buf[: e - s]
                if l2:
                    torch.addmm(bn[None, :], q[s:e], B.T, beta=1.0, alpha=-2.0, out=sc)
                else:
                    torch.mm(q[s:e], B.T, out=sc)
                out[s:e] = torch.topk(sc, k, dim=1, largest=not l2)[1]
            return out

        return call

    def add(self, x):
        x = torch.from_numpy(np.ascontiguousarray(x)).to(self.device).to(self.dt)
        self.B = torch.cat([self.B, x], 0)
        self.bn = torch.cat([self.bn, (x.float() ** 2).sum(1).to(self.dt)], 0)

    def free(self):
        self.B = self.bn = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
