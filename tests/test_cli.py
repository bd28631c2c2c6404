"""The torch-ivf command: build from a folder / JSONL, query in every mode, info, bench, clear errors."""

from __future__ import annotations

import json

import pytest

from conftest import word_hash_vector

from torch_ivf import cli


class FakeModel:
    def embed_documents(self, texts):
        return [word_hash_vector(t, 16).tolist() for t in texts]

    def embed_query(self, text):
        return word_hash_vector(text, 16).tolist()


@pytest.fixture(autouse=True)
def fake_model(monkeypatch):
    monkeypatch.setattr(cli, "load_model", lambda device: FakeModel())


def test_build_from_folder_then_query_and_info(tmp_path, capsys):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("sockets bind to ports; EADDRINUSE means the port is taken " * 3)
    (docs / "sub" / "b.txt").write_text("pipes connect processes " * 100)
    (docs / "skip.bin").write_text("ignored")
    store = tmp_path / "store"
    cli.main(["build", str(docs), str(store), "--device", "cpu", "--chunk-words", "50", "--quiet"])
    assert "documents ->" in capsys.readouterr().out
    cli.main(["query", str(store), "EADDRINUSE", "--mode", "keyword", "-k", "2"])
    out = capsys.readouterr().out
    assert out.startswith("1. ") and "a.md#0" in out and '"source": "a.md"' in out
    cli.main(["query", str(store), "pipes", "--mode", "hybrid", "--filter", '{"source": "sub/b.txt"}', "--device", "cpu"])
    out = capsys.readouterr().out
    assert "sub/b.txt#" in out and "a.md" not in out
    cli.main(["info", str(store)])
    out = capsys.readouterr().out
    assert "torch-ivf-collection" in out and "chunk, source" in out and "documents on cpu" in out


def test_build_from_jsonl_keeps_ids_and_metadata(tmp_path, capsys):
    src = tmp_path / "rows.jsonl"
    src.write_text("\n".join(json.dumps({"id": f"r{i}", "text": f"row {i} about topic{i % 3}", "lang": "en"})
                             for i in range(9)))
    cli.main(["build", str(src), str(tmp_path / "s"), "--device", "cpu", "--quiet"])
    cli.main(["query", str(tmp_path / "s"), "topic1", "--mode", "sparse", "-k", "5"])
    out = capsys.readouterr().out
    assert "r1 " in out and "r4 " in out and "r7 " in out and '"lang": "en"' in out


def test_bad_inputs_exit_with_a_message(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"no_text": 1}\n')
    with pytest.raises(SystemExit, match="text"):
        cli.main(["build", str(bad), str(tmp_path / "s"), "--device", "cpu"])
    with pytest.raises(SystemExit) as exc:
        cli.main(["build", str(bad), str(tmp_path / "s"), "--device", "nope"])
    assert exc.value.code == 2 and "device" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["info", str(tmp_path / "missing")])
    assert "no torch-ivf collection" in capsys.readouterr().err


def test_bench_prints_exact_and_ivf_rows(capsys):
    cli.main(["bench", "--n", "3000", "--dim", "16", "--nq", "20", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "exact (Flat)" in out and "IVF" in out and out.count("recall@10") == 4
