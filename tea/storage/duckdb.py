"""The embedded default: one DuckDB file under the data directory.

One thread owns the write connection; readers use their own cursors on the same database, from a
small pool of threads, so queries never wait behind a write and never block the event loop.
Batches load through DuckDB's own NDJSON reader (``read_json``): the NDJSON the durable buffer
already holds is handed over as is, so no Python object is built per event on the write path.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, ClassVar, Iterator, TypeVar

import duckdb
import msgspec

from tea.errors import StorageDataError, StorageError
from tea.storage import duckdb_signals, duckdb_sql, duckdb_writes
from tea.storage.duckdb_memory import CACHE_BYTES, default_memory_limit, trim_cache
from tea.storage.duckdb_load import Shape, insert_new, sql_string, stage, transaction
from tea.storage.duckdb_writes import refused
from tea.storage.rows import TOKEN_COLUMNS, token_from_row
from tea.storage.projections import SQL_TYPES, TABLES
from tea.storage.duckdb_sql import PARTITIONS, partition_of, partition_table, scan, tenant_clause
from tea.types import (COLUMNS, AggregateSpec, AuditRecord, DeadLetter, TraceSummary, Batch, Event, EventFilter, QueryResult, QuerySpec, TokenRecord,
                       WriteResult)

log = logging.getLogger(__name__)
T = TypeVar("T")

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
)
_DLQ_COLUMNS = ", ".join(f'"{c}"' for c in DeadLetter.__struct_fields__)

# How read_json sees the buffer's NDJSON: timestamps are integer µs, absent keys are NULL.
_JSON_TYPES = {name: kind.replace(" NOT NULL", "") for name, kind in COLUMN_TYPES.items()}
_JSON_TYPES.update(timestamp="BIGINT", received_at="BIGINT")
JSON_COLUMNS = "{" + ", ".join(f"{name}: '{kind}'" for name, kind in _JSON_TYPES.items()) + "}"
# the stored value of each column, from the buffer's NDJSON read as `b`
INSERT_EXPRS: tuple[str, ...] = tuple(
    f"make_timestamp(b.{c})" if c in ("timestamp", "received_at") else
    "COALESCE(b.tags, [])" if c == "tags" else
    "COALESCE(b.attributes, '{}')" if c == "attributes" else f"b.{c}"
    for c in COLUMNS)
EVENTS = Shape(_JSON_TYPES, dict(zip(COLUMNS, INSERT_EXPRS)))
# a stored event is the same one: same tenant and id, its time within the batch's window and the new event's own
_SAME_EVENT = ("e.tenant_id = s.tenant_id AND e.event_id = s.event_id AND e.timestamp BETWEEN make_timestamp(?) "
               "AND make_timestamp(?) AND e.timestamp BETWEEN s.timestamp - to_microseconds(?) "
               "AND s.timestamp + to_microseconds(?)")
# Parquet exports: every column as stored, attributes as JSON text
# Parquet's timestamps say they are UTC (TIMESTAMP WITH TIME ZONE: timestamp[us, tz=UTC]); the columns hold UTC
EXPORT_COLUMNS = ", ".join("CAST(attributes AS VARCHAR) AS attributes" if c == "attributes" else
                           f"timezone('UTC', {c}) AS {c}" if c in ("timestamp", "received_at") else c for c in COLUMNS)
_SELECT = ", ".join(
    f"epoch_us({c})" if c in ("timestamp", "received_at") else
    "CAST(attributes AS VARCHAR)" if c == "attributes" else c for c in COLUMNS)
_ORDER = "ORDER BY timestamp DESC, event_id DESC, tenant_id DESC"
# While an export runs, DuckDB's cache of table blocks is trimmed back to CACHE_BYTES every EXPORT_TRIM_INTERVAL_S
# (see DuckDBStorage._exporting); after writes, every CACHE_TRIM_INTERVAL_S (_trim_after_write).
EXPORT_TRIM_INTERVAL_S = 0.2
CACHE_TRIM_INTERVAL_S = 2.0


# the name the DuckDB file is attached under (when a row group size is set)
DATABASE = "tea"
ROW_GROUP_SIZE = 16384  # the default of duckdb.row_group_size
# count(*) of every event (/health asks often): 0.5 ms per table instead of a scan through the view (40 ms of CPU
# per million rows)
_FROM_EVENTS = " FROM events"  # what duckdb_sql.scan() makes of no filter
_COUNT_ALL = "SELECT " + " + ".join(f"(SELECT count(*) FROM {partition_table(n)})" for n in range(PARTITIONS))


def connect(path: str, config: dict[str, Any] | None = None,
            row_group_size: int | None = ROW_GROUP_SIZE) -> duckdb.DuckDBPyConnection:
    """A connection whose default database is the file at ``path``, new row groups ``row_group_size`` rows
    (None: DuckDB's own). The size is an option of ATTACH, not of connect(): the file is attached to an
    in-memory instance and made this connection's default database (a cursor needs ``USE`` again)."""
    if not row_group_size:
        return duckdb.connect(path, config=config or {})
    con = duckdb.connect(":memory:", config=config or {})
    try:
        con.execute(f"ATTACH {sql_string(path)} AS {DATABASE} (ROW_GROUP_SIZE {int(row_group_size)})")
        con.execute(f"USE {DATABASE}")
    except duckdb.Error:
        con.close()
        raise
    return con


def _by_partition(tenants: list[str]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for tenant in tenants:
        out.setdefault(partition_of(tenant), []).append(tenant)
    return out


class DuckDBStorage:
    name: ClassVar[str] = "duckdb"
    persistent: ClassVar[bool] = True

    def __init__(self, path: str, *, dedup_window_us: int = 3_600_000_000, threads: int | None = None,
                 memory_limit: str | None = None, max_object_bytes: int = 20 * 1024 * 1024,
                 checkpoint_threshold: str | None = "256MB", row_group_size: int | None = ROW_GROUP_SIZE,
                 readers: int = 4, cache_bytes: int = CACHE_BYTES) -> None:
        self.path = path
        self.cache_bytes = cache_bytes
        self._trimmed_at = 0.0  # time.monotonic() of the last trim after a write
        self.dedup_window_us = dedup_window_us
        self.threads = threads
        self.memory_limit = memory_limit or default_memory_limit()
        self.checkpoint_threshold = checkpoint_threshold
        self.row_group_size = row_group_size
        self.max_object_bytes = max_object_bytes
        self._ingest_path = path + ".ingest.ndjson"
        self.signals = duckdb_signals.DuckDBSignals(self)  # metric points and log records
        self._changes = 0  # moved on before and after every call on the writer thread
        self._counted: tuple[int, int] | None = None  # (_changes, count of all events) when it was counted
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="tea-duckdb-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="tea-duckdb-reader")
        self._cursors: queue.SimpleQueue[duckdb.DuckDBPyConnection] = queue.SimpleQueue()
        self._reader_count = readers
        self._con: duckdb.DuckDBPyConnection | None = None
        self._closed = False
        self._memory_limit_setting = ""  # DuckDB's memory_limit as it reports it, restored after each trim
        self._trim_lock = threading.Lock()
        self._reads_lock = threading.Lock()
        self._reads = 0  # queries running (see _reading)

    # ----------------------------------------------------------------- lifecycle
    async def open(self) -> None:
        await self._on_writer(self._open_sync)

    def _open_sync(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        config: dict[str, Any] = {"preserve_insertion_order": False}
        if self.threads:
            config["threads"] = self.threads
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
        if self.checkpoint_threshold:
            config["checkpoint_threshold"] = self.checkpoint_threshold
        try:
            self._con = connect(self.path, config, self.row_group_size)
        except duckdb.Error as exc:
            raise StorageError(f"cannot open DuckDB file {self.path}: {exc}") from exc
        self._migrate(self._con)
        # restored after each cache trim: the configured text, else DuckDB's default as it prints it (rounded
        # down to 0.1 GiB: the first restore lowers the default that much, and every later one sets the same)
        self._memory_limit_setting = (self.memory_limit or
                                      self._con.execute("SELECT current_setting('memory_limit')").fetchone()[0])  # type: ignore[index]
        for _ in range(self._reader_count):
            self._cursors.put(self._cursor())

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own on the same database (a cursor starts in DuckDB's default database)."""
        cursor = self._con.cursor()  # type: ignore[union-attr]
        if self.row_group_size:
            cursor.execute(f"USE {DATABASE}")
        return cursor

    @staticmethod
    def _migrate(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE TABLE IF NOT EXISTS tea_schema (version INTEGER NOT NULL)")
        row = con.execute("SELECT max(version) FROM tea_schema").fetchone()
        version = row[0] if row and row[0] is not None else 0
        if version > len(MIGRATIONS):
            raise StorageError(f"the DuckDB file has schema version {version}; this TEA knows up to "
                               f"{len(MIGRATIONS)} — upgrade TEA")
        for number in range(version + 1, len(MIGRATIONS) + 1):
            step = MIGRATIONS[number - 1]
            con.execute("BEGIN")
            if callable(step):
                step(con)
            else:
                con.execute(step)
            con.execute("INSERT INTO tea_schema VALUES (?)", [number])
            con.execute("COMMIT")
            log.info("duckdb: schema migrated to version %d", number)

    @property
    def schema_version(self) -> int:
        return len(MIGRATIONS)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._readers.shutdown(wait=True)
        await self._on_writer(self._close_sync)
        self._writer.shutdown(wait=True)

    def _close_sync(self) -> None:
        while not self._cursors.empty():
            self._cursors.get().close()
        if self._con is not None:
            self._con.execute("CHECKPOINT")
            self._con.close()
            self._con = None

    async def _on_writer(self, fn: Callable[..., T], *args: Any) -> T:
        self._changes += 1  # (odd while a write runs; see count)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)
        finally:
            self._changes += 1

    async def _store(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, staging path, *args)`` on the writer thread (a duckdb_writes function)."""
        return await self._on_writer(self._store_sync, fn, *args)

    def _store_sync(self, fn: Callable[..., T], *args: Any) -> T:
        result = fn(self._con, self._ingest_path, *args)
        self._trim_after_write()
        return result

    async def _on_reader(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._with_cursor, fn, *args)

    def _with_cursor(self, fn: Callable[..., T], *args: Any) -> T:
        cursor = self._cursors.get()
        try:
            with self._reading():
                return fn(cursor, *args)
        finally:
            self._cursors.put(cursor)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Count a query while it runs: the cache is trimmed only when no other query could need memory."""
        with self._reads_lock:
            self._reads += 1
        try:
            yield
        finally:
            with self._reads_lock:
                self._reads -= 1

    # ----------------------------------------------------------------- writing
    async def write_batch(self, batch: Batch) -> WriteResult:
        if not batch.count:
            return WriteResult(0, 0)
        return await self._on_writer(self._write_sync, batch.chunks, batch.count, batch.min_ts, batch.max_ts)

    def _write_sync(self, chunks: list[bytes], count: int, min_ts: int, max_ts: int) -> WriteResult:
        con = self._con
        assert con is not None
        try:
            with transaction(con):
                # once in typed form; then without in-batch duplicates; then into each tenant's partition
                stage(con, self._ingest_path, EVENTS, chunks, self.max_object_bytes)
                self._drop_repeats_sync(con)
                written = self._insert_partitions_sync(con, min_ts, max_ts)
        except duckdb.Error as exc:
            raise refused(exc, "batch") from exc
        self._trim_after_write()
        return WriteResult(written, count - written)

    def _drop_repeats_sync(self, con: duckdb.DuckDBPyConnection) -> None:
        """Staged events repeating one received before them in the batch, within the window of their own time.
        (A window over the wide rows costs 2-3x the load itself, so only when the narrow key check finds some.)"""
        repeated = con.execute("SELECT 1 FROM staged GROUP BY tenant_id, event_id HAVING count(*) > 1 LIMIT 1").fetchall()
        if not repeated:
            return
        con.execute("CREATE OR REPLACE TEMP TABLE staged AS SELECT *, row_number() OVER "
                    "(PARTITION BY tenant_id, event_id ORDER BY received_at) AS tea_n FROM staged")
        con.execute(
            "CREATE OR REPLACE TEMP TABLE staged AS SELECT * EXCLUDE (tea_n) FROM staged s WHERE NOT EXISTS ("
            "SELECT 1 FROM staged o WHERE o.tenant_id = s.tenant_id AND o.event_id = s.event_id "
            "AND o.tea_n < s.tea_n AND o.timestamp BETWEEN s.timestamp - to_microseconds(?) "
            "AND s.timestamp + to_microseconds(?))", [self.dedup_window_us, self.dedup_window_us])

    def _insert_partitions_sync(self, con: duckdb.DuckDBPyConnection, min_ts: int, max_ts: int) -> int:
        """Insert the staged events no stored one repeats: a stored event is the same one when its time is
        within the window of the new event's own (and so within the batch's window: row groups outside it
        are skipped)."""
        window = [min_ts - self.dedup_window_us, max_ts + self.dedup_window_us]
        spread = [self.dedup_window_us, self.dedup_window_us]
        tenants = [row[0] for row in con.execute("SELECT DISTINCT tenant_id FROM staged").fetchall()]
        written = 0
        for number, members in _by_partition(tenants).items():
            only = "" if len(members) == len(tenants) else " AND s." + tenant_clause(tuple(members))
            written += insert_new(con, partition_table(number), _SAME_EVENT, [*window, *spread], only,
                                  members if only else [])
        return written

    async def purge_older_than(self, cutoff_us: int, tenant_ids: tuple[str, ...] | None = None,
                               exclude_tenant_ids: tuple[str, ...] = ()) -> int:
        return await self._on_writer(self._purge_sync, cutoff_us, tenant_ids, exclude_tenant_ids)

    def _purge_sync(self, cutoff_us: int, tenant_ids: tuple[str, ...] | None,
                    exclude_tenant_ids: tuple[str, ...]) -> int:
        con = self._con
        assert con is not None
        condition = " WHERE timestamp < make_timestamp(?)"
        params: list[Any] = [cutoff_us]
        if tenant_ids is not None:
            condition += " AND " + tenant_clause(tenant_ids)
            params.extend(tenant_ids)
        if exclude_tenant_ids:
            condition += " AND " + tenant_clause(exclude_tenant_ids, negate=True)
            params.extend(exclude_tenant_ids)
        numbers = range(PARTITIONS) if tenant_ids is None else sorted({partition_of(t) for t in tenant_ids})
        deleted = 0
        for number in numbers:
            row = con.execute(f"DELETE FROM {partition_table(number)}{condition}", params).fetchone()
            deleted += row[0] if row else 0
        return deleted

    async def retention_overrides(self) -> dict[str, int]:
        return await self._on_reader(lambda cur: dict(cur.execute(
            "SELECT tenant_id, hours FROM tenant_retention").fetchall()))

    async def set_retention_override(self, tenant_id: str, hours: int | None) -> None:
        def run() -> None:
            con = self._con
            assert con is not None
            if hours is None:
                con.execute("DELETE FROM tenant_retention WHERE tenant_id = ?", [tenant_id])
            else:
                con.execute("INSERT OR REPLACE INTO tenant_retention (tenant_id, hours) VALUES (?, ?)",
                            [tenant_id, hours])
        await self._on_writer(run)

    # ----------------------------------------------------------------- reading
    async def query_events(self, spec: QuerySpec) -> QueryResult:
        return await self._on_reader(self._query_sync, spec)

    def _query_sync(self, cur: duckdb.DuckDBPyConnection, spec: QuerySpec) -> QueryResult:
        frm, params = scan(spec.filter)
        total = None
        if spec.with_total:
            total = cur.execute(f"SELECT count(*){frm}", params).fetchone()[0]  # type: ignore[index]
        page_where, page_params = frm, list(params)
        if spec.after is not None:
            a = spec.after
            after = ("(timestamp < make_timestamp(?) OR (timestamp = make_timestamp(?) AND (event_id < ? OR "
                      "(event_id = ? AND tenant_id < ?))))")
            page_where = frm + (" AND " if " WHERE " in frm else " WHERE ") + after
            page_params += [a.timestamp, a.timestamp, a.event_id, a.event_id, a.tenant_id]
        rows = cur.execute(f"SELECT {_SELECT}{page_where} {_ORDER} LIMIT ?",
                           [*page_params, spec.limit + 1]).fetchall()
        events = [_row_to_event(row) for row in rows[: spec.limit]]
        return QueryResult(events, total, len(rows) > spec.limit)

    async def count(self, filter: EventFilter | None = None) -> int:
        """Events matching ``filter``. The count of all of them (what /health shows, however often it is polled)
        is kept until the next write: every change to the file goes through the writer thread (``_on_writer``),
        which moves ``_changes`` on before and after it, so a count taken at one value of it is exact until
        the value moves (and is taken per partition: ``_COUNT_ALL``)."""
        frm, params = scan(filter)
        if frm != _FROM_EVENTS:
            return await self._on_reader(self._count_sync, f"SELECT count(*){frm}", params)
        changes = self._changes
        if self._counted is not None and self._counted[0] == changes:
            return self._counted[1]
        total = await self._on_reader(self._count_sync, _COUNT_ALL, [])
        self._counted = (changes, total)
        return total

    async def save_token(self, record: TokenRecord) -> None:
        await self._store(duckdb_writes.save_tokens, [record])

    async def find_token(self, *, token_hash: str | None = None, token_id: str | None = None) -> TokenRecord | None:
        column, value = ("token_id", token_id) if token_id is not None else ("token_hash", token_hash)
        rows = await self._on_reader(lambda cur: cur.execute(
            f"SELECT {', '.join(TOKEN_COLUMNS)} FROM api_tokens WHERE {column} = ?", [value]).fetchall())
        return token_from_row(rows[0]) if rows else None

    async def list_tokens(self, tenant_id: str | None = None) -> list[TokenRecord]:
        where_tenant, params = (" WHERE tenant_id = ?", [tenant_id]) if tenant_id is not None else ("", [])
        rows = await self._on_reader(lambda cur: cur.execute(
            f"SELECT {', '.join(TOKEN_COLUMNS)} FROM api_tokens{where_tenant} ORDER BY created_at DESC, token_id",
            params).fetchall())
        return [token_from_row(row) for row in rows]

    async def append_audit(self, records: list[AuditRecord]) -> None:
        if records:
            await self._store(duckdb_writes.append_audit, records)

    async def query_audit(self, *, action: str | None = None, tenant_id: str | None = None,
                          start_us: int | None = None, end_us: int | None = None,
                          limit: int = 100) -> list[AuditRecord]:
        clauses, params = [], []
        for clause, value in (("action = ?", action), ("tenant_id = ?", tenant_id), ('"at" >= ?', start_us),
                              ('"at" < ?', end_us)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where_sql = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = await self._on_reader(lambda cur: cur.execute(
            f'SELECT "at", action, actor, tenant_id, remote_addr, success, reason, CAST(details AS VARCHAR) '
            f'FROM audit_log{where_sql} ORDER BY "at" DESC LIMIT ?', [*params, limit]).fetchall())
        return [AuditRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], msgspec.json.decode(r[7])) for r in rows]

    async def purge_audit_older_than(self, cutoff_us: int) -> int:
        return await self._delete_before("audit_log", cutoff_us)

    async def purge_records_older_than(self, cutoff_us: int) -> int:
        return await self._delete_before("records", cutoff_us)

    async def _delete_before(self, table: str, cutoff_us: int) -> int:
        """Delete the rows of ``table`` (audit_log, records) whose ``at`` is before ``cutoff_us``."""
        row = await self._on_writer(lambda: self._con.execute(  # type: ignore[union-attr]
            f'DELETE FROM {table} WHERE "at" < ?', [cutoff_us]).fetchone())
        return row[0] if row else 0

    async def traces(self, filter: EventFilter, *, service: str | None = None, min_duration_ms: float = 0.0,
                     errors: bool | None = None, limit: int = 100) -> list[TraceSummary]:
        sql, params = duckdb_sql.traces(filter, service=service, min_duration_ms=min_duration_ms, errors=errors,
                                        limit=limit)
        rows = await self._on_reader(lambda cur: cur.execute(sql, params).fetchall())
        return [TraceSummary(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(r[8] or ())) for r in rows]

    async def write_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self._store(duckdb_writes.write_rows, table, rows)

    async def query_rows(self, table: str, *, tenant_ids: tuple[str, ...] | None, filters: dict[str, Any],
                         start_us: int | None = None, end_us: int | None = None,
                         limit: int = 100) -> list[dict[str, Any]]:
        columns = TABLES[table]
        clauses, params = [], []
        if tenant_ids is not None:
            clauses.append(tenant_clause(tenant_ids))
            params.extend(tenant_ids)
        for key, value in filters.items():
            clauses.append(f'"{key}" = ?')
            params.append(value)
        for clause, value in (("timestamp >= make_timestamp(?)", start_us), ("timestamp < make_timestamp(?)", end_us)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where_sql = " WHERE " + " AND ".join(clauses) if clauses else ""
        select = ", ".join(f"epoch_us({c})" if c in ("timestamp", "created_at") else
                           "CAST(event_metadata AS VARCHAR)" if c == "event_metadata" else
                           "CAST(id AS VARCHAR)" if c == "id" else f'"{c}"' for c in columns)
        rows = await self._on_reader(lambda cur: cur.execute(
            f"SELECT {select} FROM {table}{where_sql} ORDER BY timestamp DESC, id LIMIT ?", [*params, limit]).fetchall())
        out = [dict(zip(columns, row)) for row in rows]
        for row in out:
            row["event_metadata"] = msgspec.json.decode(row["event_metadata"]) if row["event_metadata"] else None
        return out

    async def projection_report(self, report: str, *, tenant_ids: tuple[str, ...] | None,
                                since_us: int) -> list[dict[str, Any]]:
        scope, params = ("", []) if tenant_ids is None else (" AND " + tenant_clause(tenant_ids), list(tenant_ids))
        if report == "summary":
            sql = " UNION ALL ".join(f"SELECT '{t}' AS table_name, count(*) AS count FROM {t} WHERE TRUE{scope}"
                                     for t in TABLES)
            counts = dict(await self._on_reader(lambda cur: cur.execute(sql, params * len(TABLES)).fetchall()))
            return [{"table_name": t, "count": counts[t]} for t in TABLES]  # (UNION ALL keeps no order)
        if report == "recent_activity":
            sql = (f"SELECT event_type, count(*) AS count, epoch_us(max(timestamp)) AS latest FROM user_activity "
                   f"WHERE timestamp > make_timestamp(?){scope} GROUP BY event_type ORDER BY count DESC, event_type")
            rows = await self._on_reader(lambda cur: cur.execute(sql, [since_us, *params]).fetchall())
            return [{"event_type": r[0], "count": r[1], "latest": r[2]} for r in rows]
        sql = (f"SELECT endpoint, method, count(*) AS hits, avg(duration_ms) AS avg_duration_ms FROM endpoint_usage "
               f"WHERE timestamp > make_timestamp(?){scope} GROUP BY endpoint, method "
               f"ORDER BY hits DESC, endpoint, method NULLS FIRST LIMIT 10")
        rows = await self._on_reader(lambda cur: cur.execute(sql, [since_us, *params]).fetchall())
        return [{"endpoint": r[0], "method": r[1], "hits": r[2], "avg_duration_ms": r[3]} for r in rows]

    async def existing_event_ids(self, tenant_id: str, event_ids: list[str], start_us: int, end_us: int) -> set[str]:
        if not event_ids:
            return set()
        table = partition_table(partition_of(tenant_id))
        rows = await self._on_reader(lambda cur: cur.execute(
            f"SELECT DISTINCT event_id FROM {table} WHERE tenant_id = ? AND timestamp BETWEEN make_timestamp(?) "
            f"AND make_timestamp(?) AND event_id IN (SELECT unnest(?))",
            [tenant_id, start_us, end_us, event_ids]).fetchall())
        return {row[0] for row in rows}

    async def add_dead_letter(self, entry: DeadLetter) -> None:
        await self._store(duckdb_writes.add_dead_letters, [entry])

    async def list_dead_letters(self, *, limit: int = 100, include_replayed: bool = False) -> list[DeadLetter]:
        where_sql = "" if include_replayed else " WHERE replayed_at IS NULL"
        rows = await self._on_reader(lambda cur: cur.execute(
            f'SELECT {_DLQ_COLUMNS} FROM dead_letters{where_sql} ORDER BY "at" DESC, id LIMIT ?', [limit]).fetchall())
        return [DeadLetter(*row) for row in rows]

    async def mark_replayed(self, entry_id: str, at_us: int) -> None:
        await self._on_writer(lambda: self._con.execute(  # type: ignore[union-attr]
            "UPDATE dead_letters SET replayed_at = ? WHERE id = ?", [at_us, entry_id]))

    async def communication_groups(self, kind: str, filter: EventFilter) -> list[tuple[Any, ...]]:
        sql, params = duckdb_sql.communication_groups(kind, filter)
        return await self._on_reader(lambda cur: cur.execute(sql, params).fetchall())

    # ------------------------------------------------------------ documents and records
    async def put_document(self, kind: str, tenant_id: str, key: str, doc: dict[str, Any]) -> None:
        await self.put_documents(kind, [(tenant_id, key, doc)])

    async def put_documents(self, kind: str, docs: list[tuple[str, str, dict[str, Any]]]) -> None:
        if docs:
            await self._store(duckdb_writes.put_documents, kind, docs)

    async def get_document(self, kind: str, tenant_id: str, key: str) -> dict[str, Any] | None:
        rows = await self._on_reader(lambda cur: cur.execute(
            "SELECT doc FROM documents WHERE kind = ? AND tenant_id = ? AND key = ?", [kind, tenant_id, key]).fetchall())
        return msgspec.json.decode(rows[0][0]) if rows else None

    async def list_documents(self, kind: str, tenant_ids: tuple[str, ...] | None) -> list[tuple[str, str, dict[str, Any]]]:
        scope, params = ("", []) if tenant_ids is None else (" AND " + tenant_clause(tenant_ids), list(tenant_ids))
        rows = await self._on_reader(lambda cur: cur.execute(
            f"SELECT tenant_id, key, doc FROM documents WHERE kind = ?{scope} ORDER BY tenant_id, key",
            [kind, *params]).fetchall())
        return [(r[0], r[1], msgspec.json.decode(r[2])) for r in rows]

    async def delete_document(self, kind: str, tenant_id: str, key: str) -> bool:
        def delete() -> bool:
            con = self._con
            assert con is not None
            row = con.execute("DELETE FROM documents WHERE kind = ? AND tenant_id = ? AND key = ? RETURNING 1",
                              [kind, tenant_id, key]).fetchall()
            return bool(row)
        return await self._on_writer(delete)

    async def append_records(self, kind: str, records: list[tuple[str, int, dict[str, Any]]]) -> None:
        if records:
            await self._store(duckdb_writes.append_records, kind, records)

    async def query_records(self, kind: str, *, tenant_ids: tuple[str, ...] | None, filters: dict[str, str] | None = None,
                            start_us: int | None = None, end_us: int | None = None,
                            limit: int = 100) -> list[tuple[str, int, dict[str, Any]]]:
        clauses, params = ["kind = ?"], [kind]
        if tenant_ids is not None:
            clauses.append(tenant_clause(tenant_ids))
            params.extend(tenant_ids)
        for key, value in (filters or {}).items():
            clauses.append("json_extract_string(body, ?) = ?")
            params.extend([f'$."{key}"', value])
        for clause, value in (('"at" >= ?', start_us), ('"at" < ?', end_us)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        rows = await self._on_reader(lambda cur: cur.execute(
            f'SELECT tenant_id, "at", CAST(body AS VARCHAR) FROM records WHERE {" AND ".join(clauses)} '
            f'ORDER BY "at" DESC, seq DESC LIMIT ?', [*params, limit]).fetchall())
        return [(r[0], r[1], msgspec.json.decode(r[2])) for r in rows]

    async def aggregate(self, spec: AggregateSpec) -> list[tuple[Any, ...]]:
        sql, params = duckdb_sql.aggregate(spec)
        return await self._on_reader(lambda cur: cur.execute(sql, params).fetchall())

    async def aggregate_columns(self, spec: AggregateSpec) -> list[Any]:
        """``aggregate``'s rows as columns (numpy arrays, NULLs masked): no Python object per cell, for
        answers of tens of thousands of cells (the Prometheus API's per-step buckets)."""
        sql, params = duckdb_sql.aggregate(spec)
        found = await self._on_reader(lambda cur: cur.execute(sql, params).fetchnumpy())
        return list(found.values())

    async def iter_events(self, filter: EventFilter, chunk_rows: int = 10000) -> AsyncIterator[list[Event]]:
        frm, params = scan(filter)
        cursor = await self._on_writer(self._cursor)
        loop = asyncio.get_running_loop()
        try:
            with self._reading():
                async with self._exporting():
                    await loop.run_in_executor(self._readers, lambda: cursor.execute(f"SELECT {_SELECT}{frm}", params))
                    while True:
                        rows = await loop.run_in_executor(self._readers, cursor.fetchmany, chunk_rows)
                        if not rows:
                            return
                        yield [_row_to_event(row) for row in rows]
        finally:
            cursor.close()

    async def export_file(self, filter: EventFilter, fmt: str, path: str) -> None:
        """Write the matching events straight from DuckDB into a Parquet file."""
        if fmt != "parquet":
            raise ValueError(f"DuckDB writes only parquet files natively, not {fmt!r}")
        frm, params = scan(filter)
        # row groups of 8 MB: the Parquet writer buffers one per thread (at its default of 122 880 rows, that of
        # wide events took hundreds of MB)
        sql = (f"COPY (SELECT {EXPORT_COLUMNS}{frm}) TO {sql_string(path)} "
               f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE_BYTES '8MB')")
        async with self._exporting():
            await self._on_reader(lambda cur: cur.execute(sql, params))

    @contextlib.asynccontextmanager
    async def _exporting(self) -> AsyncIterator[None]:
        """Keep DuckDB's block cache small while an export reads the whole table.

        DuckDB keeps every table block a query reads cached until ``memory_limit`` (duckdb_memory)
        forces blocks out, and it has no separate limit for that cache: an export reads every
        block, so the server's RSS grew with the export (all 10 M events of the benchmark: +590 MB).
        While an export runs, the cache is trimmed every EXPORT_TRIM_INTERVAL_S once it holds more
        than ``cache_bytes``; queries keep the whole memory limit for their own work."""
        done = asyncio.Event()

        async def trim_until_done() -> None:
            while True:
                await self._on_reader(self._trim_cache)
                if done.is_set():
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(done.wait(), EXPORT_TRIM_INTERVAL_S)

        trimmer = asyncio.create_task(trim_until_done())
        try:
            yield
        finally:
            done.set()
            with contextlib.suppress(Exception):  # (storage closing under the export: nothing left to trim)
                await trimmer

    def _trim_cache(self, cur: duckdb.DuckDBPyConnection, max_reads: int = 2) -> None:
        """Trim the block cache unless more than ``max_reads`` queries run (by default an export and this trimmer,
        itself a read): lowering the limit for a moment must not take memory another query may ask for, and
        queries starting meanwhile wait the moment out."""
        with self._reads_lock:
            if self._reads <= max_reads:
                trim_cache(cur, self.cache_bytes, self._memory_limit_setting, self._trim_lock)

    def _trim_after_write(self) -> None:
        """DuckDB caches every block a write makes until its memory limit: the cache is trimmed back to
        ``cache_bytes`` after a write, at most every CACHE_TRIM_INTERVAL_S (the RSS stays flat under a steady load)."""
        now = time.monotonic()
        if now - self._trimmed_at >= CACHE_TRIM_INTERVAL_S:
            self._trimmed_at = now
            self._trim_cache(self._con, max_reads=0)  # type: ignore[arg-type]

    @staticmethod
    def _count_sync(cur: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> int:
        return cur.execute(sql, params).fetchone()[0]  # type: ignore[index]


def _row_to_event(row: tuple[Any, ...]) -> Event:
    values = dict(zip(COLUMNS, row))
    values["attributes"] = msgspec.Raw(values["attributes"])
    return Event(**values)
