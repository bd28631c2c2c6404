"""Store inputs are refused at add (never at save), leave the store unchanged, and round-trip exactly.

Also a property test: random upsert/delete/save+load/search sequences on a Flat collection agree with
a dict model after every step, types of metadata values included.
"""
from __future__ import annotations

import collections
import datetime
import enum
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from torch_ivf.collection import Collection
from torch_ivf.collection.filters import MAX_FILTER_DEPTH
from torch_ivf.collection.inputs import MAX_METADATA_DEPTH

D = 3


def _store(n: int = 4) -> Collection:
    c = Collection(dim=D, metric="l2", index="Flat", device="cpu")
    c.upsert([f"t{i}" for i in range(n)], ids=[f"d{i}" for i in range(n)],
             vectors=np.arange(n * D, dtype=np.float32).reshape(n, D), metadatas=[{"i": i} for i in range(n)])
    return c


def _state(c: Collection):
    hits = [(h.id, h.distance) for h in c.search([0.0] * D, k=10)]
    return (len(c), c._table.next_label, [(r.id, r.text, r.metadata, r.label) for r in c.records()], hits)


def _typed(v):
    """Values with their types, so 1, 1.0 and True (equal in Python) compare different."""
    if isinstance(v, dict):
        return ("dict", sorted((k, _typed(x)) for k, x in v.items()))
    if isinstance(v, list):
        return ("list", [_typed(x) for x in v])
    return (type(v).__name__, v)


def _nested(depth: int):
    m = {"leaf": 1}
    for _ in range(depth - 1):
        m = {"k": m}
    return m


class Color(enum.IntEnum):
    RED = 1


class Tag(str, enum.Enum):
    A = "a"


BAD = [  # (metadata, error, words the message must contain)
    ({"obj": object()}, TypeError, "'obj'.*object"),
    ({"s": {1, 2}}, TypeError, "'s'.*set.*sorted list"),
    ({"b": b"x"}, TypeError, "'b'.*bytes"),
    ({"n": float("nan")}, TypeError, "'n'.*nan"),
    ({"n": np.float32("inf")}, TypeError, "'n'.*inf"),
    ({"t": datetime.datetime(2026, 1, 1)}, TypeError, "'t'.*datetime.*isoformat"),
    ({"a": np.zeros(3)}, TypeError, "'a'.*ndarray.*tolist"),
    ({1: "one"}, TypeError, "key 1 of type int.*'1'"),
    ({"x": {2.5: 1}}, TypeError, r"\['x'\].*key 2.5"),
    ({"deep": {"x": [1, {"y": {3j}}]}}, TypeError, r"\['deep'\]\['x'\]\[1\]\['y'\].*set"),
    ({"c": 1 + 2j}, TypeError, "'c'.*complex"),
    ({"s": "a\ud800b"}, ValueError, "'s'.*surrogate"),
    ({"k\udfff": 1}, ValueError, "surrogate"),
    (_nested(MAX_METADATA_DEPTH + 1), ValueError, f"deeper than {MAX_METADATA_DEPTH}"),
    ("not a dict", TypeError, "must be a dict"),
]


@pytest.mark.parametrize("metadata,error,words", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_metadata_is_refused_at_add_naming_the_id_and_key(tmp_path, metadata, error, words):
    c = _store()
    c.save(tmp_path / "s")
    before = _state(c)
    with pytest.raises(error, match=rf"metadatas\[1\] \(id 'new'\).*{words}"):
        c.upsert(["ok", "bad"], ids=["d0", "new"], vectors=np.ones((2, D), np.float32),
                 metadatas=[{"fine": 1}, metadata])
    assert _state(c) == before  # nothing changed, not even d0 (the good row of the batch)
    c.save(tmp_path / "s")  # saving still works: nothing unsaveable got in
    assert _state(Collection.load(tmp_path / "s", device="cpu")) == before


def test_every_refusal_type_is_counted():
    tried = refused = 0
    for metadata, error, _ in BAD:
        tried += 1
        try:
            _store().upsert(["x"], ids=["x"], vectors=np.ones((1, D), np.float32), metadatas=[metadata])
        except error:
            refused += 1
    print(f"\nbad metadata: {tried} tried, {refused} refused at add, {tried - refused} accepted")
    assert refused == tried


def test_lossless_conversions_store_what_a_load_gives_back(tmp_path):
    given_ = {"tuple": (1, "a", (2.5, None)), "i64": np.int64(2 ** 62), "u8": np.uint8(7), "f32": np.float32(0.5),
              "f64": np.float64(0.1), "b": np.bool_(True), "enum": Color.RED, "strenum": Tag.A,
              "np_str": np.str_("s"), "od": collections.OrderedDict(z=1, a=2), "big": 2 ** 80, "neg0": -0.0,
              "uni": "caf\u00e9 \U0001f600", "deep": _nested(MAX_METADATA_DEPTH - 1)}
    want = {"tuple": [1, "a", [2.5, None]], "i64": 2 ** 62, "u8": 7, "f32": 0.5, "f64": 0.1, "b": True, "enum": 1,
            "strenum": "a", "np_str": "s", "od": {"z": 1, "a": 2}, "big": 2 ** 80, "neg0": -0.0,
            "uni": "caf\u00e9 \U0001f600", "deep": _nested(MAX_METADATA_DEPTH - 1)}
    c = Collection(dim=D, metric="l2", index="Flat", device="cpu")
    c.upsert(["t"], ids=["a"], vectors=np.ones((1, D), np.float32), metadatas=[given_])
    got = c.get(["a"])[0].metadata
    assert _typed(got) == _typed(want)
    c.save(tmp_path / "s")
    assert _typed(Collection.load(tmp_path / "s", device="cpu").get(["a"])[0].metadata) == _typed(want)
    assert math.copysign(1, got["neg0"]) == -1


@pytest.mark.parametrize("kwargs,error,words", [
    ({"texts": ["ok", "bad \ud800"]}, ValueError, r"texts\[1\].*surrogate"),
    ({"texts": ["ok", "fine"], "ids": ["a", "b\udc80"]}, ValueError, r"ids\[1\].*surrogate"),
    ({"texts": "ab"}, TypeError, "texts must be a list of strings"),
    ({"texts": ["a", "b"], "metadatas": {"k": 1}}, TypeError, "metadatas must be a list of dicts"),
    ({"texts": ["a", "b"], "metadatas": "ab"}, TypeError, "metadatas must be a list of dicts"),
])
def test_bad_texts_ids_and_containers_are_refused(kwargs, error, words):
    c = _store()
    before = _state(c)
    with pytest.raises(error, match=words):
        c.upsert(vectors=np.ones((2, D), np.float32), **kwargs)
    assert _state(c) == before


def test_deep_filters_raise_value_error_not_recursion_error():
    c = _store()
    deep = {"i": 1}
    for _ in range(1000):
        deep = {"$not": deep}
    deep_list = {"$and": [{"i": 1}]}
    for _ in range(1000):
        deep_list = {"$and": [deep_list]}
    deep_value = {"i": {"$eq": _nested(1000)}}
    for f in (deep, deep_list, deep_value):
        for call in (lambda: c.search([0.0] * D, k=2, filter=f), lambda: c.records(filter=f),
                     lambda: c.mmr([0.0] * D, k=2, filter=f), lambda: c.delete_where(f)):
            with pytest.raises(ValueError, match="filter nests deeper"):
                call()
    assert len(c) == 4
    ok = {"i": 1}
    for _ in range(MAX_FILTER_DEPTH // 2 - 1):
        ok = {"$and": [ok]}
    assert [h.id for h in c.search([0.0] * D, k=2, filter=ok)] == ["d1"]


# ---- the LangChain and LlamaIndex stores ---------------------------------------------------------
class _Vec:
    def embed_documents(self, texts):
        return [[float(len(t)), 1.0, 0.0] for t in texts]

    def embed_query(self, text):
        return [float(len(text)), 1.0, 0.0]


def test_langchain_refuses_a_bare_string_and_bad_metadata():
    pytest.importorskip("langchain_core")
    from langchain_core.embeddings import Embeddings

    from langchain_torch_ivf import TorchIVFVectorStore

    class E(_Vec, Embeddings):
        pass

    store = TorchIVFVectorStore(E(), index="Flat", metric="l2", device="cpu")
    store.add_texts(["one"], ids=["a"])
    for call, error, words in [
        (lambda: store.add_texts("abc"), TypeError, "single str"),
        (lambda: store.add_texts(["x"], [{"when": datetime.date(2026, 1, 1)}], ids=["b"]), TypeError, "'b'.*'when'"),
        (lambda: store.add_texts(["x\ud800"], ids=["b"]), ValueError, "surrogate"),
        (lambda: store.add_embeddings("ab"), TypeError, "pairs"),
        (lambda: store.add_embeddings([("x", [1.0, 2.0, 3.0])], [{2: "int key"}], ids=["b"]), TypeError, "key 2"),
    ]:
        with pytest.raises(error, match=words):
            call()
    assert len(store.collection) == 1 and [d.id for d in store.get_by_ids(["a", "b"])] == ["a"]


def test_llama_index_refuses_a_single_node_bad_metadata_and_deep_filters():
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters

    from llama_index.vector_stores.torch_ivf import TorchIVFVectorStore

    store = TorchIVFVectorStore(index="Flat", metric="l2", device="cpu")
    store.add([TextNode(text="one", id_="a", embedding=[1.0, 0.0, 0.0], metadata={"g": 1})])
    with pytest.raises(TypeError, match="single TextNode"):
        store.add(TextNode(text="two", id_="b", embedding=[1.0, 0.0, 0.0]))
    # LlamaIndex itself turns sets and dates into JSON (node_to_metadata_dict); what it passes on is checked
    with pytest.raises(ValueError, match="'b'.*'s'.*surrogate"):
        store.add([TextNode(text="two", id_="b", embedding=[1.0, 0.0, 0.0], metadata={"s": "a\ud800"})])
    with pytest.raises(ValueError, match="texts.*'b'.*surrogate"):
        store.add([TextNode(text="two\udc00", id_="b", embedding=[1.0, 0.0, 0.0])])
    filters = MetadataFilters(filters=[MetadataFilter(key="g", value=1)])
    for _ in range(200):
        filters = MetadataFilters(filters=[filters])
    with pytest.raises(ValueError, match="deeper"):
        store.get_nodes(filters=filters)
    assert [n.node_id for n in store.get_nodes()] == ["a"]


# ---- property test against a dict model ----------------------------------------------------------
KEYS = [f"k{i}" for i in range(6)]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)
# (what is passed, what the store must hold): tuples and numpy scalars are converted losslessly
_converted = (st.tuples(st.integers(), st.text(max_size=3)).map(lambda t: (t, list(t)))
              | st.integers(-2 ** 63, 2 ** 63 - 1).map(lambda i: (np.int64(i), i))
              | st.floats(width=32, allow_nan=False, allow_infinity=False).map(lambda f: (np.float32(f), float(f))))
_meta = st.tuples(st.one_of(st.none(), st.integers(0, 2)), st.one_of(st.none(), st.sampled_from("ab")),
                  st.one_of(_json.map(lambda v: (v, v)), _converted))
_vec = st.lists(st.integers(-2, 2), min_size=D, max_size=D)
_doc = st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.text(max_size=8)), _meta, _vec)
# (filter, the same filter in Python); a missing field matches only $ne
FILTERS = [
    (None, lambda m: True),
    ({"g": 1}, lambda m: m.get("g") == 1),
    ({"g": {"$in": [0, 2]}}, lambda m: m.get("g") in (0, 2)),
    ({"g": {"$gte": 1}}, lambda m: m.get("g") is not None and m["g"] >= 1),
    ({"tag": {"$ne": "a"}}, lambda m: m.get("tag") != "a"),
    ({"$or": [{"g": 0}, {"tag": "b"}]}, lambda m: m.get("g") == 0 or m.get("tag") == "b"),
    ({"$and": [{"g": {"$exists": True}}, {"$not": {"tag": "a"}}]}, lambda m: "g" in m and m.get("tag") != "a"),
]
_op = st.one_of(
    st.tuples(st.just("upsert"), st.lists(_doc, min_size=1, max_size=4)),
    st.tuples(st.just("delete"), st.lists(st.sampled_from(KEYS), min_size=1, max_size=3)),
    st.tuples(st.just("save_load"), st.none()),
    st.tuples(st.just("search"), st.tuples(_vec, st.integers(1, 7), st.integers(0, len(FILTERS) - 1))),
)


def _model_search(model: dict, q, k: int, pred) -> list[tuple[str, float]]:
    """Exact top-k by squared L2 (exact: small integers); of documents tied at the k-th distance the
    earlier stored are kept (as Flat search promises)."""
    rows = [(float(sum((a - b) ** 2 for a, b in zip(v, q))), pos, key)
            for pos, (key, (_, meta, v)) in enumerate(model.items()) if pred(meta)]
    return [(key, dist) for dist, _, key in sorted(rows)[:k]]


def _ranked(hits, model: dict) -> list[tuple[str, float]]:
    """Hits in distance order; equal distances put in stored order (their order among themselves is free)."""
    pos = {key: i for i, key in enumerate(model)}
    out = [(h.id, h.distance) for h in hits]
    assert [d for _, d in out] == sorted(d for _, d in out)
    return sorted(out, key=lambda hd: (hd[1], pos[hd[0]]))


def _check(c: Collection, model: dict) -> None:
    assert len(c) == len(model)
    got = {r.id: (r.text, _typed(r.metadata)) for r in c.get(KEYS)}
    assert got == {key: (text, _typed(meta)) for key, (text, meta, _) in model.items()}
    assert [r.id for r in c.records()] == list(model)  # insertion order; an upsert moves a doc to the end
    if model:
        assert c.vectors(list(model)).tolist() == [[float(x) for x in v] for _, _, v in model.values()]
        assert _ranked(c.search([0.0] * D, k=len(model)), model) == \
            _model_search(model, [0] * D, len(model), lambda m: True)


@settings(max_examples=40, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate, Phase.shrink],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(_op, max_size=14))
def test_collection_matches_a_dict_model_across_saves(ops):
    with tempfile.TemporaryDirectory() as tmp:
        c = Collection(dim=D, metric="l2", index="Flat", device="cpu")
        model: dict[str, tuple] = {}
        for op, arg in ops:
            if op == "upsert":
                metas = []
                for _, _, (g, tag, (extra_in, extra_want)), _ in arg:
                    given_ = {"x": extra_in, **({} if g is None else {"g": g}), **({} if tag is None else {"tag": tag})}
                    want = {"x": extra_want, **{k: v for k, v in given_.items() if k != "x"}}
                    metas.append((given_, want))
                c.upsert([t for _, t, _, _ in arg], ids=[key for key, _, _, _ in arg],
                         vectors=np.array([v for *_, v in arg], np.float32), metadatas=[g for g, _ in metas])
                for (key, text, _, v), (_, want) in zip(arg, metas):
                    model.pop(key, None)  # a replaced document gets a new label: it moves to the end
                    model[key] = (text, want, v)
            elif op == "delete":
                assert c.delete(arg) == len(set(arg) & set(model))
                for key in arg:
                    model.pop(key, None)
            elif op == "save_load":
                c.save(Path(tmp) / "s")
                c = Collection.load(Path(tmp) / "s", device="cpu")
            else:
                q, k, f = arg
                spec, pred = FILTERS[f]
                got = _ranked(c.search([float(x) for x in q], k=k, filter=spec), model)
                assert got == _model_search(model, q, k, pred)
            _check(c, model)
