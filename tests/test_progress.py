"""Progress bars for long work (torch_ivf.progress): k-means, PQ training and encoding, large adds.

verbose=True always shows one on stderr, False never; None (the indexes' default) only for long work on
a terminal, so small jobs and captured output stay quiet."""
from __future__ import annotations

import contextlib
import io

import pytest
import torch

import torch_ivf as ti
from torch_ivf import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@contextlib.contextmanager
def terminal():
    """stderr that says it is a terminal, read back as text (entered in the test body: pytest's
    capture puts its own sys.stderr back between fixture set-up and the test)."""
    out = _Terminal()
    with contextlib.redirect_stderr(out):
        yield out


@pytest.fixture
def long_work(monkeypatch):
    """Every job counts as long and is shown at once."""
    monkeypatch.setattr(progress, "LONG_WORK", 0)
    monkeypatch.setattr(progress, "DELAY_S", 0)


def _x(n=600, d=16, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_kmeans_bar_when_asked(capsys):
    ti.kmeans(_x(), 8, niter=3, verbose=True)
    err = capsys.readouterr().err
    assert "k-means 8 x 16" in err and "/3 " in err
    ti.kmeans(_x(), 8, niter=3, verbose=False)
    ti.kmeans(_x(), 8, niter=3)  # a plain function call is quiet unless asked
    assert capsys.readouterr().err == ""


def test_default_shows_long_work_on_a_terminal_only(long_work):
    index = ti.IndexIVFFlat(16, 8)  # verbose=None
    with terminal() as err:
        index.train(_x())
    assert "k-means 8 x 16" in err.getvalue()
    with terminal() as err:
        index.add(_x(seed=1))
    assert "assigning to lists" in err.getvalue()
    # not a terminal (a log file, a pipe, CI): nothing, as tqdm does with disable=None
    with contextlib.redirect_stderr(io.StringIO()) as err:
        ti.IndexIVFFlat(16, 8).train(_x())
    assert err.getvalue() == ""


def test_default_is_quiet_for_small_work():
    index = ti.IndexIVFPQ(16, 8, 4, 4)
    with terminal() as err:
        index.train(_x())
        index.add(_x(seed=1))
    assert err.getvalue() == ""


def test_forced_long_ivfpq_shows_every_stage(long_work):
    index = ti.IndexIVFPQ(16, 8, 4, 4)
    with terminal() as err:
        index.train(_x())
        index.add(_x(seed=1))
    for stage in ("k-means 8 x 16", "PQ training 4x4", "assigning to lists", "PQ encoding"):
        assert stage in err.getvalue(), stage


def test_verbose_false_is_silent_even_for_long_work(long_work):
    index = ti.IndexIVFPQ(16, 8, 4, 4, verbose=False)
    with terminal() as err:
        index.train(_x())
        index.add(_x(seed=1))
    assert err.getvalue() == ""


def test_bars_change_no_result(capsys):
    x, q = _x(), _x(20, seed=2)
    shown, quiet = ti.IndexIVFPQ(16, 8, 4, 4, verbose=True), ti.IndexIVFPQ(16, 8, 4, 4, verbose=False)
    for index in (shown, quiet):
        index.train(x)
        index.add(x)
    assert "PQ encoding" in capsys.readouterr().err
    assert torch.equal(shown.search(q, 5)[1], quiet.search(q, 5)[1])


def test_bad_verbose_is_refused():
    with pytest.raises(TypeError, match="verbose"):
        ti.IndexIVFFlat(16, 8, verbose="yes")
    index = ti.IndexIVFFlat(16, 8)
    with pytest.raises(TypeError, match="verbose"):
        index.verbose = 1
    assert index.verbose is None
    index.verbose = True
    with pytest.raises(TypeError, match="verbose"):
        ti.kmeans(_x(), 8, verbose="loud")


@pytest.mark.parametrize("setting, shown", [(None, True), (False, False)])
def test_a_collections_progress_setting_covers_its_ivf_training(long_work, setting, shown):
    from torch_ivf.collection import Collection

    coll = Collection(dim=16, index="IVF4,Flat", device="cpu", progress=setting)
    with terminal() as err:
        coll.upsert(ids=[str(i) for i in range(1100)], vectors=_x(1100).numpy())
    assert coll.index_description.startswith("IVF4")
    assert ("k-means 4 x 16" in err.getvalue()) == shown
