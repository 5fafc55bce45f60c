"""Metadata filters in the dict syntax of MongoDB and Chroma, compiled to parameterised SQLite.

    {"lang": "en"}                                   # equality (same as {"lang": {"$eq": "en"}})
    {"year": {"$gte": 2020, "$lt": 2024}}            # several operators on one field: all must hold
    {"date": {"$gte": "2024-01-01"}}                 # ISO dates are strings: they compare in date order
    {"tags": {"$in": ["faq", "howto"]}}              # a list field matches when any element does
    {"$or": [{"lang": "en"}, {"lang": "fr"}]}
    {"$and": [{"tenant": "acme"}, {"$not": {"status": "draft"}}]}
    {"author.name": "Ada"}                           # a dot reaches into nested objects

Semantics (the same on every backend):

* A field's *values* are its value, or the elements of a list (and, for a list of objects, a dotted
  field reaches into each element). A comparison holds when some value satisfies it.
* Types are strict: a number (``int`` or ``float``) matches only numbers, a string only strings, a
  ``bool`` only booleans (``True`` is not ``1``). Strings compare by code point (ISO-8601 dates and
  times of one format compare chronologically).
* ``$eq $gt $gte $lt $lte $in``: some value of the field satisfies it; a missing field matches nothing.
* ``$ne`` and ``$nin``: the field exists and none of its values is equal / in the list (a document
  without the field does not match: a filter on an unknown field matches nothing).
* ``$exists: true / false``: the field is present (with any value, ``null`` included) or absent.
* ``$and`` / ``$or``: a non-empty list of filters; several keys in one dict are an implicit ``$and``;
  ``{}`` matches every document. ``$not``: every document the inner filter does not match.

Storage: each document's metadata is flattened into rows ``(doc_key, field, kind, value)`` of the
``fields`` table (indexed on ``(field, kind, value)``), so a selective filter reads only the rows it
matches, and a filter compiles to a compound ``SELECT`` of document keys. Filter values and field
names reach SQLite only as bound parameters, never as SQL text.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from lightcol.errors import FilterError

__all__ = ["compile_where", "flatten", "FIELDS_SCHEMA"]

#: kinds of a flattened value: JSON null, boolean, number, string; PRESENT marks a field whose value
#: is an object or an empty list (it exists but holds no scalar)
NULL, BOOL, NUMBER, TEXT, PRESENT = 0, 1, 2, 3, 4

FIELDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS fields (
    doc_key INTEGER NOT NULL REFERENCES documents(key) ON DELETE CASCADE,
    field TEXT NOT NULL,                -- dotted path: "author.name"
    kind INTEGER NOT NULL,              -- 0 null, 1 bool, 2 number, 3 text, 4 object or empty list
    value                               -- the scalar (bool as 0/1), NULL for kinds 0 and 4
);
CREATE INDEX IF NOT EXISTS fields_value ON fields(field, kind, value);
CREATE INDEX IF NOT EXISTS fields_doc ON fields(doc_key);
"""

_COMPARE = {"$eq": "=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_OPERATORS = {*_COMPARE, "$ne", "$in", "$nin", "$exists"}
_LOGICAL = {"$and", "$or", "$not"}
_MAX_DEPTH = 64


def _kind(value: Any) -> int:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, (int, float)):
        return NUMBER
    if isinstance(value, str):
        return TEXT
    raise TypeError(type(value).__name__)


def flatten(metadata: Mapping[str, Any] | None) -> Iterator[tuple[str, int, Any]]:
    """``(field, kind, value)`` rows of one document's metadata (see the module doc)."""
    if not metadata:
        return
    stack: list[tuple[str, Any]] = [(str(k), v) for k, v in metadata.items()]
    while stack:
        field, value = stack.pop()
        if isinstance(value, Mapping):
            yield field, PRESENT, None
            stack.extend((f"{field}.{k}", v) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            scalars = [v for v in value if not isinstance(v, (Mapping, list, tuple))]
            for v in scalars:
                yield field, _kind(v), _stored(v)
            if not scalars:
                yield field, PRESENT, None
            for v in value:
                if isinstance(v, Mapping):
                    stack.extend((f"{field}.{k}", x) for k, x in v.items())
                elif isinstance(v, (list, tuple)):  # a list in a list: its elements are the field's too
                    stack.append((field, v))
        else:
            yield field, _kind(value), _stored(value)


def _stored(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and not -(1 << 63) <= value < (1 << 63):
        return float(value)  # beyond SQLite's integers: kept as the nearest double
    return value


# -- compiling -------------------------------------------------------------------------------------
class _Compiler:
    def __init__(self, fields: str, documents: str) -> None:
        self.fields, self.documents = fields, documents
        self.params: list[Any] = []

    def where(self, where: Any, at: str, depth: int = 0) -> str:
        """SQL selecting the keys of the documents ``where`` matches (a compound SELECT)."""
        if depth > _MAX_DEPTH:
            raise FilterError(f"{at}: the filter is nested more than {_MAX_DEPTH} levels deep.")
        if not isinstance(where, Mapping):
            raise FilterError(f"{at} must be a dict (a filter), got {type(where).__name__}: {where!r}.")
        if not where:
            return f"SELECT key FROM {self.documents}"
        parts = []
        for key, value in where.items():
            if not isinstance(key, str):
                raise FilterError(f"{at} has the key {key!r} ({type(key).__name__}); keys must be field names or "
                                  "$and, $or, $not.")
            here = f"{at}[{key!r}]"
            if key in ("$and", "$or"):
                if not isinstance(value, (list, tuple)) or not value:
                    raise FilterError(f"{here} must be a non-empty list of filters, got {value!r}.")
                subs = [self.where(v, f"{here}[{i}]", depth + 1) for i, v in enumerate(value)]
                joiner = " INTERSECT " if key == "$and" else " UNION "
                parts.append(joiner.join(f"SELECT * FROM ({s})" for s in subs))
            elif key == "$not":
                inner = self.where(value, here, depth + 1)
                parts.append(f"SELECT key FROM {self.documents} EXCEPT SELECT * FROM ({inner})")
            elif key.startswith("$"):
                hint = " (an operator belongs inside a field: {\"year\": {\"$gte\": 2020}})" if key in _OPERATORS else ""
                raise FilterError(f"{at}: unknown logical operator {key!r}{hint}; use $and, $or or $not.")
            else:
                parts.append(self.field(key, value, here))
        if len(parts) == 1:
            return parts[0]
        return " INTERSECT ".join(f"SELECT * FROM ({p})" for p in parts)

    def field(self, field: str, condition: Any, at: str) -> str:
        if not field or any(not part for part in field.split(".")):
            raise FilterError(f"{at}: {field!r} is not a field name (empty, or an empty part between dots).")
        if isinstance(condition, Mapping):
            if not condition:
                raise FilterError(f"{at} is an empty dict; give a value or operators such as {{'$eq': ...}}.")
            if not all(isinstance(op, str) and op.startswith("$") for op in condition):
                raise FilterError(f"{at} is a dict without operators ({condition!r}); to match a nested field use "
                                  f"a dotted name such as '{field}.<key>', and operators start with '$'.")
            parts = [self.operator(field, op, v, f"{at}[{op!r}]") for op, v in condition.items()]
            return parts[0] if len(parts) == 1 else " INTERSECT ".join(f"SELECT * FROM ({p})" for p in parts)
        return self.operator(field, "$eq", condition, at)

    def operator(self, field: str, op: str, value: Any, at: str) -> str:
        rows = f"SELECT DISTINCT doc_key FROM {self.fields} WHERE field = ?"
        if op in _COMPARE:
            kind = self.scalar(value, at, ranged=op != "$eq")
            self.params += [field, kind, _stored(value)]
            return f"{rows} AND kind = ? AND value {_COMPARE[op]} ?"
        if op in ("$in", "$nin"):
            if not isinstance(value, (list, tuple)):
                raise FilterError(f"{at} must be a list of values, got {type(value).__name__}: {value!r}.")
            by_kind: dict[int, list[Any]] = {}
            for i, v in enumerate(value):
                by_kind.setdefault(self.scalar(v, f"{at}[{i}]"), []).append(_stored(v))
            cond, cond_params = [], []
            for kind, vals in by_kind.items():
                cond.append(f"(kind = ? AND value IN ({','.join('?' * len(vals))}))")
                cond_params += [kind, *vals]
            matching = f"{rows} AND ({' OR '.join(cond) or '0'})"
            if op == "$in":
                self.params += [field, *cond_params]
                return matching
            self.params += [field, field, *cond_params]
            return f"{rows} EXCEPT {matching}"
        if op == "$ne":
            kind = self.scalar(value, at)
            self.params += [field, field, kind, _stored(value)]
            return f"{rows} EXCEPT {rows} AND kind = ? AND value = ?"
        if op == "$exists":
            if not isinstance(value, bool):
                raise FilterError(f"{at} must be true or false, got {value!r}.")
            self.params.append(field)
            return rows if value else f"SELECT key FROM {self.documents} EXCEPT {rows}"
        if op in _LOGICAL:
            raise FilterError(f"{at}: {op} combines filters and belongs at the top of a filter, not inside field "
                              f"{field!r} (write {{{op!r}: [{{{field!r}: ...}}, ...]}}).")
        raise FilterError(f"{at}: unknown operator {op!r}; use one of {', '.join(sorted(_OPERATORS))}.")

    @staticmethod
    def scalar(value: Any, at: str, ranged: bool = False) -> int:
        """The kind of a filter value (raising :class:`FilterError` for anything but a finite scalar)."""
        if isinstance(value, bool):
            if ranged:
                raise FilterError(f"{at}: booleans cannot be ordered; compare numbers or strings.")
            return BOOL
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise FilterError(f"{at}: {value!r} is not a finite number.")
            if isinstance(value, int) and not -(1 << 63) <= value < (1 << 63):
                raise FilterError(f"{at}: {value} does not fit in 64 bits.")
            return NUMBER
        if isinstance(value, str):
            return TEXT
        if value is None:
            raise FilterError(f"{at}: None is not a filter value; use {{'$exists': true}} or {{'$exists': false}}.")
        if isinstance(value, (list, tuple)):
            raise FilterError(f"{at}: a list is not a value to compare with; use {{'$in': [...]}} to match any of "
                              "several values.")
        raise FilterError(f"{at}: {type(value).__name__} {value!r} is not a filter value; use str, int, float or bool "
                          "(dates as ISO strings).")


def compile_where(where: Mapping[str, Any], fields: str = "fields", documents: str = "documents") -> tuple[str, list[Any]]:
    """``(sql, params)``: a SELECT of the ``documents.key`` values that ``where`` matches.

    :raises FilterError: ``where`` is malformed (the message says where and why).
    """
    c = _Compiler(fields, documents)
    sql = c.where(where, "where")
    return sql, c.params
