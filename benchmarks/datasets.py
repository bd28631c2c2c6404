"""Benchmark datasets: generated or loaded once, written as .npy files under benchmarks/.cache/ with
exact ground truth, so that every library (the earlier torch-ivf in its subprocess too) reads the same
bytes.

Datasets
- ``clustered-<N>x<d>``: gaussian mixture, a few thousand centres with varied spreads and varied
  cluster sizes (seeded); queries are fresh draws from the same mixture.
- ``minilm``: real all-MiniLM-L6-v2 embeddings of man-page passages (float16, d = 384, L2-normalised)
  from ``manpages-minilm-*.npy`` in the data folder (find_minilm_shards: ``$BENCH_DATA_DIR`` first); a seeded random
  5,000 rows are the queries, the rest the base. Skipped with a message when the files are absent.
- ``gaussian-262144x128``: i.i.d. N(0, 1), the earlier torch-ivf's headline setup (nlist 512,
  nprobe 32, k 20, 20,480 training vectors).

Ground truth: exact search in torch (float32 GEMM on the best device) for the top 100 + margin, then
re-ranked in float64, so ties and rounding do not decide the reference.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import time
from dataclasses import dataclass

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CACHE = os.environ.get("BENCH_CACHE_DIR", os.path.join(HERE, ".cache"))
GT_K = 100


class DatasetUnavailable(RuntimeError):
    pass


@dataclass
class Dataset:
    name: str
    metric: str          # "l2" | "ip"
    paths: dict          # xb, xq, xt, xadd, gt_I, gt_D -> .npy paths
    meta: dict

    def load(self, key: str, mmap: bool = False) -> np.ndarray:
        return np.load(self.paths[key], mmap_mode="r" if mmap else None)

    @property
    def d(self) -> int:
        return int(self.meta["d"])

    @property
    def n(self) -> int:
        return int(self.meta["n"])

    @property
    def nq(self) -> int:
        return int(self.meta["nq"])

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "metric": self.metric, "paths": self.paths, "meta": self.meta})

    @staticmethod
    def from_json(s: str) -> "Dataset":
        o = json.loads(s)
        return Dataset(o["name"], o["metric"], o["paths"], o["meta"])


# --------------------------------------------------------------------------------------------- #
# generators
# --------------------------------------------------------------------------------------------- #
def _mixture(rng: np.random.Generator, n: int, centres: np.ndarray, spreads: np.ndarray,
             weights: np.ndarray, chunk: int = 131072) -> np.ndarray:
    k, d = centres.shape
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        lab = rng.choice(k, size=e - s, p=weights)
        noise = rng.standard_normal((e - s, d), dtype=np.float32)
        out[s:e] = centres[lab] + noise * spreads[lab, None]
    return out


def make_clustered(n: int, d: int, nq: int, *, n_centres: int = 3000, seed: int = 0):
    """Gaussian mixture: centres ~ N(0, 1); per-centre spread log-uniform in [0.15, 0.6] (so a few
    clusters overlap their neighbours and others are tight); Dirichlet(1) cluster weights."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_centres, d), dtype=np.float32)
    spreads = np.exp(rng.uniform(np.log(0.15), np.log(0.6), n_centres)).astype(np.float32)
    w = rng.dirichlet(np.ones(n_centres))
    xb = _mixture(rng, n, centres, spreads, w)
    xq = _mixture(rng, nq, centres, spreads, w)
    xadd = _mixture(rng, 3000, centres, spreads, w)
    return xb, xq, xadd


class TorchMixture:
    """make_clustered's law sampled with torch on ``device`` in chunks (seeded, reproducible; not the
    same draws as make_clustered): data sets that are generated where they are searched (10M-100M
    rows on a GPU) instead of being carried."""

    def __init__(self, d: int, seed: int, n_centres: int = 3000, device="cuda"):
        import torch

        g = torch.Generator(device=device).manual_seed(seed)
        self.d, self.g, self.device = d, g, device
        self.centres = torch.randn(n_centres, d, device=device, generator=g)
        self.spreads = torch.exp(torch.empty(n_centres, device=device).uniform_(np.log(0.15), np.log(0.6), generator=g))
        w = torch.distributions.Gamma(torch.ones(n_centres, device=device), 1.0).sample()  # Dirichlet(1)
        self.cum = torch.cumsum(w / w.sum(), 0)

    def sample(self, n: int, chunk: int = 1 << 22):
        import torch

        out = torch.empty(n, self.d, device=self.device)
        for a in range(0, n, chunk):
            m = min(chunk, n - a)
            u = torch.rand(m, device=self.device, generator=self.g)
            c = torch.searchsorted(self.cum, u).clamp_max(len(self.cum) - 1)
            out[a:a + m] = self.centres[c] + torch.randn(m, self.d, device=self.device, generator=self.g) * self.spreads[c, None]
        return out


def exact_top_torch(xb, q, k: int, chunk: int = 1 << 19):
    """Exact l2 top-k labels of tensors already on their device (float32 products, TF32 off), the
    base scanned in chunks: ground truth for TorchMixture data too large to copy to numpy."""
    import torch

    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    best_s = torch.full((q.shape[0], k), -float("inf"), device=q.device)
    best_i = torch.zeros((q.shape[0], k), dtype=torch.int64, device=q.device)
    try:
        for a in range(0, xb.shape[0], chunk):
            x = xb[a:a + chunk]
            s = 2 * q @ x.T - (x * x).sum(1)[None, :]
            v, i = s.topk(min(k, x.shape[0]), dim=1)
            cat_s, cat_i = torch.cat([best_s, v], 1), torch.cat([best_i, i + a], 1)
            best_s, at = cat_s.topk(k, dim=1)
            best_i = cat_i.gather(1, at)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return best_i


def make_gaussian(n: int, d: int, nq: int, *, seed: int = 1234):
    rng = np.random.default_rng(seed)
    xb = rng.standard_normal((n, d), dtype=np.float32)
    xq = rng.standard_normal((nq, d), dtype=np.float32)
    xadd = rng.standard_normal((3000, d), dtype=np.float32)
    return xb, xq, xadd


def find_minilm_shards(max_shards: int | None = None) -> list[str]:
    cands = []
    if os.environ.get("BENCH_DATA_DIR"):
        cands.append(os.environ["BENCH_DATA_DIR"])
    cands.append(os.path.join(REPO, ".data"))
    for c in cands:
        files = sorted(glob.glob(os.path.join(c, "manpages-minilm-*.npy")))
        if files:
            return files[:max_shards] if max_shards else files
    raise DatasetUnavailable(
        "MiniLM embeddings not found (looked for manpages-minilm-*.npy in $BENCH_DATA_DIR, "
        ".data): skipping the real-embedding dataset")


def make_minilm(nq: int = 5000, *, max_shards: int | None = None, seed: int = 0):
    files = find_minilm_shards(max_shards)
    x = np.concatenate([np.load(f) for f in files], 0)          # float16, file order
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    q_idx = np.sort(perm[:nq])
    b_idx = np.sort(perm[nq:])
    x = x.astype(np.float32)
    xq, xb = x[q_idx], x[b_idx]
    # vectors for the add-time measurement: base rows re-used (only their count matters)
    xadd = xb[np.random.default_rng(seed + 1).choice(xb.shape[0], 3000, replace=False)]
    return xb, xq, xadd, [os.path.basename(f) for f in files]


# --------------------------------------------------------------------------------------------- #
# ground truth
# --------------------------------------------------------------------------------------------- #
def exact_knn(xb: np.ndarray, xq: np.ndarray, k: int, metric: str, device: str | None = None):
    """Exact top-k: float32 GEMM on ``device`` for k + 16 candidates, re-ranked in float64."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kk = min(k + 16, xb.shape[0])
    B = torch.from_numpy(np.ascontiguousarray(xb)).to(device)
    bn = (B * B).sum(1)
    nq = xq.shape[0]
    I_out = np.empty((nq, k), dtype=np.int64)
    D_out = np.empty((nq, k), dtype=np.float32)
    # CPU: small chunks keep the score block in cache-friendly sizes; GPU: <= 2 GiB of scores
    cap = 256 if device == "cpu" else max(1, int(2**29 // max(1, xb.shape[0])))
    step = max(1, min(4096, cap))
    out = torch.empty((step, xb.shape[0]), dtype=torch.float32, device=device)
    xb64 = xb
    for s in range(0, nq, step):
        e = min(nq, s + step)
        Q = torch.from_numpy(np.ascontiguousarray(xq[s:e])).to(device)
        sc = out[: e - s]
        if metric == "l2":
            torch.addmm(bn[None, :], Q, B.T, beta=1.0, alpha=-2.0, out=sc)
            _, idx = torch.topk(sc, kk, dim=1, largest=False)
        else:
            torch.mm(Q, B.T, out=sc)
            _, idx = torch.topk(sc, kk, dim=1, largest=True)
        idx = idx.cpu().numpy()
        # float64 re-rank
        q64 = xq[s:e].astype(np.float64)
        cand = xb64[idx].astype(np.float64)                                  # (m, kk, d)
        if metric == "l2":
            dist = ((cand - q64[:, None, :]) ** 2).sum(-1)
            order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        else:
            dist = np.einsum("mkd,md->mk", cand, q64)
            order = np.argsort(-dist, axis=1, kind="stable")[:, :k]
        I_out[s:e] = np.take_along_axis(idx, order, 1)
        D_out[s:e] = np.take_along_axis(dist, order, 1)
    return D_out, I_out


# --------------------------------------------------------------------------------------------- #
# registry
# --------------------------------------------------------------------------------------------- #
def _save(name: str, arrays: dict, meta: dict, metric: str, gt_device: str | None) -> Dataset:
    os.makedirs(CACHE, exist_ok=True)
    paths = {}
    for key, arr in arrays.items():
        p = os.path.join(CACHE, f"{name}.{key}.npy")
        np.save(p, np.ascontiguousarray(arr))
        paths[key] = p
    t0 = time.perf_counter()
    D, I = exact_knn(arrays["xb"], arrays["xq"], min(GT_K, arrays["xb"].shape[0]), metric, gt_device)
    meta["gt_seconds"] = round(time.perf_counter() - t0, 2)
    for key, arr in (("gt_I", I), ("gt_D", D)):
        p = os.path.join(CACHE, f"{name}.{key}.npy")
        np.save(p, arr)
        paths[key] = p
    ds = Dataset(name, metric, paths, meta)
    with open(os.path.join(CACHE, f"{name}.json"), "w") as f:
        f.write(ds.to_json())
    return ds


def _cached(name: str, meta_key: dict) -> Dataset | None:
    p = os.path.join(CACHE, f"{name}.json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        ds = Dataset.from_json(f.read())
    if ds.meta.get("key") != meta_key or not all(os.path.exists(v) for v in ds.paths.values()):
        return None
    return ds


def get_dataset(spec: dict, *, log=print, gt_device: str | None = None) -> Dataset:
    """spec: {"kind": "clustered"|"gaussian"|"minilm", "n", "d", "nq", "train_n", "seed", ...}"""
    kind = spec["kind"]
    key = dict(spec)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    if kind == "clustered":
        name = f"clustered-{spec['n']}x{spec['d']}-{digest}"
    elif kind == "gaussian":
        name = f"gaussian-{spec['n']}x{spec['d']}-{digest}"
    elif kind == "minilm":
        name = f"minilm-{digest}"
    else:
        raise ValueError(kind)
    ds = _cached(name, key)
    if ds is not None:
        return ds
    t0 = time.perf_counter()
    meta = {"key": key, "kind": kind}
    seed = int(spec.get("seed", 0))
    if kind == "clustered":
        xb, xq, xadd = make_clustered(spec["n"], spec["d"], spec["nq"],
                                      n_centres=spec.get("n_centres", 3000), seed=seed)
        metric = "l2"
    elif kind == "gaussian":
        xb, xq, xadd = make_gaussian(spec["n"], spec["d"], spec["nq"], seed=seed or 1234)
        metric = "l2"
    else:
        xb, xq, xadd, files = make_minilm(spec.get("nq", 5000), max_shards=spec.get("max_shards"),
                                          seed=seed)
        meta["files"] = files
        metric = spec.get("metric", "ip")
    train_n = min(int(spec.get("train_n", xb.shape[0])), xb.shape[0])
    t_idx = np.sort(np.random.default_rng(seed + 7).choice(xb.shape[0], train_n, replace=False))
    xt = xb[t_idx]
    meta.update(n=int(xb.shape[0]), d=int(xb.shape[1]), nq=int(xq.shape[0]), train_n=int(train_n),
                gen_seconds=round(time.perf_counter() - t0, 2))
    log(f"dataset {name}: generated in {meta['gen_seconds']} s; computing exact ground truth ...")
    ds = _save(name, {"xb": xb, "xq": xq, "xt": xt, "xadd": xadd}, meta, metric, gt_device)
    log(f"dataset {name}: ground truth in {ds.meta['gt_seconds']} s")
    return ds
