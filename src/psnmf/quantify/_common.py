"""Checks and constants shared by the quantification modules."""

from __future__ import annotations

import math
from typing import Any

#: Elements whose element density is that of a gas (the density estimate fails for them).
GASEOUS = frozenset({"H", "He", "N", "O", "F", "Ne", "Cl", "Ar", "Kr", "Xe", "Rn"})


def positive_or_none(name: str, value: Any, fix: str, allow_zero: bool = False) -> float | None:
    """``value`` as a float, checked finite and > 0 (>= 0 with ``allow_zero``); None stays
    None. The error names the input (``name``) and the fix."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}; {fix}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}; {fix}")
    return v
