"""The collection's filter language: Mongo-style dicts and callables compiled to predicates."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_ivf.collection import compile_filter
from torch_ivf.collection.filters import filter_cache_key

DOC = {"n": 5, "s": "Hello World", "tags": ["a", "b"], "empty": "", "none": None,
       "nested": {"lang": "en", "year": 2020}}


def match(spec, doc=DOC) -> bool:
    return compile_filter(spec)(doc)


@pytest.mark.parametrize("spec,expected", [
    ({"n": 5}, True), ({"n": 6}, False), ({"n": [4, 5]}, True), ({"n": [1, 2]}, False),
    ({"n": {"$eq": 5}}, True), ({"n": {"$ne": 5}}, False), ({"n": {"$gt": 4}}, True),
    ({"n": {"$gte": 5}}, True), ({"n": {"$lt": 5}}, False), ({"n": {"$lte": 5}}, True),
    ({"n": {"$gt": 1, "$lt": 9}}, True), ({"n": {"$gt": 1, "$lt": 5}}, False),
    ({"n": {"$in": [5, 6]}}, True), ({"n": {"$nin": [5, 6]}}, False),
    ({"n": {"$exists": True}}, True), ({"zz": {"$exists": False}}, True), ({"zz": {"$exists": True}}, False),
    ({"tags": "a"}, True), ({"tags": {"$in": ["b", "q"]}}, True), ({"tags": {"$nin": ["b"]}}, False),
    ({"tags": {"$contains": "b"}}, True), ({"tags": {"$all": ["a", "b"]}}, True),
    ({"tags": {"$all": ["a", "c"]}}, False), ({"tags": {"$any": ["c", "a"]}}, True),
    ({"s": {"$text_match": "World"}}, True), ({"s": {"$text_match": "world"}}, False),
    ({"s": {"$itext_match": "world"}}, True), ({"s": {"$contains": "lo W"}}, True),
    ({"empty": {"$is_empty": True}}, True), ({"none": {"$is_empty": True}}, True),
    ({"missing": {"$is_empty": True}}, True), ({"s": {"$is_empty": True}}, False),
    ({"n": {"$not": {"$gt": 4}}}, False), ({"nested.lang": "en"}, True), ({"nested.year": {"$gte": 2021}}, False),
    ({"$and": [{"n": 5}, {"s": "Hello World"}]}, True), ({"$or": [{"n": 1}, {"s": "x"}]}, False),
    ({"$nor": [{"n": 1}, {"s": "x"}]}, True), ({"$not": {"n": 5}}, False), ({"n": 5, "s": "nope"}, False),
])
def test_operators(spec, expected):
    assert match(spec) is expected


@pytest.mark.parametrize("spec", [{"missing": 1}, {"missing": {"$gt": 0}}, {"missing": {"$in": [1]}},
                                  {"missing": {"$contains": "a"}}, {"none": {"$gt": 0}}])
def test_missing_or_null_field_matches_no_positive_operator(spec):
    assert match(spec) is False


@pytest.mark.parametrize("spec", [{"missing": {"$ne": 1}}, {"missing": {"$nin": [1]}}])
def test_missing_field_matches_negative_operators(spec):
    assert match(spec) is True


def test_type_mismatch_is_no_match_not_an_error():
    assert match({"s": {"$gt": 3}}) is False
    assert match({"n": {"$text_match": "5"}}) is False


@pytest.mark.parametrize("spec,error,text", [
    ({"n": {"$regex": "x"}}, ValueError, "unknown operator"),
    ({"$xor": []}, ValueError, "unknown top-level"),
    ({"$and": []}, ValueError, "non-empty list"),
    ({"$and": [1]}, TypeError, "expected a dict"),
    ({"n": {"$in": 5}}, ValueError, r"\$in needs a list"),
    ({"n": {"gt": 5}}, ValueError, "must use \\$-operators"),
    ({"s": {"$text_match": 3}}, ValueError, "needs a string"),
    ("n == 5", TypeError, "filter must be a dict or a callable"),
])
def test_bad_filters_raise_at_compile_time(spec, error, text):
    with pytest.raises(error, match=text):
        compile_filter(spec)


def test_callable_and_empty_filters():
    assert compile_filter(lambda m: m["n"] > 3)(DOC) is True
    assert compile_filter(None) is None and compile_filter({}) is None


def test_cache_key_is_order_independent_and_none_for_callables():
    assert filter_cache_key({"a": 1, "b": 2}) == filter_cache_key({"b": 2, "a": 1})
    assert filter_cache_key(lambda m: True) is None


values = st.one_of(st.integers(-3, 3), st.sampled_from(["x", "y"]), st.none())
docs = st.dictionaries(st.sampled_from(["a", "b"]), values, max_size=2)
leaves = st.one_of(
    st.builds(lambda k, v: {k: v}, st.sampled_from(["a", "b"]), st.integers(-3, 3)),
    st.builds(lambda k, op, v: {k: {op: v}}, st.sampled_from(["a", "b"]),
              st.sampled_from(["$gt", "$lte", "$ne"]), st.integers(-3, 3)),
    st.builds(lambda k, v: {k: {"$in": v}}, st.sampled_from(["a", "b"]), st.lists(values, max_size=3)),
)


@settings(max_examples=200, deadline=None)
@given(docs, leaves, leaves)
def test_boolean_algebra(doc, f, g):
    pf, pg = compile_filter(f)(doc), compile_filter(g)(doc)
    assert compile_filter({"$and": [f, g]})(doc) == (pf and pg)
    assert compile_filter({"$or": [f, g]})(doc) == (pf or pg)
    assert compile_filter({"$nor": [f, g]})(doc) == (not (pf or pg))
    assert compile_filter({"$not": f})(doc) == (not pf)
