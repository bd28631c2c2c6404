"""Device checks at construction (before any embedding) and the log records of collections and stores."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from conftest import word_hash_vector

from torch_ivf.collection import Collection, resolve_device

DIM = 8


class CountingEmbedder:
    def __init__(self):
        self.calls = 0

    def embed_documents(self, texts):
        self.calls += 1
        return [word_hash_vector(t, DIM).tolist() for t in texts]

    def embed_query(self, text):
        return word_hash_vector(text, DIM).tolist()


def test_none_picks_the_gpu_when_present_and_cpu_otherwise():
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_fails_at_construction_naming_device_and_fix():
    emb = CountingEmbedder()
    with pytest.raises(ValueError, match=r"device 'cuda' is not available.*device='cpu'"):
        Collection(emb, device="cuda")
    with pytest.raises(ValueError, match="cuda:3"):
        resolve_device("cuda:3")
    pytest.importorskip("langchain_core")
    from langchain_torch_ivf import TorchIVFVectorStore

    with pytest.raises(ValueError, match="device 'cuda'"):
        TorchIVFVectorStore.from_texts(["a", "b"], emb, device="cuda")
    assert emb.calls == 0  # nothing was embedded before the error
    pytest.importorskip("llama_index.core")
    from llama_index.vector_stores.torch_ivf import TorchIVFVectorStore as LlamaStore

    with pytest.raises(ValueError, match="device 'cuda'"):
        LlamaStore(device="cuda")


def test_indexes_check_their_device_at_construction_and_to():
    import torch_ivf as ti
    import torch_ivf.faiss as tfaiss

    absent = "cuda:99"  # on no machine
    for make in (lambda: ti.IndexIVFFlat(DIM, 4, device=absent), lambda: ti.IndexFlatL2(DIM, device=absent),
                 lambda: ti.IndexIVFPQ(DIM, 4, 2, 4, device=absent), lambda: tfaiss.IndexFlat(DIM, device=absent)):
        with pytest.raises(ValueError, match=r"device 'cuda:99' is not available.*device='cpu' \(the default\)"):
            make()
    index = ti.IndexRefineFlat(ti.IndexIVFFlat(DIM, 4))
    with pytest.raises(ValueError, match="cuda:99"):
        index.to(absent)
    assert index.device == index.base.device == torch.device("cpu")  # nothing moved
    assert ti.IndexFlatL2(DIM).device == torch.device("cpu")  # an index's None is the CPU, as in Faiss


def test_bad_device_names_and_types():
    with pytest.raises(ValueError, match="not a torch device name"):
        resolve_device("gpu0")
    with pytest.raises(TypeError, match="device must be"):
        resolve_device(3.5)


def test_stores_log_device_and_index_once(caplog):
    pytest.importorskip("langchain_core")
    from langchain_torch_ivf import TorchIVFVectorStore

    with caplog.at_level(logging.INFO, logger="torch_ivf"):
        TorchIVFVectorStore(CountingEmbedder(), device="cpu", index="Flat")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("torch_ivf")]
    assert len(lines) == 1 and "on cpu" in lines[0] and "Flat" in lines[0]
    caplog.clear()
    pytest.importorskip("llama_index.core")
    from llama_index.vector_stores.torch_ivf import TorchIVFVectorStore as LlamaStore

    with caplog.at_level(logging.INFO, logger="torch_ivf"):
        LlamaStore(device="cpu")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("torch_ivf")]
    assert len(lines) == 1 and "on cpu" in lines[0]


def _clustered(n, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((8, DIM)).astype(np.float32) * 4
    return c[rng.integers(0, 8, n)] + rng.standard_normal((n, DIM)).astype(np.float32)


def test_training_logs_spec_and_time_and_small_data_warns_once(caplog):
    coll = Collection(None, index="IVF16,Flat", device="cpu")
    with caplog.at_level(logging.INFO, logger="torch_ivf"):
        coll.upsert(vectors=_clustered(80))
        coll.upsert(vectors=_clustered(80, seed=1))
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        msg = warnings[0].getMessage()
        assert "IVF16,Flat" in msg and "1024" in msg and "80" in msg and "exact" in msg
        assert coll.index_description == "Flat (exact)"
        caplog.clear()
        coll.upsert(vectors=_clustered(1000, seed=2))
    assert coll.index_description.startswith("IVF16,Flat")
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(info) == 1 and info[0].startswith("trained IVF16,Flat on cpu") and " s;" in info[0]
    assert all(r.name.startswith("torch_ivf") for r in caplog.records)
