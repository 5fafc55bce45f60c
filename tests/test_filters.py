"""Metadata filters: the SQL compiler against a brute-force Python reference, hostile values, errors."""

from __future__ import annotations

import json
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightcol import FilterError
from lightcol.filters import FIELDS_SCHEMA, compile_where, flatten

from filter_reference import matches

FIELDS = ["lang", "year", "score", "tags", "flag", "date", "author.name", "author.age", "missing"]
STRINGS = ["en", "fr", "de", "", "2024-01-31", "2023-12-01T10:00:00", "x'y", 'a"b', "é"]
scalars = st.one_of(st.integers(-3, 3), st.sampled_from([0.5, -1.5, 2.0]), st.sampled_from(STRINGS), st.booleans())
values = st.one_of(scalars, st.none(), st.lists(scalars, max_size=3))
metadata = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={
        "lang": values, "year": values, "score": values, "tags": values, "flag": values, "date": values,
        "author": st.one_of(st.fixed_dictionaries({}, optional={"name": values, "age": values}),
                            st.lists(st.fixed_dictionaries({}, optional={"name": scalars}), max_size=2)),
    }),
)


def _leaf():
    field = st.sampled_from(FIELDS)
    ordered = st.one_of(st.integers(-3, 3), st.sampled_from([0.5, -1.5]), st.sampled_from(STRINGS))
    op = st.one_of(
        scalars,  # implicit $eq
        st.fixed_dictionaries({"$eq": scalars}), st.fixed_dictionaries({"$ne": scalars}),
        st.fixed_dictionaries({"$gt": ordered}), st.fixed_dictionaries({"$gte": ordered}),
        st.fixed_dictionaries({"$lt": ordered}), st.fixed_dictionaries({"$lte": ordered}),
        st.fixed_dictionaries({"$gte": ordered, "$lt": ordered}),
        st.fixed_dictionaries({"$in": st.lists(scalars, max_size=3)}),
        st.fixed_dictionaries({"$nin": st.lists(scalars, max_size=3)}),
        st.fixed_dictionaries({"$exists": st.booleans()}),
    )
    return st.builds(lambda f, o: {f: o}, field, op)


filters = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"$and": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"$or": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"$not": x}, inner),
        st.builds(lambda a, b: {**a, **b}, inner, inner),  # several keys: an implicit $and
    ),
    max_leaves=6,
)


def _database(metas):
    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TABLE documents (key INTEGER PRIMARY KEY, document_id TEXT, text TEXT, metadata TEXT)")
    conn.executescript(FIELDS_SCHEMA)
    for key, m in enumerate(metas):
        conn.execute("INSERT INTO documents VALUES (?, ?, '', ?)", (key, str(key), None if m is None else json.dumps(m)))
        conn.executemany("INSERT INTO fields VALUES (?, ?, ?, ?)", [(key, *row) for row in flatten(m)])
    return conn


def _selected(conn, where):
    sql, params = compile_where(where)
    assert all(isinstance(p, (str, int, float)) for p in params)
    return sorted(r[0] for r in conn.execute(sql, params))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metas=st.lists(metadata, min_size=1, max_size=25), where=filters)
def test_filters_select_what_the_reference_selects(metas, where) -> None:
    # metadata as stored: a JSON round trip
    metas = [None if m is None else json.loads(json.dumps(m)) for m in metas]
    conn = _database(metas)
    expected = [i for i, m in enumerate(metas) if matches(where, m)]
    assert _selected(conn, where) == expected


def test_semantics_by_example() -> None:
    metas = [
        {"lang": "en", "year": 2020, "tags": ["a", "b"], "flag": True, "date": "2024-01-31"},
        {"lang": "fr", "year": 2023.0, "tags": [], "flag": 1, "author": {"name": "Ada"}},
        {"lang": None, "year": "2021", "author": [{"name": "Bob"}, {"name": "Ada"}]},
        None,
    ]
    conn = _database(metas)
    assert _selected(conn, {"lang": "en"}) == [0]
    assert _selected(conn, {"year": {"$gte": 2020, "$lt": 2023}}) == [0]  # "2021" is a string, not a number
    assert _selected(conn, {"year": 2023}) == [1]  # 2023 == 2023.0
    assert _selected(conn, {"flag": True}) == [0] and _selected(conn, {"flag": 1}) == [1]  # True is not 1
    assert _selected(conn, {"tags": "b"}) == [0]  # a list holding the value
    assert _selected(conn, {"tags": {"$exists": True}}) == [0, 1]
    assert _selected(conn, {"lang": {"$exists": True}}) == [0, 1, 2]  # null is present
    assert _selected(conn, {"lang": {"$ne": "en"}}) == [1, 2]  # needs the field
    assert _selected(conn, {"$not": {"lang": "en"}}) == [1, 2, 3]
    assert _selected(conn, {"lang": {"$nin": ["en", "de"]}}) == [1, 2]
    assert _selected(conn, {"date": {"$gte": "2024-01-01", "$lte": "2024-12-31"}}) == [0]
    assert _selected(conn, {"author.name": "Ada"}) == [1, 2]
    assert _selected(conn, {"$or": [{"lang": "fr"}, {"year": "2021"}]}) == [1, 2]
    assert _selected(conn, {"nope": "x"}) == [] and _selected(conn, {"nope": {"$ne": "x"}}) == []
    assert _selected(conn, {}) == [0, 1, 2, 3]
    assert _selected(conn, {"lang": {"$in": []}}) == []


HOSTILE = [
    "'; DROP TABLE documents; --",
    '" OR 1=1 --',
    "x') UNION SELECT key FROM documents --",
    "SELECT * FROM fields",
    "%_*?[]\\",
    "\x00null",
    "Robert'); DELETE FROM fields; --",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_and_field_names_are_data(value) -> None:
    metas = [{"name": value, value: 1}, {"name": "plain", "other": 2}]
    conn = _database(metas)
    assert _selected(conn, {"name": value}) == [0]
    assert _selected(conn, {"name": {"$in": [value, "zzz"]}}) == [0]
    assert _selected(conn, {"name": {"$ne": value}}) == [1]
    assert _selected(conn, {"name": {"$gte": value}}) == sorted(i for i, m in enumerate(metas) if m["name"] >= value)
    if "." not in value:
        assert _selected(conn, {value: 1}) == [0] and _selected(conn, {value: {"$exists": False}}) == [1]
    assert conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 2  # nothing dropped or deleted
    assert conn.execute("SELECT COUNT(*) FROM fields").fetchone()[0] == 4


@pytest.mark.parametrize(("where", "message"), [
    ([{"a": 1}], r"where must be a dict"),
    ({"a": {"$regex": "x"}}, r"where\['a'\]\['\$regex'\]: unknown operator '\$regex'"),
    ({"$nor": [{"a": 1}]}, r"unknown logical operator '\$nor'"),
    ({"$gte": 3}, r"an operator belongs inside a field"),
    ({"$and": []}, r"where\['\$and'\] must be a non-empty list"),
    ({"$or": {"a": 1}}, r"must be a non-empty list"),
    ({"$not": [{"a": 1}]}, r"where\['\$not'\] must be a dict"),
    ({"a": {"$in": "x"}}, r"where\['a'\]\['\$in'\] must be a list"),
    ({"a": {"$gt": True}}, r"booleans cannot be ordered"),
    ({"a": {"$gt": [1]}}, r"use \{'\$in'"),
    ({"a": None}, r"None is not a filter value; use \{'\$exists'"),
    ({"a": [1, 2]}, r"use \{'\$in'"),
    ({"a": {"b": 1}}, r"dict without operators .* 'a.<key>'"),
    ({"a": {}}, r"where\['a'\] is an empty dict"),
    ({"a": float("nan")}, r"not a finite number"),
    ({"a": 1 << 70}, r"does not fit in 64 bits"),
    ({"a": {"$exists": 1}}, r"must be true or false"),
    ({"a..b": 1}, r"not a field name"),
    ({"": 1}, r"not a field name"),
    ({1: "x"}, r"keys must be field names"),
    ({"a": {"$and": [{"b": 1}]}}, r"belongs at the top of a filter"),
    ({"a": {"$in": [1, {"x": 2}]}}, r"where\['a'\]\['\$in'\]\[1\]: dict"),
    ({"$and": [{"a": 1}, {"b": {"$lt": object()}}]}, r"where\['\$and'\]\[1\]\['b'\]\['\$lt'\]: object"),
])
def test_malformed_filters_raise_precise_errors(where, message) -> None:
    with pytest.raises(FilterError, match=message):
        compile_where(where)


def test_metadata_integers_beyond_64_bits_are_stored_as_doubles() -> None:
    conn = _database([{"big": 1 << 70}, {"big": 5}])
    assert _selected(conn, {"big": {"$gt": 1 << 62}}) == [0]
