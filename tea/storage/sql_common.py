"""SQL fragments every backend's dialect writes the same way."""
from __future__ import annotations

import math


def at_most(column: str, le: float) -> str:
    """``column <= le`` (+inf: any value; ``count(column)`` leaves NULLs out)."""
    return "TRUE" if le == math.inf else f"{column} <= {float(le)!r}"

