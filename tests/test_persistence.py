"""Persistence: bit-identical round trips, every dtype, devices, and refusal of bad files."""
import json

import numpy as np
import pytest
import torch
from conftest import clustered, devices

import torch_ivf as ti


def _built(kind, dtype=torch.float32, device="cpu"):
    xb = clustered(3000, 16, seed=21)
    if kind == "flat":
        index = ti.IndexFlat(16, "cosine", dtype=dtype, device=device)
    else:
        index = ti.IndexIVFFlat(16, 12, "l2", nprobe=5, dtype=dtype, device=device, search_mode="matrix")
        index.train(xb)
    index.add_with_ids(xb, np.arange(len(xb)) * 2 + 1)
    index.remove_ids(np.arange(1, 200, 2))
    return index, clustered(40, 16, seed=22)


@pytest.mark.parametrize("kind", ["flat", "ivf"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_round_trip_is_bit_identical(tmp_path, kind, dtype):
    index, xq = _built(kind, dtype)
    path = tmp_path / "index.tivf"
    ti.write_index(index, path)
    loaded = ti.read_index(path)
    assert type(loaded) is type(index) and loaded.dtype == dtype and loaded.ntotal == index.ntotal
    assert loaded.config() == index.config() and loaded.next_label == index.next_label
    D0, I0 = index.search(xq, 7)
    D1, I1 = loaded.search(xq, 7)
    assert np.array_equal(I0, I1) and np.array_equal(D0, D1)
    before, after = index.state_tensors(), loaded.state_tensors()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k].cpu(), after[k].cpu()) for k in before)  # bit-identical contents
    loaded.add(xq)  # still writable after load
    assert loaded.ntotal == index.ntotal + len(xq)


@pytest.mark.parametrize("device", devices())
def test_saved_on_one_device_loads_on_another(tmp_path, device):
    index, xq = _built("ivf", device=device)
    index.save(tmp_path / "i.tivf")
    on_cpu = ti.IndexIVFFlat.load(tmp_path / "i.tivf", device="cpu")
    back = ti.read_index(tmp_path / "i.tivf", device=device)
    assert on_cpu.device.type == "cpu" and back.device.type == torch.device(device).type
    assert np.array_equal(on_cpu.search(xq, 5)[1], index.search(xq, 5)[1])


def test_load_as_wrong_class_is_refused(tmp_path):
    index, _ = _built("flat")
    index.save(tmp_path / "f.tivf")
    with pytest.raises(ValueError, match="IndexIVFFlat"):
        ti.IndexIVFFlat.load(tmp_path / "f.tivf")


def test_truncated_corrupted_and_foreign_files_are_refused(tmp_path):
    index, _ = _built("ivf")
    path = tmp_path / "i.tivf"
    index.save(path)
    payload = path.read_bytes()
    (tmp_path / "trunc").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(ValueError, match="not a readable"):
        ti.read_index(tmp_path / "trunc")
    flipped = bytearray(payload)
    flipped[-10] ^= 0xFF
    (tmp_path / "flip").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="corrupted"):
        ti.read_index(tmp_path / "flip")
    (tmp_path / "foreign").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError):
        ti.read_index(tmp_path / "foreign")
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a torch-ivf index"):
        ti.read_index(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        ti.read_index(tmp_path / "missing")


def test_file_is_safetensors_with_json_manifest(tmp_path):
    index, _ = _built("ivf")
    index.save(tmp_path / "i.tivf")
    from safetensors import safe_open
    with safe_open(str(tmp_path / "i.tivf"), "pt") as f:
        meta = f.metadata()
    manifest = json.loads(meta["manifest"])
    assert meta["format"] == "torch-ivf-index" and manifest["class"] == "IndexIVFFlat"
    assert manifest["config"]["nlist"] == 12 and manifest["config"]["nprobe"] == 5


def test_write_is_atomic_on_failure(tmp_path, monkeypatch):
    index, _ = _built("flat")
    path = tmp_path / "i.tivf"
    index.save(path)
    before = path.read_bytes()
    import os
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        index.save(path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("description", ["Flat", "IVF12,Flat", "IVF12,PQ4x6,RFlat", "IVF12,PQ8x8Panorama2",
                                         "IVF12,FlatPanorama4"])
def test_clone_index_is_an_independent_copy(description):
    """Faiss's clone_index: same results, labels and settings; changing the copy leaves the original."""
    xb, xq = clustered(2000, 16, seed=23), clustered(30, 16, seed=24)
    index = ti.index_factory(16, description, "l2", **({} if description == "Flat" else {"niter": 3}))
    index.train(xb)
    index.add_with_ids(xb, np.arange(len(xb)) * 3)
    if description != "Flat":
        index.nprobe = 4
    copy = ti.clone_index(index)
    assert type(copy) is type(index) and copy.config() == index.config() and copy.next_label == index.next_label
    D0, I0 = index.search(xq, 5)
    assert all(np.array_equal(a, b) for a, b in zip((D0, I0), copy.search(xq, 5)))
    copy.remove_ids(I0[:, 0])
    copy.add(xq)
    assert index.ntotal == len(xb) and all(np.array_equal(a, b) for a, b in zip((D0, I0), index.search(xq, 5)))
    if description != "Flat":
        ivf = ti.extract_index_ivf(index)
        assert sum(ivf.get_list_size(i) for i in range(ivf.nlist)) == len(xb)
        with pytest.raises(ValueError, match="list_no"):
            ivf.get_list_size(ivf.nlist)
