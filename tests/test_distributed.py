"""DistributedIndex over 2 gloo processes on 127.0.0.1 against one index over the same rows.

The test starts this file twice as a script (rank 0 and 1); each rank runs every scenario and writes
its results as .npy / JSON files, which the test compares with one index built here."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
D = 16
ROWS = (0, 700, 1000)  # rank 0: rows 0..699, rank 1: 700..999 (uneven shards)
QROWS = (0, 30, 42)
PQ_KINDS = {  # shard factories (ti: the torch_ivf module), built alike by the ranks and by the tests
    "pq": lambda ti: ti.IndexIVFPQ(D, 8, 4, 6, nprobe=3),
    "refine": lambda ti: ti.IndexRefine(ti.IndexIVFPQ(D, 8, 4, 6, nprobe=3), k_factor=4),
}


def _worker(rank: int, port: int, out: Path) -> None:
    import datetime

    import torch
    import torch.distributed as dist

    import torch_ivf as ti
    from torch_ivf.distributed import DistributedIndex
    from conftest import grid_data

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=60))
    xb, xq = grid_data(1000, D)
    mine = xb[ROWS[rank]:ROWS[rank + 1]]
    myq = xq[QROWS[rank]:QROWS[rank + 1]]
    res: dict = {}

    def save(name, *arrays):
        for i, a in enumerate(arrays):
            np.save(out / f"{name}.{i}.r{rank}.npy", np.asarray(a))

    def error_of(fn):
        try:
            fn()
        except ValueError as e:
            return str(e)
        return None

    flat = DistributedIndex(ti.IndexFlatL2(D))
    flat.train(mine)
    flat.add(mine)
    res["flat_ntotal"] = flat.ntotal
    save("flat", *flat.search(myq, 10))
    save("flat_zero_q", *flat.search(myq if rank == 0 else myq[:0], 5))  # rank 1 passes no query

    ivf = DistributedIndex(ti.IndexIVFFlat(D, 8, nprobe=3))
    ivf.train(torch.from_numpy(mine))  # rank 0 trains on both ranks' rows, in rank order
    save("ivf_centroids", ivf.local_index.centroids)
    ivf.add(torch.from_numpy(mine))
    save("ivf", *ivf.search(torch.from_numpy(myq), 10))
    save("ivf_p", *ivf.search(myq, 10, ti.SearchParams(nprobe=8)))
    res["removed"] = ivf.remove_ids(np.array([1, 2, 650, 702, 999, 5000]))
    res["ivf_ntotal"] = ivf.ntotal
    save("ivf_removed", *ivf.search(myq, 10))
    ivf.save(out / "saved")
    back = DistributedIndex.load(out / "saved")
    save("ivf_loaded", *back.search(myq, 10))
    res["loaded_ntotal"] = back.ntotal

    # compressed shards: IVF-PQ, and IVF-PQ re-ranked from full vectors (IndexRefine)
    for name, make in PQ_KINDS.items():
        idx = DistributedIndex(make(ti))
        idx.train(mine)  # codebooks too: trained on rank 0, broadcast
        base = getattr(idx.local_index, "base", idx.local_index)
        save(f"{name}_trained", base.centroids, base.pq.centroids)
        idx.add(mine)
        save(name, *idx.search(myq, 10))
        save(f"{name}_zero_q", *idx.search(myq if rank == 1 else myq[:0], 10))  # now rank 0 has none
        res[f"{name}_removed"] = idx.remove_ids(np.arange(0, 1000, 7))
        save(f"{name}_removed", *idx.search(myq, 10))
        idx.save(out / f"saved_{name}")
        save(f"{name}_loaded", *DistributedIndex.load(out / f"saved_{name}").search(myq, 10))

    # bad input on one rank: every rank raises, none hangs, the group stays usable
    res["bad_d"] = error_of(lambda: flat.search(myq if rank == 0 else myq[:, :8], 3))
    res["bad_k"] = error_of(lambda: flat.search(myq, 3 if rank == 0 else 4))
    res["bad_ids"] = error_of(lambda: flat.remove_ids(np.array([0.5]) if rank == 1 else np.array([1])))
    res["bad_add"] = error_of(lambda: flat.add(mine if rank == 0 else mine[:, :3]))
    res["after_errors_ntotal"] = flat.ntotal
    res["mismatch"] = error_of(lambda: DistributedIndex(ti.IndexFlatL2(D if rank == 0 else 8)))
    res["mismatch_pq"] = error_of(lambda: DistributedIndex(ti.IndexIVFPQ(D if rank == 1 else 8, 8, 4, 6)))
    res["bad_train"] = error_of(lambda: DistributedIndex(ti.IndexIVFFlat(D, 8)).train(mine if rank == 0 else mine[:, :8]))
    res["mismatch_cfg"] = error_of(lambda: DistributedIndex(ti.IndexIVFFlat(D, 8 if rank == 0 else 4)))
    res["few_train_rows"] = error_of(lambda: DistributedIndex(ti.IndexIVFFlat(D, 64)).train(mine[:20]))
    res["bad_load"] = error_of(lambda: DistributedIndex.load(out / "nowhere"))
    (out / f"res.r{rank}.json").write_text(json.dumps(res))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    procs = [subprocess.Popen([sys.executable, __file__, str(r), str(port), str(out)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in (0, 1)]
    try:
        logs = [p.communicate(timeout=120)[0].decode() for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    return out


def _load(out, name, rank):
    return [np.load(out / f"{name}.{i}.r{rank}.npy") for i in (0, 1)]


def _merged(out, name):
    """Each rank's results for its own queries, stacked in query order."""
    parts = [_load(out, name, r) for r in (0, 1)]
    return np.concatenate([parts[0][0], parts[1][0]]), np.concatenate([parts[0][1], parts[1][1]])


def _res(out, rank):
    return json.loads((out / f"res.r{rank}.json").read_text())


def test_flat_matches_one_index(runs):
    import torch_ivf as ti
    from conftest import assert_same_knn, grid_data
    xb, xq = grid_data(1000, D)
    one = ti.IndexFlatL2(D)
    one.add(xb)
    assert_same_knn(*_merged(runs, "flat"), *one.search(xq, 10))
    Dz, Iz = _load(runs, "flat_zero_q", 1)
    assert Dz.shape == Iz.shape == (0, 5)
    assert_same_knn(*_load(runs, "flat_zero_q", 0), *one.search(xq[:30], 5))
    assert _res(runs, 0)["flat_ntotal"] == _res(runs, 1)["flat_ntotal"] == 1000


def test_ivf_matches_one_index_with_the_same_centroids(runs):
    import torch_ivf as ti
    from conftest import assert_same_knn, grid_data
    xb, xq = grid_data(1000, D)
    one = ti.IndexIVFFlat(D, 8, nprobe=3)
    one.train(xb)
    c0, c1 = (np.load(runs / f"ivf_centroids.0.r{r}.npy") for r in (0, 1))
    np.testing.assert_array_equal(c0, c1)
    np.testing.assert_array_equal(c0, one.centroids.numpy())
    one.add(xb)
    assert_same_knn(*_merged(runs, "ivf"), *one.search(xq, 10), exact=False)
    assert_same_knn(*_merged(runs, "ivf_p"), *one.search(xq, 10, params=ti.SearchParams(nprobe=8)), exact=False)
    assert one.remove_ids(np.array([1, 2, 650, 702, 999, 5000])) == 5
    for r in (0, 1):
        assert _res(runs, r)["removed"] == 5 and _res(runs, r)["ivf_ntotal"] == 995 == _res(runs, r)["loaded_ntotal"]
    assert_same_knn(*_merged(runs, "ivf_removed"), *one.search(xq, 10), exact=False)
    assert_same_knn(*_merged(runs, "ivf_loaded"), *_merged(runs, "ivf_removed"))
    manifest = json.loads((runs / "saved" / "manifest.json").read_text())
    assert [s["ntotal"] for s in manifest["shards"]] == [697, 298]


def _local_shards(ti, name, one, xb, xq, removed=None):
    """The two ranks' shards built in this process with one's training, searched and merged."""
    import torch
    from torch_ivf.shards import copy_training, merge_topk
    Ds, Is = [], []
    for a, b in zip(ROWS, ROWS[1:]):
        shard = PQ_KINDS[name](ti)
        copy_training(one, shard)
        shard.add_with_ids(xb[a:b], np.arange(a, b))
        if removed is not None:
            shard.remove_ids(removed)
        D, I = shard.search(xq, 10)
        Ds.append(torch.as_tensor(D))
        Is.append(torch.as_tensor(I))
    return [t.numpy() for t in merge_topk(torch.cat(Ds, 1), torch.cat(Is, 1), 10, False)]


@pytest.mark.parametrize("name", list(PQ_KINDS))
def test_pq_and_refine_shards_match_one_index(runs, name):
    import torch_ivf as ti
    from conftest import assert_same_knn, grid_data
    xb, xq = grid_data(1000, D)
    one = PQ_KINDS[name](ti)
    one.train(xb)  # the rows rank 0 gathered, in rank order: the same centroids and codebooks
    base = getattr(one, "base", one)
    for r in (0, 1):
        c, cb = _load(runs, f"{name}_trained", r)
        np.testing.assert_array_equal(c, base.centroids.numpy())
        np.testing.assert_array_equal(cb, base.pq.centroids.numpy())
    cut = np.arange(0, 1000, 7)
    if name == "pq":  # the shards' PQ scores are one index's: the merge is its top-k
        one.add(xb)
        want = one.search(xq, 10)
        assert one.remove_ids(cut) == len(cut)
        want_removed = one.search(xq, 10)
    else:
        # each shard re-ranks its own k_factor * k candidates, so the merge sees a superset of one
        # index's: at least as close at every rank, and exactly the shards' own merged results
        want = _local_shards(ti, name, one, xb, xq)
        want_removed = _local_shards(ti, name, one, xb, xq, removed=cut)
        one.add(xb)
        D1, _ = one.search(xq, 10)
        assert (np.sort(_merged(runs, name)[0], 1) <= np.sort(D1, 1) + 1e-5).all()
    assert_same_knn(*_merged(runs, name), *want, exact=False)
    Dz, Iz = _load(runs, f"{name}_zero_q", 0)
    assert Dz.shape == Iz.shape == (0, 10)
    assert_same_knn(*_load(runs, f"{name}_zero_q", 1), want[0][30:], want[1][30:], exact=False)
    assert _res(runs, 0)[f"{name}_removed"] == _res(runs, 1)[f"{name}_removed"] == len(cut)
    assert not np.isin(_merged(runs, f"{name}_removed")[1], cut).any()
    assert_same_knn(*_merged(runs, f"{name}_removed"), *want_removed, exact=False)
    assert_same_knn(*_merged(runs, f"{name}_loaded"), *want_removed, exact=False)


@pytest.mark.parametrize("case, words", [("bad_d", "rank 1: x must have shape (n, 16)"),
                                         ("bad_k", "k and params"), ("bad_ids", "rank 1: ids must be"),
                                         ("bad_add", "rank 1: x must have shape"), ("mismatch", "[16, 8]"),
                                         ("mismatch_pq", "[8, 16]"), ("bad_train", "rank 1: x must have shape"),
                                         ("mismatch_cfg", "same class and settings"),
                                         ("few_train_rows", "fewer than nlist=64"),
                                         ("bad_load", "manifest.json")])
def test_a_bad_rank_raises_on_every_rank(runs, case, words):
    for r in (0, 1):
        msg = _res(runs, r)[case]
        assert msg is not None and words in msg, (r, msg)
    assert _res(runs, 0)["after_errors_ntotal"] == 1000  # the failed add changed nothing


def test_example_under_torchrun(tmp_path):
    """examples/distributed_search.py with 2 gloo processes (torchrun) on a tiny man-page file, the
    hash embedder: a question that is a passage's text finds that passage, on either rank's shard."""
    import gzip
    import torch_ivf as ti
    rows = [{"id": f"page{i}.1#0", "title": f"page{i}.1", "section": "1",
             "text": f"passage {i} about " + " ".join(f"w{(i * 7 + j) % 97}" for j in range(12))} for i in range(300)]
    with gzip.open(tmp_path / "manpages-passages.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    asked = [rows[3]["text"], rows[250]["text"]]  # rank 0's and rank 1's slices
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE.parent / "examples" / "distributed_search.py"), "--data", str(tmp_path), "--embedder", "hash",
           "--passages", "300", "--json", str(tmp_path / "answers.json"), "--save", str(tmp_path / "shards"),
           *[a for q in asked for a in ("--question", q)]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), *sys.path]), "TORCH_IVF_EXAMPLE_CPU": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads((tmp_path / "answers.json").read_text())
    assert out["world"] == 2 and out["ntotal"] == 300
    assert [a["hits"][0]["label"] for a in out["answers"]] == [3, 250]
    assert [a["hits"][0]["title"] for a in out["answers"]] == ["page3.1", "page250.1"]
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert [s["ntotal"] for s in manifest["shards"]] == [150, 150]
    assert ti.read_index(tmp_path / "shards" / "rank00001.tivf").ntotal == 150


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
