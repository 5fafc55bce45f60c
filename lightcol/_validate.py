"""Argument checks shared by the public API: one message style, one exception type."""

from __future__ import annotations

import numbers
from typing import Any

from lightcol.errors import ArgumentError


def integer(name: str, value: Any, *, minimum: int | None = None, allow_none: bool = False) -> int | None:
    """``value`` as an ``int`` (an ``int`` or NumPy integer, never ``bool``/``float``/``str``), ``>= minimum``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentError(f"{name} must be an int, got {value!r} ({type(value).__name__}).")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ArgumentError(f"{name} must be an int >= {minimum}, got {v}.")
    return v


def k(value: Any) -> int:
    """A result count: an int >= 0."""
    return integer("k", value, minimum=0)  # type: ignore[return-value]
