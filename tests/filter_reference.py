"""A brute-force reference of lightcol's metadata filter semantics, in plain Python (for the tests)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "text"
    return "other"


def values(metadata: Any, field: str) -> list[Any] | None:
    """The values of a dotted ``field`` (list elements flattened; objects reached into), ``None`` if absent."""
    current: list[Any] = [metadata]
    for part in field.split("."):
        nxt: list[Any] = []
        found = False
        for obj in current:
            for o in obj if isinstance(obj, list) else [obj]:
                if isinstance(o, Mapping) and part in o:
                    found = True
                    nxt.append(o[part])
        if not found:
            return None
        current = nxt
    out: list[Any] = []

    def add(v: Any) -> None:
        if isinstance(v, list):
            for x in v:
                add(x)
        elif not isinstance(v, Mapping):
            out.append(v)

    for v in current:
        add(v)
    return out


def _eq(v: Any, a: Any) -> bool:
    return v is not None and _kind(v) == _kind(a) and v == a


def _holds(op: str, arg: Any, vals: list[Any] | None) -> bool:
    if op == "$exists":
        return (vals is not None) == arg
    if vals is None:
        return False
    if op == "$ne":
        return not any(_eq(v, arg) for v in vals)
    if op == "$in":
        return any(_eq(v, a) for v in vals for a in arg)
    if op == "$nin":
        return not any(_eq(v, a) for v in vals for a in arg)
    cmp = {"$eq": lambda v: v == arg, "$gt": lambda v: v > arg, "$gte": lambda v: v >= arg,
           "$lt": lambda v: v < arg, "$lte": lambda v: v <= arg}[op]
    return any(v is not None and _kind(v) == _kind(arg) and cmp(v) for v in vals)


def matches(where: Mapping[str, Any], metadata: Mapping[str, Any] | None) -> bool:
    meta = metadata or {}
    for key, cond in where.items():
        if key == "$and":
            ok = all(matches(w, meta) for w in cond)
        elif key == "$or":
            ok = any(matches(w, meta) for w in cond)
        elif key == "$not":
            ok = not matches(cond, meta)
        else:
            vals = values(meta, key)
            ops = cond if isinstance(cond, Mapping) else {"$eq": cond}
            ok = all(_holds(op, a, vals) for op, a in ops.items())
        if not ok:
            return False
    return True
