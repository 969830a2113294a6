"""The embedded default backend: one DuckDB file under the data directory.

``store`` is the backend (events, reads, retention, export), ``schema`` its tables and migrations,
``stores`` the small stores (tokens, audit, dead letters, documents and records, projections),
``load`` and ``writes`` the set-based writes, ``sql`` the query compiler, ``signals`` metric points and
log records, ``memory`` the memory limit and cache trimming."""
from tea.storage.duckdb.store import (COLUMN_TYPES, EXPORT_COLUMNS, INSERT_EXPRS, JSON_COLUMNS, MIGRATIONS,
                                      ROW_GROUP_SIZE, DuckDBStorage, connect, sql_string)

__all__ = ["COLUMN_TYPES", "EXPORT_COLUMNS", "INSERT_EXPRS", "JSON_COLUMNS", "MIGRATIONS", "ROW_GROUP_SIZE",
           "DuckDBStorage", "connect", "sql_string"]
