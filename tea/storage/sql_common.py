"""SQL fragments every backend's dialect writes the same way."""
from __future__ import annotations

import math


def at_most(column: str, le: float) -> str:
    """``column <= le`` (+inf: any value; ``count(column)`` leaves NULLs out)."""
    return "TRUE" if le == math.inf else f"{column} <= {float(le)!r}"


def fixed_bucket(ts_us: str, width_us: int, origin_us: int) -> str:
    """Start of the ``width_us`` bucket aligned on ``origin_us`` holding the µs value ``ts_us``, floored also
    before the origin (``%`` keeps the dividend's sign). Not for PostgreSQL, where ``%`` is psycopg's."""
    width, origin = int(width_us), int(origin_us)
    return f"({ts_us} - ((({ts_us} - ({origin})) % {width}) + {width}) % {width})"
