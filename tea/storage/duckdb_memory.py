"""TEA's default DuckDB memory limit: a share of the memory this process may use, within bounds.

DuckDB's own default is 80 % of RAM, and it keeps every block it writes or reads cached until that
limit forces blocks out: under a steady write load the server's RSS grows with the data for as long as
it runs (10 minutes at 20 000 events/s: 201 → 719 MiB and rising). A bounded cache costs little: the
operating system's page cache keeps the file's blocks anyway, and DuckDB spills what a query cannot
hold (to ``<file>.tmp``) instead of failing.
"""
from __future__ import annotations

import os

MiB = 1024 * 1024
SHARE = 1 / 8              # of the memory available to TEA
FLOOR_BYTES = 256 * MiB    # what one 200 000-event write batch needs, staged, without spilling
CEILING_BYTES = 1024 * MiB


def available_bytes() -> int | None:
    """Physical memory, or the cgroup's limit when that is lower (a container); None when unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def default_memory_limit(available: int | None = None) -> str:
    """``SHARE`` of ``available`` bytes (default: this machine's), between ``FLOOR_BYTES`` and ``CEILING_BYTES``,
    as DuckDB reads a size (whole MiB)."""
    available = available_bytes() if available is None else available
    share = int(available * SHARE) if available else CEILING_BYTES
    return f"{min(max(share, FLOOR_BYTES), CEILING_BYTES) // MiB}MiB"
