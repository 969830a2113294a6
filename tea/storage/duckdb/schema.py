"""DuckDB's tables: the type of every promoted column, and the migrations that build the schema one
version at a time (``DuckDBStorage._migrate`` runs those a file has not had)."""
from __future__ import annotations

from typing import Callable

import duckdb

from tea.storage.duckdb import rollup, signals as duckdb_signals
from tea.storage.duckdb.sql import PARTITIONS, partition_of, partition_table, tenant_clause
from tea.storage.projections import SQL_TYPES, TABLES
from tea.types import COLUMNS

# Storage type of every promoted column; timestamps are TIMESTAMP holding UTC. The first release's columns
# (what the shipped migrations create) and those a later migration appends.
_FIRST_COLUMN_TYPES: dict[str, str] = {
    "event_id": "VARCHAR NOT NULL", "tenant_id": "VARCHAR NOT NULL", "timestamp": "TIMESTAMP NOT NULL",
    "received_at": "TIMESTAMP NOT NULL", "event_type": "VARCHAR NOT NULL", "source": "VARCHAR",
    "source_protocol": "VARCHAR", "user_id": "VARCHAR", "session_id": "VARCHAR", "organization": "VARCHAR",
    "method": "VARCHAR", "target": "VARCHAR", "protocol": "VARCHAR", "status": "VARCHAR",
    "status_code": "INTEGER", "duration_ms": "DOUBLE", "request_size": "BIGINT", "response_size": "BIGINT",
    "tokens_used": "BIGINT", "cost": "DOUBLE", "error_type": "VARCHAR", "error_message": "VARCHAR",
    "trace_id": "VARCHAR", "span_id": "VARCHAR", "parent_span_id": "VARCHAR", "correlation_id": "VARCHAR",
    "tags": "VARCHAR[] NOT NULL", "attributes": "JSON NOT NULL",
}
_SEMCONV_COLUMN_TYPES = {"tool": "VARCHAR", "model": "VARCHAR", "input_tokens": "BIGINT", "output_tokens": "BIGINT"}
COLUMN_TYPES: dict[str, str] = {**_FIRST_COLUMN_TYPES, **_SEMCONV_COLUMN_TYPES}
assert tuple(COLUMN_TYPES) == COLUMNS

_EVENTS_COLUMNS_DDL = "(" + ", ".join(f"{name} {kind}" for name, kind in _FIRST_COLUMN_TYPES.items()) + ")"


def _partition_events(con: duckdb.DuckDBPyConnection) -> None:
    """v3: one table per tenant hash partition (rows moved, sorted), ``events`` becomes their view."""
    for number in range(PARTITIONS):
        con.execute(f"CREATE TABLE {partition_table(number)} {_EVENTS_COLUMNS_DDL}")
    tenants = [row[0] for row in con.execute("SELECT DISTINCT tenant_id FROM events").fetchall()]
    by_partition: dict[int, list[str]] = {}
    for tenant in tenants:
        by_partition.setdefault(partition_of(tenant), []).append(tenant)
    for number, members in by_partition.items():
        con.execute(f"INSERT INTO {partition_table(number)} SELECT * FROM events WHERE "
                    f"{tenant_clause(tuple(members))} ORDER BY tenant_id, timestamp", members)
    con.execute("DROP TABLE events")
    con.execute(_EVENTS_VIEW)


_EVENTS_VIEW = "CREATE VIEW events AS " + " UNION ALL ".join(
    f"SELECT * FROM {partition_table(n)}" for n in range(PARTITIONS))


def _add_semconv_columns(con: duckdb.DuckDBPyConnection) -> None:
    """v12: the MCP/GenAI columns (tool, model, input_tokens, output_tokens) appended to every partition."""
    for number in range(PARTITIONS):
        for name, kind in _SEMCONV_COLUMN_TYPES.items():
            con.execute(f"ALTER TABLE {partition_table(number)} ADD COLUMN {name} {kind}")
    con.execute("DROP VIEW events")
    con.execute(_EVENTS_VIEW)


# Columns stored with a compression of their own: the JSON of ``attributes`` (most of an OTLP span's bytes)
# as zstd — DuckDB's own choice (dictionary + FSST) costs the writer about twice the CPU and the file 2.5x
# the bytes for it (bench.duckwrite)
_COMPRESSED = {"attributes": "zstd"}


def _compress_attributes(con: duckdb.DuckDBPyConnection) -> None:
    """v15: every partition rebuilt with ``attributes`` zstd-compressed (DuckDB cannot change a column's
    compression in place): its rows copied, sorted by tenant and time, into a new table that takes its name."""
    ddl = "(" + ", ".join(f"{name} {kind.replace(' NOT NULL', '')} USING COMPRESSION {_COMPRESSED[name]}"
                          f"{' NOT NULL' if kind.endswith(' NOT NULL') else ''}" if name in _COMPRESSED
                          else f"{name} {kind}" for name, kind in COLUMN_TYPES.items()) + ")"
    con.execute("DROP VIEW events")
    for number in range(PARTITIONS):  # (a statement per partition: every row of one moves at once)
        _rebuild(con, partition_table(number), ddl)
    con.execute(_EVENTS_VIEW)


def _rebuild(con: duckdb.DuckDBPyConnection, table: str, ddl: str) -> None:
    """``table`` as ``ddl`` makes it, its rows copied sorted by tenant and time."""
    con.execute(f"CREATE TABLE {table}_new {ddl}")
    con.execute(f"INSERT INTO {table}_new SELECT * FROM {table} ORDER BY tenant_id, timestamp")
    con.execute(f"DROP TABLE {table}")
    con.execute(f"ALTER TABLE {table}_new RENAME TO {table}")


# Each migration moves the schema one version up; never edit one that has shipped.
MIGRATIONS: tuple[str | Callable[[duckdb.DuckDBPyConnection], None], ...] = (
    "CREATE TABLE events " + _EVENTS_COLUMNS_DDL,
    "CREATE TABLE tenant_retention (tenant_id VARCHAR PRIMARY KEY, hours INTEGER NOT NULL, "
    "updated_at TIMESTAMP NOT NULL DEFAULT now())",
    _partition_events,
    "CREATE TABLE api_tokens (token_id VARCHAR PRIMARY KEY, token_hash VARCHAR NOT NULL UNIQUE, "
    "token_prefix VARCHAR NOT NULL, tenant_id VARCHAR NOT NULL, tier VARCHAR NOT NULL, scopes VARCHAR[] NOT NULL, "
    "secret_sealed BLOB NOT NULL, created_at BIGINT NOT NULL, org_id VARCHAR, app_id VARCHAR, revoked_at BIGINT, "
    "rotated_at BIGINT)",
    'CREATE TABLE audit_log ("at" BIGINT NOT NULL, action VARCHAR NOT NULL, actor VARCHAR, tenant_id VARCHAR, '
    "remote_addr VARCHAR, success BOOLEAN NOT NULL, reason VARCHAR, details JSON NOT NULL)",
    'CREATE TABLE dead_letters (id VARCHAR PRIMARY KEY, "at" BIGINT NOT NULL, stage VARCHAR NOT NULL, '
    "error VARCHAR NOT NULL, attempts INTEGER NOT NULL, event_count INTEGER NOT NULL, payload VARCHAR NOT NULL, "
    "replayed_at BIGINT)",
    *(f"CREATE TABLE {table} (" + ", ".join(f'"{c}" {SQL_TYPES[c]}' for c in columns) + ")"
      for table, columns in TABLES.items()),
    "CREATE TABLE documents (kind VARCHAR NOT NULL, tenant_id VARCHAR NOT NULL, key VARCHAR NOT NULL, "
    "doc VARCHAR NOT NULL, PRIMARY KEY (kind, tenant_id, key))",
    'CREATE TABLE records (kind VARCHAR NOT NULL, tenant_id VARCHAR NOT NULL, "at" BIGINT NOT NULL, '
    "seq BIGINT NOT NULL, body JSON NOT NULL)",
    _add_semconv_columns,
    duckdb_signals.POINTS_DDL,
    duckdb_signals.RECORDS_DDL,
    _compress_attributes,
    rollup.create,
)
