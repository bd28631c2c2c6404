"""Store saves survive crashes at every file-system call, SIGKILL, concurrent readers and corruption.

Counts (tried / refused cleanly / loaded wrong) are printed with -s; "loaded wrong" must be 0.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import torch_ivf as ti
from torch_ivf.collection import Collection
from torch_ivf.collection import persist

D = 8


def _coll(version: int, n: int = 20) -> Collection:
    """Texts say which save they belong to; so does vector[0]: a mix of two saves is detectable."""
    c = Collection(dim=D, metric="l2", index="Flat", device="cpu")
    x = np.zeros((n, D), np.float32)
    x[:, 0], x[:, 1] = version, np.arange(n)
    c.upsert([f"{version}:{i}" for i in range(n)], ids=[f"d{i}" for i in range(n)], vectors=x,
             metadatas=[{"v": version, "i": i} for i in range(n)])
    return c


def _version_of(path) -> int:
    """Which save loaded, after checking every text sits with its own vector."""
    c = Collection.load(path, device="cpu")
    recs = c.get([f"d{i}" for i in range(len(c))])
    vecs = c.index.reconstruct_batch([r.label for r in recs])
    versions = {int(r.text.split(":")[0]) for r in recs}
    assert len(versions) == 1, f"texts of several saves: {versions}"
    assert all(int(v[0]) == int(r.text.split(":")[0]) and int(v[1]) == int(r.text.split(":")[1])
               for r, v in zip(recs, vecs)), "texts attached to another save's vectors"
    assert all(r.metadata == {"v": int(r.text.split(":")[0]), "i": int(r.text.split(":")[1])} for r in recs)
    return versions.pop()


def _our_entries(store: Path) -> list[str]:
    return sorted(p.name for p in store.iterdir())


# ---- never delete what is not ours -----------------------------------------------------------
def test_saving_onto_a_users_directory_is_refused_and_deletes_nothing(tmp_path):
    mine = tmp_path / "mydocs"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    (mine / "sub").mkdir()
    (mine / "sub" / "notes.md").write_text("more")
    with pytest.raises(ValueError, match="mydocs.*not a torch-ivf store"):
        _coll(1).save(mine)
    assert (mine / "thesis.txt").read_text() == "years of work" and (mine / "sub" / "notes.md").read_text() == "more"
    assert sorted(p.name for p in mine.iterdir()) == ["sub", "thesis.txt"]
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        _coll(1).save(tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "x"


def test_store_written_by_the_pre_versioning_layout_loads_and_converts(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    c = _coll(7)
    # the layout of torch-ivf before versioned saves: three files directly in the directory
    (old / "manifest.json").write_text(json.dumps({"format": "torch-ivf-collection", "version": 1, "metric": "l2",
                                                   "dim": D, "index": "Flat", "nprobe": None, "next_label": 20,
                                                   "trained_n": 0, "count": 20}))
    rows = [{"id": r.id, "label": r.label, "text": r.text, "metadata": r.metadata} for r in c._table.by_label.values()]
    (old / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ti.write_index(c.index, old / "index.safetensors")
    assert _version_of(old) == 7
    (tmp_path / "sibling.txt").write_text("keep")
    _coll(8).save(old)
    assert _version_of(old) == 8
    names = _our_entries(old)
    assert names[:2] == [".STORE.lock", "STORE.json"] and len(names) == 3  # the old files are gone once switched
    assert (tmp_path / "sibling.txt").read_text() == "keep"


def test_only_current_and_previous_versions_are_kept(tmp_path):
    for v in range(5):
        _coll(v).save(tmp_path / "s")
        assert _version_of(tmp_path / "s") == v
    assert len([n for n in _our_entries(tmp_path / "s") if n.startswith("v")]) == 2


# ---- crash injection at every file-system call of a save ---------------------------------------
_FS_CALLS = ("open", "write", "fsync", "replace", "rename", "mkdir", "close", "unlink", "rmdir")


class _Dies:
    """Makes the i-th file-system call fail, and every call after it (the process is gone)."""

    def __init__(self, monkeypatch, at: int):
        self.at, self.calls, self.dead = at, 0, False
        for name in _FS_CALLS:
            real = getattr(os, name)
            monkeypatch.setattr(os, name, self._wrap(real, name))

    def _wrap(self, real, name):
        def call(*a, **k):
            if not self.dead and self.calls == self.at:
                self.dead = True
            self.calls += 1
            if self.dead:
                raise OSError(f"injected crash at {name}")
            return real(*a, **k)
        return call


def test_crash_at_every_file_system_call_leaves_old_or_new(tmp_path, monkeypatch):
    store = tmp_path / "s"
    (tmp_path / "user.txt").write_text("mine")
    old, new = _coll(1), _coll(2)
    # count the calls one save makes over an existing store
    old.save(store)
    with pytest.MonkeyPatch.context() as mp:
        counter = _Dies(mp, at=10 ** 9)
        new.save(store)
    n_calls = counter.calls
    assert n_calls > 10
    tried = outcomes_old = outcomes_new = wrong = 0
    for i in range(n_calls + 1):
        for p in tmp_path.iterdir():
            if p.name != "user.txt":
                import shutil
                shutil.rmtree(p)
        old.save(store)
        with pytest.MonkeyPatch.context() as mp:
            _Dies(mp, at=i)
            try:
                new.save(store)
            except OSError:
                pass
        tried += 1
        try:
            v = _version_of(store)
        except Exception:
            wrong += 1
            raise
        outcomes_old += v == 1
        outcomes_new += v == 2
        _coll(3).save(store)  # the next save recovers: leftovers of the crash are removed
        assert _version_of(store) == 3
        versions = [n for n in _our_entries(store) if n.startswith("v")]
        assert len(versions) == 2 and not [n for n in _our_entries(store) if n.endswith(".tmp")]
        assert (tmp_path / "user.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["s", "user.txt"]
    print(f"\ncrash injection: {tried} crash points, {outcomes_old} left the old save, "
          f"{outcomes_new} the new one, {wrong} loaded wrong")
    assert wrong == 0 and outcomes_old and outcomes_new


_SAVER = textwrap.dedent("""
    import sys, numpy as np
    from torch_ivf.collection import Collection
    path, start, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for v in range(start, start + 10 ** 6):
        c = Collection(dim=8, metric="l2", index="Flat", device="cpu")
        x = np.zeros((n, 8), np.float32); x[:, 0], x[:, 1] = v, np.arange(n)
        c.upsert([f"{v}:{i}" for i in range(n)], ids=[f"d{i}" for i in range(n)], vectors=x,
                 metadatas=[{"v": v, "i": i} for i in range(n)])
        c.save(path)
        print(v, flush=True)
""")


def _env():
    root = Path(__file__).resolve().parents[1]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_sigkill_mid_save_leaves_a_loadable_store(tmp_path):
    store = tmp_path / "s"
    _coll(0, n=2000).save(store)
    rng = np.random.default_rng(5)
    kills = 0
    for round_ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(store), str(100 * (round_ + 1)), "2000"],
                                env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        proc.stdout.readline()  # one save done: the process is in its save loop
        time.sleep(float(rng.uniform(0.0, 0.05)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        assert _version_of(store) >= 100 * (round_ + 1)
    _coll(9).save(store)
    assert _version_of(store) == 9 and len([n for n in _our_entries(store) if n.startswith("v")]) == 2
    print(f"\nSIGKILL: {kills} kills mid-save, {kills} loadable afterwards, 0 loaded wrong")


def test_a_reader_never_sees_two_versions_mixed(tmp_path):
    """One process saves in a loop while this one loads in a loop."""
    store = tmp_path / "s"
    _coll(0, n=300).save(store)
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(store), "1", "300"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        proc.stdout.readline()
        loads, seen, end = 0, set(), time.monotonic() + 4.0
        while time.monotonic() < end:
            seen.add(_version_of(store))  # asserts that texts, vectors and metadata are of one save
            loads += 1
    finally:
        proc.kill()
        proc.wait()
    print(f"\nconcurrent: {loads} loads during {len(seen)} distinct saves, 0 mixed")
    assert loads > 5 and len(seen) > 2


# ---- corruption (byte flips, truncations and crafted files: tests/test_safety_files.py) ---------
def test_files_swapped_between_saves_are_refused_even_with_forged_checksums(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ca = _coll(1)
    ca.save(a)
    cb = _coll(1, n=20)
    cb.delete(["d3"])
    cb.upsert(["1:3"], ids=["d3"], vectors=np.array([[1, 3] + [0] * (D - 2)], np.float32),
              metadatas=[{"v": 1, "i": 3}])  # same texts, but d3 now has a new label
    cb.save(b)
    counts = {"tried": 0, "refused": 0}
    for fname in ("records.jsonl", "index.safetensors", "manifest.json"):
        pa, pb = (json.loads((p / "STORE.json").read_text()) for p in (a, b))
        src, dst = b / pb["current"] / fname, a / pa["current"] / fname
        saved = dst.read_bytes()
        dst.write_bytes(src.read_bytes())
        counts["tried"] += 1
        with pytest.raises(ti.CorruptFileError):
            Collection.load(a, device="cpu")
        # forge the pointer as a buggy tool would: checksums match, the cross-checks must still refuse
        pa["files"][fname] = {"size": dst.stat().st_size, "sha256": persist.sha256(dst.read_bytes())}
        pa.pop("sha256")
        pa["sha256"] = persist.sha256(persist.canonical(pa))
        (a / "STORE.json").write_text(json.dumps(pa))
        counts["tried"] += 1
        with pytest.raises(ti.CorruptFileError, match="labels|next_label|different saves"):
            Collection.load(a, device="cpu")
        counts["refused"] += 1
        counts["refused"] += 1
        dst.write_bytes(saved)
        pa["files"][fname] = {"size": len(saved), "sha256": persist.sha256(saved)}
        pa.pop("sha256")
        pa["sha256"] = persist.sha256(persist.canonical(pa))
        (a / "STORE.json").write_text(json.dumps(pa))
        assert _version_of(a) == 1
    print(f"\nswapped files: {counts}")


def test_missing_index_file_and_wrong_metric_are_refused(tmp_path):
    store = tmp_path / "s"
    _coll(1).save(store)
    pointer = json.loads((store / "STORE.json").read_text())
    vdir = store / pointer["current"]
    index_bytes = (vdir / "index.safetensors").read_bytes()
    (vdir / "index.safetensors").unlink()
    with pytest.raises(ti.CorruptFileError, match="missing"):
        Collection.load(store, device="cpu")
    (vdir / "index.safetensors").write_bytes(index_bytes)
    manifest = json.loads((vdir / "manifest.json").read_text())
    manifest["metric"] = "cosine"
    payload = json.dumps(manifest).encode()
    (vdir / "manifest.json").write_bytes(payload)
    pointer["files"]["manifest.json"] = {"size": len(payload), "sha256": persist.sha256(payload)}
    pointer.pop("sha256")
    pointer["sha256"] = persist.sha256(persist.canonical(pointer))
    (store / "STORE.json").write_text(json.dumps(pointer))
    with pytest.raises(ti.CorruptFileError, match="metric"):
        Collection.load(store, device="cpu")


def test_malformed_pointers_raise_corrupt_file_error(tmp_path):
    store = tmp_path / "s"
    _coll(1).save(store)
    good = json.loads((store / "STORE.json").read_text())
    variants = ["[" * 5000 + "]" * 5000, "{}", "[]", "null", '{"format": "torch-ivf-store"}',
                json.dumps({**good, "version": "2"}), json.dumps({**good, "files": []}),
                json.dumps({**good, "current": "../../etc"}), "\xff\xfe", "NaN"]
    for text in variants:
        (store / "STORE.json").write_text(text, encoding="utf-8", errors="surrogateescape")
        with pytest.raises(ti.CorruptFileError):
            Collection.load(store, device="cpu")
    print(f"\nmalformed pointers: {len(variants)} tried, {len(variants)} refused cleanly")
