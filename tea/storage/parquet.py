"""Parquet from canonical NDJSON, for backends that cannot write Parquet themselves (``GET /v1/export``)."""
from __future__ import annotations

import duckdb

from tea.storage.duckdb import EXPORT_COLUMNS, INSERT_EXPRS, JSON_COLUMNS, sql_string
from tea.types import COLUMNS


def ndjson_to_parquet(source: str, target: str) -> None:
    """The same columns and types as DuckDB's own Parquet export, through an in-memory DuckDB."""
    stored = ", ".join(f"{expr} AS {name}" for name, expr in zip(COLUMNS, INSERT_EXPRS))
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT {EXPORT_COLUMNS} FROM (SELECT {stored} FROM read_json({sql_string(source)}, "
                    f"format='newline_delimited', columns={JSON_COLUMNS}, maximum_object_size=268435456) b)) "
                    f"TO {sql_string(target)} (FORMAT parquet, COMPRESSION zstd)")
