"""(c) DuckDB's own bulk-load rate for the benchmark's events, with no TEA involved.

The table comes from TEA's own first migration; the ``read_json`` column map is derived from
that table (timestamps read as integer µs, like TEA's buffer NDJSON), so nothing is copied.
"""
from __future__ import annotations

import os
import tempfile
import time

import duckdb

from bench.events import base_events, now_us, stored_ndjson
from tea.storage.duckdb import MIGRATIONS

BATCH_EVENTS = 50_000


def _columns(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    rows = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                       "WHERE table_name = 'events' ORDER BY ordinal_position").fetchall()
    return [(name, kind) for name, kind in rows]


def insert_sql(columns: list[tuple[str, str]], path: str) -> str:
    """``INSERT INTO events SELECT ... FROM read_json(path, ...)`` for the table's columns."""
    json_types = {name: "BIGINT" if kind == "TIMESTAMP" else kind for name, kind in columns}
    column_map = "{" + ", ".join(f"{name}: '{kind}'" for name, kind in json_types.items()) + "}"
    values = []
    for name, kind in columns:
        if kind == "TIMESTAMP":
            values.append(f"make_timestamp({name})")
        elif name == "tags":
            values.append("COALESCE(tags, [])")
        elif name == "attributes":
            values.append("COALESCE(attributes, '{}')")
        else:
            values.append(name)
    return (f"INSERT INTO events SELECT {', '.join(values)} FROM read_json('{path}', "
            f"format='newline_delimited', columns={column_map})")


def bulk_load(total_events: int, workdir: str | None = None) -> dict:
    """Load ``total_events`` into a fresh DuckDB file, ``BATCH_EVENTS`` per INSERT; return the rate."""
    base = base_events(BATCH_EVENTS)
    with tempfile.TemporaryDirectory(prefix="tea-bench-duck-", dir=workdir) as tmp:
        con = duckdb.connect(os.path.join(tmp, "baseline.duckdb"), config={"preserve_insertion_order": False})
        con.execute(MIGRATIONS[0])
        path = os.path.join(tmp, "batch.ndjson")
        sql = insert_sql(_columns(con), path)
        timed = 0.0
        loaded = 0
        for _ in range(max(1, total_events // BATCH_EVENTS)):
            data = stored_ndjson(base, now_us())  # generating the NDJSON is not timed
            started = time.perf_counter()
            with open(path, "wb") as fh:
                fh.write(data)
            loaded += con.execute(sql).fetchone()[0]
            timed += time.perf_counter() - started
        stored = con.execute("SELECT count(*) FROM events").fetchone()[0]
        con.close()
    return {"rows": loaded, "rows_in_table": stored, "seconds": timed, "batch_events": BATCH_EVENTS,
            "rows_per_s": loaded / timed if timed else 0.0}


if __name__ == "__main__":
    print(bulk_load(200_000))
