"""Set-based writes into PostgreSQL: NDJSON lines COPied as they are into a temporary table, then typed
and inserted in one statement."""
from __future__ import annotations

from typing import Any

import msgspec
import psycopg

# CSV with quote and delimiter bytes JSON never contains raw: each NDJSON line arrives untouched
_COPY_LINES = "COPY tea_lines (line) FROM STDIN (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"
_COPY_CHUNK = 1 << 20
lines = msgspec.json.Encoder()


async def copy_lines(conn: psycopg.AsyncConnection[Any], chunks: list[bytes]) -> None:
    """COPY NDJSON ``chunks`` (whole lines in all) into the transaction's temporary ``tea_lines (n, line)``, one
    line a row, as is, at most ``_COPY_CHUNK`` bytes a write."""
    await conn.execute("CREATE TEMP TABLE tea_lines (n bigserial, line text) ON COMMIT DROP")
    async with conn.cursor().copy(_COPY_LINES) as copy:
        for chunk in chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), _COPY_CHUNK):
                await copy.write(view[start:start + _COPY_CHUNK])


def from_lines(table: str, columns: tuple[str, ...], **exprs: str) -> str:
    """``INSERT INTO table (columns) SELECT …`` of the staged lines, each typed as a row of ``table`` (``r``;
    ``exprs`` replace a column's value), in the order of the lines."""
    names = ", ".join(f'"{c}"' for c in columns)
    values = ", ".join(exprs.get(c, f'r."{c}"') for c in columns)
    return (f"INSERT INTO {table} ({names}) SELECT {values} FROM tea_lines l "
            f"CROSS JOIN LATERAL json_populate_record(NULL::{table}, l.line::json) AS r ORDER BY l.n")
