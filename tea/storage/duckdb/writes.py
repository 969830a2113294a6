"""What DuckDB writes besides events — projection rows, audit, records, dead letters, documents,
tokens — each one staged bulk load (tea.storage.duckdb.load) in one transaction, on the writer thread."""
from __future__ import annotations

from typing import Any

import duckdb

from tea.errors import StorageDataError, StorageError
from tea.storage.duckdb.load import (STAGED, STAGED_SET, Match, Shape, Target, encode, insert_new, quoted,
                                    replace_keyed, stage, stage_sets, transaction)
from tea.storage.projections import IDENTITY, SQL_TYPES, TABLES, Row, distinct_rows, row_identity
from tea.storage.rows import TOKEN_COLUMNS
from tea.types import AuditRecord, DeadLetter, TokenRecord

_TIMES = ("timestamp", "created_at")  # TIMESTAMP columns of the projections, staged as integer µs
PROJECTIONS: dict[str, Shape] = {
    table: Shape.of({c: "BIGINT" if c in _TIMES else SQL_TYPES[c] for c in columns},
                    **{c: f"make_timestamp(b.{quoted(c)})" for c in _TIMES})
    for table, columns in TABLES.items()}
# every projection table's columns at once (stage_sets), and what a table takes of them
ALL_PROJECTIONS = Shape.of({c: t for shape in PROJECTIONS.values() for c, t in shape.types.items()},
                           **{c: f"make_timestamp(b.{quoted(c)})" for c in _TIMES})
_COLUMNS = {table: ", ".join(f"s.{quoted(c)}" for c in columns) for table, columns in TABLES.items()}
# a stored projection row is the same row when its tenant, id and timestamp are (see projections.IDENTITY)
_SAME_ROW = " AND ".join(f"e.{quoted(c)} = s.{quoted(c)}" for c in IDENTITY)
AUDIT = Shape.of({"at": "BIGINT", "action": "VARCHAR", "actor": "VARCHAR", "tenant_id": "VARCHAR",
                  "remote_addr": "VARCHAR", "success": "BOOLEAN", "reason": "VARCHAR", "details": "JSON"})
DEAD_LETTERS = Shape.of({"id": "VARCHAR", "at": "BIGINT", "stage": "VARCHAR", "error": "VARCHAR",
                         "attempts": "INTEGER", "event_count": "INTEGER", "payload": "VARCHAR",
                         "replayed_at": "BIGINT"})
TOKENS = Shape.of({"token_id": "VARCHAR", "token_hash": "VARCHAR", "token_prefix": "VARCHAR", "tenant_id": "VARCHAR",
                   "tier": "VARCHAR", "scopes": "VARCHAR[]", "secret_sealed": "VARCHAR", "created_at": "BIGINT",
                   "org_id": "VARCHAR", "app_id": "VARCHAR", "revoked_at": "BIGINT", "rotated_at": "BIGINT"},
                  secret_sealed="from_base64(b.secret_sealed)")  # (JSON carries bytes as base64)
assert tuple(TOKENS.types) == TOKEN_COLUMNS
DOCUMENTS = Shape.of({"kind": "VARCHAR", "tenant_id": "VARCHAR", "key": "VARCHAR", "doc": "JSON"},
                     doc="CAST(b.doc AS VARCHAR)")
# seq: after every stored record, in the order of the call (a later append of the same instant reads first)
RECORDS = Shape.of({"kind": "VARCHAR", "tenant_id": "VARCHAR", "at": "BIGINT", "seq": "BIGINT", "body": "JSON"},
                   seq="(SELECT COALESCE(max(seq), 0) FROM records) + b.seq")


def refused(exc: duckdb.Error, what: str) -> StorageError:
    """The storage error for a failed write: the data's fault (not retried) or DuckDB's (retried)."""
    if isinstance(exc, (duckdb.InvalidInputException, duckdb.ConversionException, duckdb.ConstraintException)):
        return StorageDataError(f"duckdb refused the {what}: {exc}")
    return StorageError(f"duckdb {what} write failed: {exc}")


def write_rows(con: duckdb.DuckDBPyConnection, path: str, table: str, rows: list[dict[str, Any]]) -> int:
    """Projection rows not stored yet (nor repeated earlier in ``rows``); returns how many were stored."""
    return _write_rows(con, path, {table: distinct_rows(rows)})


def write_row_sets(con: duckdb.DuckDBPyConnection, path: str, tables: dict[str, list[Row]]) -> int:
    """``write_rows`` of several tables' ``Row`` structs in one transaction: their rows staged by one statement
    (every projection column, each row labelled with its table's file), one duplicate check, an insert a table."""
    return _write_rows(con, path, {table: distinct_rows(rows, row_identity) for table, rows in tables.items()})


def _write_rows(con: duckdb.DuckDBPyConnection, path: str, tables: dict[str, list[Any]]) -> int:
    fresh = {table: rows for table, rows in tables.items() if rows}
    if not fresh:
        return 0
    try:
        with transaction(con):
            if len(fresh) == 1:
                [(table, rows)] = fresh.items()
                stage(con, path, PROJECTIONS[table], encode(rows))
                return insert_new(con, [Target(table)], [Match(_SAME_ROW)])
            labels = stage_sets(con, path, ALL_PROJECTIONS, {table: encode(rows) for table, rows in fresh.items()})
            return insert_new(con, [Target(table, f" AND s.{STAGED_SET} = ?", (labels[table],), _COLUMNS[table])
                                    for table in fresh], [Match(_SAME_ROW)])
    except duckdb.Error as exc:
        raise refused(exc, f"{', '.join(fresh)} rows") from exc


def append(con: duckdb.DuckDBPyConnection, path: str, table: str, shape: Shape, lines: bytes) -> None:
    """Append NDJSON ``lines`` to ``table`` as they are."""
    try:
        with transaction(con):
            stage(con, path, shape, lines)
            con.execute(f"INSERT INTO {table} SELECT * FROM {STAGED}")
    except duckdb.Error as exc:
        raise refused(exc, table) from exc


def append_audit(con: duckdb.DuckDBPyConnection, path: str, records: list[AuditRecord]) -> None:
    append(con, path, "audit_log", AUDIT, encode(records))


def append_records(con: duckdb.DuckDBPyConnection, path: str, kind: str,
                   records: list[tuple[str, int, dict[str, Any]]]) -> None:
    lines = encode({"kind": kind, "tenant_id": tenant, "at": at, "seq": n, "body": body}
                   for n, (tenant, at, body) in enumerate(records, 1))
    append(con, path, "records", RECORDS, lines)


def add_dead_letters(con: duckdb.DuckDBPyConnection, path: str, entries: list[DeadLetter]) -> None:
    append(con, path, "dead_letters", DEAD_LETTERS, encode(entries))


def replace(con: duckdb.DuckDBPyConnection, path: str, table: str, shape: Shape, keys: tuple[str, ...],
            lines: bytes) -> None:
    """Insert or replace the rows of NDJSON ``lines`` by ``keys``."""
    try:
        with transaction(con):
            stage(con, path, shape, lines)
            replace_keyed(con, table, keys)
    except duckdb.Error as exc:
        raise refused(exc, table) from exc


def save_tokens(con: duckdb.DuckDBPyConnection, path: str, records: list[TokenRecord]) -> None:
    replace(con, path, "api_tokens", TOKENS, ("token_id",), encode(records))


def put_documents(con: duckdb.DuckDBPyConnection, path: str, kind: str,
                  docs: list[tuple[str, str, dict[str, Any]]]) -> None:
    latest = {(tenant, key): doc for tenant, key, doc in docs}  # (a key given twice: the last one wins)
    lines = encode({"kind": kind, "tenant_id": tenant, "key": key, "doc": doc}
                   for (tenant, key), doc in latest.items())
    replace(con, path, "documents", DOCUMENTS, ("kind", "tenant_id", "key"), lines)
