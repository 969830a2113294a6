"""The embedded default backend: one DuckDB file under the data directory.

``store`` is the backend (events: writes, reads, retention), ``schema`` its tables and migrations,
``analytics`` aggregates and traces, ``export`` Parquet exports,
``stores`` the small stores (tokens, audit, dead letters, documents and records, projections),
``load`` and ``writes`` the set-based writes, ``sql`` the query compiler, ``rollup`` the Prometheus API's
per-minute pre-aggregates, ``signals`` metric points and log records, ``memory`` the memory limit and cache
trimming."""
from tea.storage.duckdb.export import EXPORT_COLUMNS
from tea.storage.duckdb.load import sql_string
from tea.storage.duckdb.schema import COLUMN_TYPES, MIGRATIONS
from tea.storage.duckdb.store import INSERT_EXPRS, JSON_COLUMNS, ROW_GROUP_SIZE, DuckDBStorage, connect

__all__ = ["COLUMN_TYPES", "EXPORT_COLUMNS", "INSERT_EXPRS", "JSON_COLUMNS", "MIGRATIONS", "ROW_GROUP_SIZE",
           "DuckDBStorage", "connect", "sql_string"]
