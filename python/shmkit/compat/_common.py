"""Argument checks the compat modules share."""
from __future__ import annotations

from typing import Any


def positive_int(what: str, value: Any) -> int:
    """``value`` if it is an int > 0, else ``ValueError``/``TypeError``
    naming ``what`` (shared by the compat modules)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{what} must be positive, not {value}")
    return value
