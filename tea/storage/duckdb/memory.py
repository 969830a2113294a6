"""TEA's default DuckDB memory limit: a share of the memory this process may use, within bounds.

DuckDB's own default is 80 % of RAM, and it keeps every block it writes or reads cached until that
limit forces blocks out: under a steady write load the server's RSS grows with the data for as long as
it runs (10 minutes at 20 000 events/s: 201 → 719 MiB and rising). A bounded cache costs little: the
operating system's page cache keeps the file's blocks anyway, and DuckDB spills what a query cannot
hold (to ``<file>.tmp``) instead of failing.
"""
from __future__ import annotations

import logging
import os
import threading

import duckdb

log = logging.getLogger(__name__)

MiB = 1024 * 1024
SHARE = 1 / 8              # of the memory available to TEA
FLOOR_BYTES = 256 * MiB    # what one 200 000-event write batch needs, staged, without spilling
CEILING_BYTES = 1024 * MiB
CACHE_BYTES = 64 * MiB     # DuckDB's cache of table blocks kept past a write or during an export (duckdb.cache_bytes)


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


def trim_cache(cur: duckdb.DuckDBPyConnection, cache_bytes: int, limit_setting: str, lock: threading.Lock) -> None:
    """Evict cached table blocks down to half of ``cache_bytes``, if there are more than it.

    DuckDB has no limit of its own for its cache of table blocks: it keeps every block it read or wrote
    until ``memory_limit`` forces some out. Lowering ``memory_limit`` is its one way to evict: it drops
    unpinned blocks (cached table blocks need no write) and refuses when it cannot. Only the excess cache
    is asked for, so a concurrent query loses no memory it holds; ``limit_setting`` is restored at once."""
    with lock:
        usage = dict(cur.execute("SELECT tag, memory_usage_bytes FROM duckdb_memory()").fetchall())
        cached = usage.get("BASE_TABLE", 0)
        if cached <= cache_bytes:
            return
        target = sum(usage.values()) - (cached - cache_bytes // 2)
        try:
            cur.execute(f"SET memory_limit = '{max(target, 1)}B'")
        except duckdb.Error as exc:  # blocks pinned by running queries: try again next time
            log.debug("duckdb: block cache not trimmed: %s", exc)
        finally:
            cur.execute("SET memory_limit = '" + limit_setting.replace("'", "''") + "'")
