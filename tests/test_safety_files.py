"""Fuzzing what torch-ivf reads from disk: index files of every type and store directories.

Byte flips (every header byte, sampled data bytes), truncations, swaps between saves, and crafted
files whose checksums are recomputed (so the cross-checks, not the checksums, must refuse them).
Every attempt ends in one of: refused cleanly (CorruptFileError / ValueError), loaded identical
(the damage hit bytes that carry nothing), or loaded WRONG, which must never happen. Any other
exception fails the test. Counts are printed (pytest -s).
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import clustered
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import torch_ivf as ti
from torch_ivf import faiss as tf
from torch_ivf import io
from torch_ivf.collection import Collection, persist
from torch_ivf.integrity import sha256

D = 8


def _build() -> dict:
    x = clustered(160, D, centres=8, seed=3)
    kinds = {
        "Flat": lambda: ti.IndexFlat(D),
        "IVFFlat": lambda: ti.IndexIVFFlat(D, 4, nprobe=2),
        "IVFPQ": lambda: ti.IndexIVFPQ(D, 4, 4, nbits=4),
        "IVFPQPanorama": lambda: ti.IndexIVFPQPanorama(D, 4, 4, nbits=4, n_levels=2),
        "IVFFlatPanorama": lambda: ti.IndexIVFFlatPanorama(D, 4, 2, transform=True),
        "IVFSQ": lambda: ti.IndexIVFScalarQuantizer(D, 4),
        "SQ4flat": lambda: ti.IndexScalarQuantizer(D, "QT_4bit"),
        "SQfp16flat": lambda: ti.IndexScalarQuantizer(D, "QT_fp16"),
        "Refine": lambda: ti.IndexRefine(ti.IndexIVFPQ(D, 4, 4, nbits=4)),
        "IDMap2": lambda: tf.IndexIDMap2(tf.IndexFlatL2(D)),
        "faiss.IndexPQ": lambda: tf.IndexPQ(D, 4, 4),
    }
    out = {}
    for name, make in kinds.items():
        index = make()
        index.train(x)
        if name == "IDMap2":
            index.add_with_ids(x[:40], np.arange(40) * 3 + 5)
        else:
            index.add(x[:40])
            if name != "faiss.IndexPQ":  # Faiss's flat numbering: no remove_ids
                index.remove_ids(np.array([3, 7]))
        out[name] = io.index_to_bytes(index)
    return out


@pytest.fixture(scope="module")
def files():
    return _build()


_QUERIES = clustered(3, D, centres=8, seed=4)


def _state(index) -> tuple:
    tensors = {k: v.detach().cpu() for k, v in index.state_tensors().items()}
    return type(index).__name__, json.dumps(index.config(), sort_keys=True), index.next_label, tensors


def _same(a: tuple, b: tuple) -> bool:
    return a[:3] == b[:3] and a[3].keys() == b[3].keys() and all(
        a[3][k].dtype == b[3][k].dtype and a[3][k].shape == b[3][k].shape and torch.equal(a[3][k], b[3][k])
        for k in a[3])


def _sound(index) -> bool:
    """A loaded index keeps the invariants every later call relies on, and searches cleanly."""
    labels = index.labels().cpu() if hasattr(index, "labels") else None
    if labels is not None and labels.numel():
        if int(labels.min()) < 0 or torch.unique(labels).numel() != labels.numel() or int(labels.max()) >= index.next_label:
            return False
    try:
        Dd, Ii = index.search(_QUERIES, 5)
    except Exception as e:  # a loaded index that cannot search is a wrong load
        print(f"\n  search after load raised {type(e).__name__}: {e}", end="")
        return False
    Dd, Ii = np.asarray(Dd), np.asarray(Ii)
    found = Ii >= 0
    return bool(np.isfinite(Dd[found]).all()) and (labels is None or set(Ii[found].tolist()) <= set(labels.tolist()))


class Counts(dict):
    def __init__(self, what: str):
        super().__init__(tried=0, refused=0, identical=0, wrong=0)
        self.what = what

    def add(self, outcome: str) -> str:
        self["tried"] += 1
        self[outcome] += 1
        return outcome

    def report(self) -> None:
        print(f"\n{self.what}: {dict(self)}")
        assert self["wrong"] == 0
        assert self["refused"] + self["identical"] == self["tried"]


def _load_outcome(payload: bytes, good: tuple, sound_ok: bool = False) -> str:
    """'refused', 'identical', or 'wrong' (loaded something else). sound_ok: a crafted file that loads
    a different but consistent state (e.g. another nprobe with a recomputed checksum) counts as
    identical-in-kind: the file says so, and nothing breaks."""
    try:
        index = io.index_from_bytes(payload, source="fuzz")
    except ValueError as e:  # CorruptFileError is one
        assert "fuzz" in str(e) or isinstance(e, ti.CorruptFileError), f"refusal without the file's name: {e}"
        return "refused"
    if _same(_state(index), good):
        return "identical"
    return "identical" if sound_ok and _sound(index) else "wrong"


def _parts(payload: bytes):
    meta, layout, start = io._header(payload, "t")
    return meta, json.loads(meta["manifest"]), st_load(payload), start


# ---- byte flips, truncations, swaps (checksums must catch these) ---------------------------------
def test_index_byte_flips_every_header_byte_and_sampled_data_bytes(files):
    rng = np.random.default_rng(11)
    total = Counts("index files, byte flips")
    for name, payload in files.items():
        good = _state(io.index_from_bytes(payload))
        _, _, _, start = _parts(payload)
        counts = Counts(f"  {name}")
        offsets = list(range(start)) + sorted(rng.choice(np.arange(start, len(payload)), 48, replace=False).tolist())
        for off in offsets:
            bad = bytearray(payload)
            bad[off] ^= 1 << int(rng.integers(0, 8))
            counts.add(_load_outcome(bytes(bad), good))
        for k in counts:
            total[k] += counts[k]
        print(f"\n  {name}: header {start} bytes, file {len(payload)} bytes: {dict(counts)}", end="")
    total.report()


def test_index_truncations_and_appended_bytes(files):
    total = Counts("index files, truncations/extensions")
    for name, payload in files.items():
        good = _state(io.index_from_bytes(payload))
        n = len(payload)
        cuts = sorted(set(range(0, 24)) | set(np.linspace(24, n - 1, 40).astype(int).tolist()) | {n - 1})
        for cut in cuts:
            total.add(_load_outcome(payload[:cut], good))
        for tail in (b"\0", b" " * 8, b"x" * 100):
            total.add(_load_outcome(payload + tail, good))
    total.report()


def test_index_swaps_between_two_saves(files):
    """Another save's data under this header, and two same-sized tensors' bytes swapped in place."""
    other = _build_other(files)
    total = Counts("index files, swaps between saves")
    for name, payload in files.items():
        good = _state(io.index_from_bytes(payload))
        _, _, _, start = _parts(payload)
        alt = other[name]
        _, _, _, alt_start = _parts(alt)
        if len(alt) - alt_start == len(payload) - start:
            total.add(_load_outcome(payload[:start] + alt[alt_start:], good))
        total.add(_load_outcome(alt[:alt_start] + payload[start:], good))
        meta, layout, start = io._header(payload, "t")
        spans = sorted(layout.values(), key=lambda e: e[2])
        for a in range(len(spans)):
            for b in range(a + 1, len(spans)):
                (a0, a1), (b0, b1) = spans[a][2], spans[b][2]
                if a1 - a0 == b1 - b0 and a1 > a0 and payload[start + a0:start + a1] != payload[start + b0:start + b1]:
                    bad = bytearray(payload)
                    bad[start + a0:start + a1], bad[start + b0:start + b1] = payload[start + b0:start + b1], payload[start + a0:start + a1]
                    total.add(_load_outcome(bytes(bad), good))
    total.report()


def _build_other(files: dict) -> dict:
    """Each index of files with one vector removed and another added: same sizes, other contents."""
    x = clustered(160, D, centres=8, seed=3)
    out = {}
    for name, payload in files.items():
        index = io.index_from_bytes(payload)
        if name == "IDMap2":
            index.remove_ids(np.array([5]))
            index.add_with_ids(x[41:42], np.array([1000]))
        else:
            if name != "faiss.IndexPQ":
                index.remove_ids(np.array([0]))
            index.add(x[41:42])
        out[name] = io.index_to_bytes(index)
    return out


# ---- crafted files: checksums recomputed, the cross-checks must refuse ------------------------------
def _resum(manifest: dict, tensors: dict) -> None:
    """The manifest's per-tensor entries, recomputed as a writer would (a forger's first step)."""
    manifest["tensors"] = {k: {"dtype": io._DTYPES[v.dtype], "shape": list(v.shape),
                               "sha256": sha256(io._tensor_bytes(v.contiguous()))} for k, v in tensors.items()}


def _forge(meta: dict, manifest, tensors: dict, resum: bool = False) -> bytes:
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    if resum:
        _resum(manifest, tensors)
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    meta = {**meta, "manifest": text, "manifest_sha256": sha256(text.encode())}
    return st_save(tensors, metadata=meta)


def _deep(n: int):
    v = 0
    for _ in range(n):
        v = [v]
    return v


def _cfg(**kv):
    """Set keys in the innermost config (the one that has them, else the top one)."""
    def f(m, t):
        cfg = m["config"]
        for nest in ("base_config", "sub_config"):
            if isinstance(cfg.get(nest), dict) and next(iter(kv)) not in cfg:
                cfg = cfg[nest]
        cfg.update(kv)
    return f


def _top(**kv):
    return lambda m, t: m.update(kv)


def _drop(key):
    return lambda m, t: m.pop(key)


def _tensor(suffix, fn):
    """Apply fn to every tensor whose name ends with suffix (returns False when there is none)."""
    def f(m, t):
        hit = [k for k in t if k.endswith(suffix)]
        for k in hit:
            t[k] = fn(t[k].clone())
        return bool(hit)
    return f


def _set(t, idx, value):
    t.view(-1)[idx] = value
    return t


_MANIFEST_CRAFTS = {
    "no class": _drop("class"), "no config": _drop("config"), "no next_label": _drop("next_label"),
    "no tensors": _drop("tensors"), "class int": _top(**{"class": 5}), "class unknown": _top(**{"class": "os.system"}),
    "class base": _top(**{"class": "Index"}), "config list": _top(config=[1]), "config null": _top(config=None),
    "config extra key": _cfg(evil=1), "config deep": _cfg(evil=_deep(200)),
    "next_label -1": _top(next_label=-1), "next_label 0": _top(next_label=0), "next_label str": _top(next_label="50"),
    "next_label float": _top(next_label=50.0), "next_label bool": _top(next_label=True),
    "next_label 2**64": _top(next_label=2 ** 64), "next_label 2**70": _top(next_label=2 ** 70),
    "d str": _cfg(d="8"), "d -1": _cfg(d=-1), "d 0": _cfg(d=0), "d 16": _cfg(d=16), "d 10**8": _cfg(d=10 ** 8),
    "d 10**30": _cfg(d=10 ** 30), "d float": _cfg(d=8.0), "d bool": _cfg(d=True),
    "nlist 10**8": _cfg(nlist=10 ** 8), "nlist 5": _cfg(nlist=5), "nlist -1": _cfg(nlist=-1), "nlist 0": _cfg(nlist=0),
    "nprobe -1": _cfg(nprobe=-1), "nprobe 10**12": _cfg(nprobe=10 ** 12), "nprobe str": _cfg(nprobe="a"),
    "metric unknown": _cfg(metric="foo"), "metric int": _cfg(metric=7), "dtype complex": _cfg(dtype="complex64"),
    "dtype int8": _cfg(dtype="int8"), "M 10**8": _cfg(M=10 ** 8), "M 3": _cfg(M=3), "M 8": _cfg(M=8),
    "nbits 100": _cfg(nbits=100), "nbits 0": _cfg(nbits=0), "nbits 8": _cfg(nbits=8),
    "n_levels 10**8": _cfg(n_levels=10 ** 8), "n_levels 3": _cfg(n_levels=3),
    "qtype 99": _cfg(qtype=99), "qtype -1": _cfg(qtype=-1), "qtype 4bit->8bit": _cfg(qtype=0),
    "k_factor -1": _cfg(k_factor=-1), "k_factor 1e308": _cfg(k_factor=1e308), "seed 10**40": _cfg(seed=10 ** 40),
    "niter 10**30": _cfg(niter=10 ** 30), "search_mode evil": _cfg(search_mode="evil"), "max_codes -1": _cfg(max_codes=-1),
    "refine_dtype int64": _cfg(refine_dtype="int64"), "refine_device meta": _cfg(refine_device="meta"),
    "refine_device cuda:99": _cfg(refine_device="cuda:99"), "base_class unknown": _cfg(base_class="Nope"),
    "sub_class unknown": _cfg(sub_class="Nope"), "sub_class self": _cfg(sub_class="IndexIDMap2"),
    "tensor entry removed": lambda m, t: m["tensors"].pop(next(iter(m["tensors"]))),
    "tensor sha removed": lambda m, t: next(iter(m["tensors"].values())).pop("sha256"),
    "tensor sha int": lambda m, t: next(iter(m["tensors"].values())).update(sha256=5),
    "tensor dtype mismatch": lambda m, t: next(iter(m["tensors"].values())).update(dtype="I32"),
    "tensor shape mismatch": lambda m, t: next(iter(m["tensors"].values())).update(shape=[1, 2, 3]),
    "tensor extra entry": lambda m, t: m["tensors"].update(ghost={"dtype": "F32", "shape": [0], "sha256": sha256(b"")}),
    "tensors list": _top(tensors=[]), "tensors deep": _top(tensors=_deep(500)),
}
_RAW_MANIFESTS = {"text [ x 100000": "[" * 100000, "NaN": "NaN", "empty": "", "null": "null", "list": "[]",
                  "deep dict": '{"a":' * 5000 + "1" + "}" * 5000, "huge int": "1" * 5000}
_META_CRAFTS = {"format other": {"format": "other"}, "version 4": {"version": "4"}, "version 0": {"version": "0"},
                "version missing": {"version": None}, "manifest_sha256 of another manifest": {"manifest_sha256": sha256(b"{}")}}


def _neg_size(t):
    t[0], t[1] = -1, t[1] + t[0] + 1
    return t


_TENSOR_CRAFTS = {
    "duplicate label": _tensor("invlists.labels", lambda t: _set(t, 1, int(t[0]))),
    "negative label": _tensor("invlists.labels", lambda t: _set(t, 0, -1)),
    "labels int32": _tensor("invlists.labels", lambda t: t.to(torch.int32)),
    "labels 2-d": _tensor("invlists.labels", lambda t: t.reshape(1, -1)),
    "label above next_label": _tensor("invlists.labels", lambda t: _set(t, 0, 10 ** 9)),
    "negative list size": _tensor("invlists.sizes", _neg_size),
    "sizes off by one": _tensor("invlists.sizes", lambda t: _set(t, 0, int(t[0]) + 1)),
    "sizes wrap int64": _tensor("invlists.sizes", lambda t: torch.full_like(t, 1 << 62) if t.numel() == 4 else _set(t, 0, -(1 << 63))),
    "sizes float": _tensor("invlists.sizes", lambda t: t.double()),
    "sizes one longer": _tensor("invlists.sizes", lambda t: torch.cat([t, torch.zeros(1, dtype=t.dtype)])),
    "NaN centroid": _tensor("centroids", lambda t: _set(t, 0, float("nan"))),
    "Inf codebook": _tensor("pq_centroids", lambda t: _set(t, 3, float("inf"))),
    "NaN vector": _tensor("invlists.vectors", lambda t: _set(t, 2, float("nan"))),
    "Inf bias": _tensor("invlists.bias", lambda t: _set(t, 0, float("inf"))),
    "NaN tails": _tensor("invlists.tails", lambda t: _set(t, 0, float("nan"))),
    "NaN sq ranges": _tensor("sq_trained", lambda t: _set(t, 0, float("nan"))),
    "NaN panorama matrix": _tensor("panorama_matrix", lambda t: _set(t, 0, float("nan"))),
    "PQ code >= 2**nbits": _tensor("invlists.codes", lambda t: _set(t, 0, 255)),
    "fp16 code NaN": _tensor("invlists.codes", lambda t: _set(_set(t, 0, 0x00), 1, 0x7E)),
    "centroids one row short": _tensor("centroids", lambda t: t[:-1]),
    "centroids emptied": _tensor("centroids", lambda t: t[:0]),
    "codebook emptied": _tensor("pq_centroids", lambda t: t.reshape(-1)[:0]),
    "codebook reshaped": _tensor("pq_centroids", lambda t: t.reshape(t.shape[1], t.shape[0], -1)),
    "sq ranges emptied": _tensor("sq_trained", lambda t: t[:0]),
    "vectors row short": _tensor("invlists.vectors", lambda t: t[:-1]),
    "vectors wrong dim": _tensor("invlists.vectors", lambda t: t[:, :-1]),
    "codes dtype int64": _tensor("invlists.codes", lambda t: t.long()),
    "id_order foreign id": _tensor("id_order", lambda t: _set(t, 0, 10 ** 6)),
    "id_order short": _tensor("id_order", lambda t: t[:-1]),
    "next_labels below labels": _tensor("next_labels", lambda t: torch.zeros_like(t)),
    "next_labels negative": _tensor("next_labels", lambda t: torch.full_like(t, -5)),
    "sub_next_label below": _tensor("sub_next_label", lambda t: torch.zeros_like(t)),
    "refine label differs": _tensor("refine.invlists.labels", lambda t: _set(t, 0, int(t.max()) + 1)),
    "tensor removed": lambda m, t: bool(t.pop(next(iter(sorted(t))))) or True,
    "unknown tensor": lambda m, t: bool(t.update(ghost=torch.zeros(3))) or True,
}


def test_index_crafted_manifests_and_states_are_refused(files):
    """Each craft on each index type, with the manifest checksum (and per-tensor entries) recomputed."""
    counts = Counts("index files, crafted manifests/states (checksums recomputed)")
    per_craft: dict = {}
    for name, payload in files.items():
        good = _state(io.index_from_bytes(payload))
        meta0, manifest0, tensors0, _ = _parts(payload)
        meta0 = {k: v for k, v in meta0.items() if k not in ("manifest", "manifest_sha256")}
        attempts = []
        for label, craft in {**_MANIFEST_CRAFTS, **_TENSOR_CRAFTS}.items():
            manifest, tensors = json.loads(json.dumps(manifest0)), dict(tensors0)
            if label in _MANIFEST_CRAFTS:  # the tensors are unchanged: their entries stay right
                _resum(manifest, tensors)
            try:
                applied = craft(manifest, tensors)
            except (KeyError, AttributeError, StopIteration, IndexError, RuntimeError):
                continue  # this index type has nothing the craft could change
            if applied is False:
                continue
            if label in _TENSOR_CRAFTS:
                _resum(manifest, tensors)
            attempts.append((label, label in _MANIFEST_CRAFTS and not label.startswith("tensor"), _forge(meta0, manifest, tensors)))
        for label, text in _RAW_MANIFESTS.items():
            attempts.append((label, False, _forge(meta0, text, tensors0)))
        text = json.dumps(manifest0)
        for label, change in _META_CRAFTS.items():
            meta = {**meta0, "manifest": text, "manifest_sha256": sha256(text.encode()), **change}
            attempts.append((label, False, st_save(dict(tensors0), metadata={k: v for k, v in meta.items() if v is not None})))
        for label, sound_ok, forged in attempts:
            outcome = counts.add(_load_outcome(forged, good, sound_ok=sound_ok))
            per_craft.setdefault(label, set()).add(outcome)
            if outcome == "wrong":
                print(f"\n  WRONG: {name} / {label}")
    loaded = sorted(k for k, v in per_craft.items() if v != {"refused"})
    print(f"\n  {len(per_craft)} crafts; loaded (consistent, as the file says) for some type: {loaded}")
    counts.report()


def test_flipped_nprobe_or_next_label_without_a_new_checksum_is_refused(files):
    payload = files["IVFFlat"]
    meta, manifest, tensors, _ = _parts(payload)
    for key, value in (("nprobe", 3), ("next_label", 1)):
        m = json.loads(meta["manifest"])
        (m["config"] if key == "nprobe" else m)[key] = value
        forged = st_save(dict(tensors), metadata={**meta, "manifest": json.dumps(m)})
        with pytest.raises(ti.CorruptFileError, match="fuzz: manifest fails its checksum"):
            io.index_from_bytes(forged, source="fuzz")
    # checksums recomputed: next_label below the largest label is still refused
    m = json.loads(meta["manifest"])
    m["next_label"] = 1
    with pytest.raises(ti.CorruptFileError, match="next_label 1 is not above the largest label"):
        io.index_from_bytes(_forge({"format": io.FORMAT, "version": "3"}, m, dict(tensors), resum=True), source="fuzz")
    # without its checksum entry, a tensor is refused, not loaded unchecked
    m = json.loads(meta["manifest"])
    del m["tensors"]["invlists.labels"]
    with pytest.raises(ti.CorruptFileError, match="checksums cover"):
        io.index_from_bytes(_forge({"format": io.FORMAT, "version": "3"}, m, dict(tensors)), source="fuzz")


# ---- bounded memory before validation --------------------------------------------------------------
_HOSTILE = textwrap.dedent("""
    import json, resource, sys
    import torch
    from safetensors.torch import load as st_load, save as st_save
    import torch_ivf as ti
    from torch_ivf import io
    from torch_ivf.integrity import sha256

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    small = ti.IndexIVFFlat(4, 4)
    good = io.index_to_bytes(small)
    io.index_from_bytes(good)  # warm up: every code path once
    meta, layout, _ = io._header(good, "t")
    tensors = st_load(good)
    base = peak_mb()
    crafts = [("nlist", 10 ** 8), ("d", 10 ** 8), ("nlist", 2 ** 40), ("d", 10 ** 9)]
    results = []
    for key, value in crafts:
        m = json.loads(meta["manifest"]); m["config"][key] = value
        text = json.dumps(m)
        payload = st_save(tensors, metadata={**meta, "manifest": text, "manifest_sha256": sha256(text.encode())})
        try:
            io.index_from_bytes(payload, source="hostile")
            results.append((key, value, len(payload), "LOADED"))
        except ValueError as e:
            results.append((key, value, len(payload), str(e)[:90]))
    # a header claiming a 10**8-row sizes tensor in a file of a few hundred bytes
    h = json.dumps({"__metadata__": meta, "invlists.sizes": {"dtype": "I64", "shape": [10 ** 8], "data_offsets": [0, 8 * 10 ** 8]}}).encode()
    payload = len(h).to_bytes(8, "little") + h + b"\\0" * 8
    try:
        io.index_from_bytes(payload, source="hostile"); results.append(("shape", 10 ** 8, len(payload), "LOADED"))
    except ValueError as e:
        results.append(("shape", 10 ** 8, len(payload), str(e)[:90]))
    print(json.dumps({"grew_mb": peak_mb() - base, "results": results}))
""")


@pytest.mark.skipif(os.name == "nt", reason="resource.getrusage")
def test_hostile_sizes_are_refused_before_allocating(tmp_path):
    """A ~1 KB file claiming nlist=10**8 (2.3 GB of list bookkeeping) is refused with no allocation."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _HOSTILE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    for key, value, size, outcome in report["results"]:
        print(f"\n  {key}={value} in a {size}-byte file: {outcome}", end="")
        assert outcome != "LOADED" and "hostile" in outcome
        assert size < 2048
    print(f"\n  peak RSS grew {report['grew_mb']:.1f} MB over all hostile loads")
    assert report["grew_mb"] < 32


def test_files_of_earlier_format_versions_still_load_with_the_same_cross_checks(files):
    """Version 2 (SHA-256 per tensor) and version 1 (CRC32 per tensor, manifest unchecked) files."""
    import zlib
    meta, manifest, tensors, _ = _parts(files["IVFPQ"])
    good = _state(io.index_from_bytes(files["IVFPQ"]))
    for version, key, digest in (("2", "sha256", sha256), ("1", "crc32", lambda b: zlib.crc32(b))):
        m = {k: v for k, v in manifest.items() if k != "tensors"}
        m[key] = {k: digest(io._tensor_bytes(v)) for k, v in tensors.items()}
        text = json.dumps(m)
        old = st_save(dict(tensors), metadata={"format": io.FORMAT, "version": version, "manifest": text,
                                               "manifest_sha256": sha256(text.encode())})
        assert _same(_state(io.index_from_bytes(old)), good)
        m["next_label"] = 1
        text = json.dumps(m)
        bad = st_save(dict(tensors), metadata={"format": io.FORMAT, "version": version, "manifest": text,
                                               "manifest_sha256": sha256(text.encode())})
        with pytest.raises(ti.CorruptFileError, match="next_label"):
            io.index_from_bytes(bad)


# ---- store directories ---------------------------------------------------------------------------
from test_safety_store import _coll, _version_of  # noqa: E402  (texts say which save they belong to)


def _store_outcome(path, version: int = 1, sound_ok: bool = False) -> str:
    try:
        v = _version_of(path)  # asserts texts, vectors and metadata are of one save
    except ValueError as e:  # CorruptFileError is one; the message names the store or one of its files
        assert str(path) in str(e), f"refusal without the store's path: {e}"
        return "refused"
    except AssertionError:
        return "wrong"
    return "identical" if v == version or sound_ok else "wrong"


def _pointer(store: Path) -> dict:
    return json.loads((store / "STORE.json").read_text())


def _repoint(store: Path, fname: str, payload: bytes) -> None:
    """Write payload as the current version's fname and re-checksum the pointer (a forger's tool)."""
    p = _pointer(store)
    (store / p["current"] / fname).write_bytes(payload)
    p["files"][fname] = {"size": len(payload), "sha256": sha256(payload)}
    p.pop("sha256")
    p["sha256"] = persist.sha256(persist.canonical(p))
    (store / "STORE.json").write_text(json.dumps(p))


def test_store_byte_flips_truncations_every_pointer_and_manifest_byte(tmp_path):
    store = tmp_path / "s"
    _coll(1).save(store)
    p = _pointer(store)
    rng = np.random.default_rng(12)
    counts = Counts("store directories, byte flips/truncations")
    for f in [store / "STORE.json"] + [store / p["current"] / n for n in p["files"]]:
        good = f.read_bytes()
        everywhere = f.name in ("STORE.json", "manifest.json")
        offsets = range(len(good)) if everywhere else sorted(rng.choice(len(good), 40, replace=False).tolist())
        for off in offsets:
            bad = bytearray(good)
            bad[off] ^= 1 << int(rng.integers(0, 8))
            f.write_bytes(bytes(bad))
            counts.add(_store_outcome(store))
        for cut in sorted(set(np.linspace(0, len(good) - 1, 24).astype(int).tolist())):
            f.write_bytes(good[:cut])
            counts.add(_store_outcome(store))
        f.write_bytes(good)
        assert _version_of(store) == 1
    counts.report()


def test_store_files_swapped_between_saves(tmp_path):
    """Each file (and the pointer, and a whole version directory) of one save put into another."""
    a, b = tmp_path / "a", tmp_path / "b"
    _coll(1).save(a)
    cb = _coll(1)
    cb.delete(["d3", "d4"])  # same documents, other labels: only the cross-checks can tell
    cb.upsert(["1:3", "1:4"], ids=["d3", "d4"], vectors=np.array([[1, 3] + [0] * (D - 2), [1, 4] + [0] * (D - 2)], np.float32),
              metadatas=[{"v": 1, "i": 3}, {"v": 1, "i": 4}])
    cb.save(b)
    _coll(2).save(tmp_path / "c")
    counts = Counts("store directories, swaps between saves")
    for other in (b, tmp_path / "c"):
        pa, po = _pointer(a), _pointer(other)
        for fname in po["files"]:
            dst = a / pa["current"] / fname
            saved = dst.read_bytes()
            payload = (other / po["current"] / fname).read_bytes()
            for forge in (False, True):
                if forge:
                    _repoint(a, fname, payload)
                else:
                    dst.write_bytes(payload)
                outcome = _store_outcome(a)
                counts.add("wrong" if outcome == "identical" and payload != saved else outcome)
                _repoint(a, fname, saved)
            assert _version_of(a) == 1
        saved = (a / "STORE.json").read_bytes()
        (a / "STORE.json").write_bytes((other / "STORE.json").read_bytes())  # another store's pointer
        counts.add(_store_outcome(a))
        (a / "STORE.json").write_bytes(saved)
    counts.report()


def _manifest_crafts() -> dict:
    deep = _deep(300)
    return {
        "metric cosine": {"metric": "cosine"}, "metric ip": {"metric": "ip"}, "metric unknown": {"metric": "foo"},
        "metric int": {"metric": 3}, "metric null": {"metric": None}, "dim 9": {"dim": 9}, "dim 0": {"dim": 0},
        "dim -1": {"dim": -1}, "dim str": {"dim": "8"}, "dim 10**12": {"dim": 10 ** 12}, "dim deep": {"dim": deep},
        "index IVF": {"index": "IVF4,Flat"}, "index junk": {"index": "rm -rf"}, "index int": {"index": 5},
        "index 10**12 lists": {"index": f"IVF{10 ** 12},Flat"}, "nprobe -1": {"nprobe": -1}, "nprobe str": {"nprobe": "2"},
        "nprobe float": {"nprobe": 1.5}, "next_label 0": {"next_label": 0}, "next_label -1": {"next_label": -1},
        "next_label str": {"next_label": "20"}, "next_label 2**70": {"next_label": 2 ** 70},
        "trained_n str": {"trained_n": "x"}, "trained_n -1": {"trained_n": -1}, "trained_n list": {"trained_n": [1]},
        "count 19": {"count": 19}, "count str": {"count": "20"}, "format other": {"format": "other"},
        "version 99": {"version": 99}, "version str": {"version": "1"}, "no metric": {"metric": ...},
        "no index": {"index": ...}, "no dim": {"dim": ...}, "no format": {"format": ...}, "no version": {"version": ...},
        "extra key": {"evil": deep},
    }


def test_store_crafted_manifests_and_records_are_refused(tmp_path):
    """Manifests and records edited with the pointer's checksums recomputed."""
    store = tmp_path / "s"
    _coll(1).save(store)
    p = _pointer(store)
    vdir = store / p["current"]
    manifest0, records0 = (vdir / "manifest.json").read_bytes(), (vdir / "records.jsonl").read_bytes()
    counts = Counts("store directories, crafted manifests/records (pointer re-checksummed)")
    loaded = []
    for label, change in _manifest_crafts().items():
        m = json.loads(manifest0)
        for k, v in change.items():
            if v is ...:
                m.pop(k)
            else:
                m[k] = v
        _repoint(store, "manifest.json", json.dumps(m).encode())
        outcome = counts.add(_store_outcome(store, sound_ok=True))
        if outcome != "refused":
            loaded.append(label)
    _repoint(store, "manifest.json", manifest0)
    lines = records0.decode().splitlines()
    rec = [json.loads(line) for line in lines]
    record_crafts = {
        "duplicate id": lines + [json.dumps({**rec[0], "label": 99})],
        "duplicate label": lines[:-1] + [json.dumps({**rec[-1], "label": rec[0]["label"]})],
        "negative label": [json.dumps({**rec[0], "label": -1})] + lines[1:],
        "label not in index": [json.dumps({**rec[0], "label": 19})] + lines[1:],
        "record missing": lines[1:], "label str": [json.dumps({**rec[0], "label": "0"})] + lines[1:],
        "id int": [json.dumps({**rec[0], "id": 0})] + lines[1:], "text int": [json.dumps({**rec[0], "text": 5})] + lines[1:],
        "metadata list": [json.dumps({**rec[0], "metadata": [1]})] + lines[1:],
        "metadata deep": [json.dumps({**rec[0], "metadata": {"a": _deep(300)}})] + lines[1:],
        "line not JSON": ["{"] + lines[1:], "line a list": ["[]"] + lines[1:], "NaN": ['{"id": "d0", "label": NaN}'] + lines[1:],
        "bad UTF-8": None,
    }
    for label, new_lines in record_crafts.items():
        payload = b"\xff\xfe" + records0 if new_lines is None else "".join(line + "\n" for line in new_lines).encode()
        _repoint(store, "records.jsonl", payload)
        outcome = counts.add(_store_outcome(store, sound_ok=False))
        if outcome != "refused":
            loaded.append(label)
    _repoint(store, "records.jsonl", records0)
    assert _version_of(store) == 1
    print(f"\n  loaded (consistent, as the manifest says): {loaded}")
    counts.report()


def test_a_large_foreign_file_is_refused_after_reading_its_header_only(tmp_path, monkeypatch):
    path = tmp_path / "big.bin"
    with open(path, "wb") as f:
        f.write((16).to_bytes(8, "little") + b'{"a": 1}        ')
        f.truncate(1 << 30)  # sparse: 1 GiB that read_index must not read
    read = []

    class Counting:  # a file object that records how many bytes were read from it
        def __init__(self, *a, **k):
            self.fh = open(*a, **k)

        def read(self, n=-1):
            read.append(len(out := self.fh.read(n)))
            return out

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()
    monkeypatch.setattr(io, "open", Counting, raising=False)
    with pytest.raises(ti.CorruptFileError, match="big.bin: is not a torch-ivf index file"):
        ti.read_index(path)
    assert read and sum(read) <= 64, read  # the 8 length bytes and the 16-byte header


def test_write_index_crash_at_every_file_system_call_leaves_old_or_new(tmp_path, files):
    """A write_index that dies at any file-system call leaves the old file or the new one at the path."""
    from test_safety_store import _Dies
    path = tmp_path / "i.tivf"
    old, new = (io.index_from_bytes(files[k]) for k in ("IVFPQ", "IVFFlat"))
    states = {"old": _state(old), "new": _state(new)}
    io.write_index(old, path)
    with pytest.MonkeyPatch.context() as mp:
        counter = _Dies(mp, at=10 ** 9)
        io.write_index(new, path)
    seen = {"old": 0, "new": 0}
    for i in range(counter.calls + 1):
        io.write_index(old, path)
        with pytest.MonkeyPatch.context() as mp:
            _Dies(mp, at=i)
            try:
                io.write_index(new, path)
            except OSError:
                pass
        loaded = _state(io.read_index(path))
        which = [k for k, s in states.items() if _same(loaded, s)]
        assert len(which) == 1, f"crash at call {i}: the file is neither the old nor the new index"
        seen[which[0]] += 1
        assert all(p.name == "i.tivf" or (p.name.startswith(".i.tivf.") and p.name.endswith(".tmp"))
                   for p in tmp_path.iterdir())
    print(f"\nwrite_index crash injection: {counter.calls + 1} crash points, {seen['old']} left the old file, "
          f"{seen['new']} the new one, 0 loaded wrong")
    assert seen["old"] and seen["new"]
