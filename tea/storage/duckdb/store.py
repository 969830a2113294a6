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

from tea.errors import StorageDataError, StorageError, StorageUnavailable
from tea.storage.duckdb import signals as duckdb_signals
from tea.storage.duckdb.memory import CACHE_BYTES, default_memory_limit
from tea.storage.duckdb.load import Match, Shape, Target, insert_new, sql_string, stage, transaction
from tea.storage.duckdb.analytics import DuckDBAnalytics
from tea.storage.duckdb.export import DuckDBExport
from tea.storage.duckdb import rollup
from tea.storage.duckdb.rollup import DuckDBRollup
from tea.storage.duckdb.stores import DuckDBStores
from tea.storage.duckdb.writes import refused
from tea.storage.duckdb.schema import COLUMN_TYPES, MIGRATIONS
from tea.scan import group_lines
from tea.storage.health import first_line
from tea.storage.duckdb.sql import (DIALECT, PARTITIONS, DuckDBDialect, Live, page_keys, partition_of,
                                    partition_table, scan, several_partitions, tenant_clause)
from tea.storage.duckdb.sql import count as count_sql
from tea.storage.duckdb.sql import rows as rows_sql
from tea.storage.sql import events
from tea.types import (COLUMNS, Batch, Event, EventFilter, QueryResult, QuerySpec,
                       WriteResult)

log = logging.getLogger(__name__)
T = TypeVar("T")

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
# A stored event repeats a new one (tea.storage.dedup): the same tenant, id and time — the event as it was sent
# before; its row groups are those of the batch's own times —
_SAME_TIME = ("e.tenant_id = s.tenant_id AND e.event_id = s.event_id AND e.timestamp = s.timestamp "
              "AND e.timestamp BETWEEN make_timestamp(?) AND make_timestamp(?)")
# — or, for a new event stamped on arrival (its timestamp its received_at; with dedup_match=window every one:
# {applies}), the same tenant and id within the dedup window of its time (and so within the window of the
# batch's such events)
_WITHIN_WINDOW = ("{applies} AND e.tenant_id = s.tenant_id AND e.event_id = s.event_id "
                  "AND e.timestamp BETWEEN make_timestamp(?) AND make_timestamp(?) "
                  "AND e.timestamp BETWEEN s.timestamp - to_microseconds(?) AND s.timestamp + to_microseconds(?)")
# A batch's lines are staged grouped by tenant (tea.scan.group_lines): each partition's INSERT reads the staged
# table filtered by its tenants, and skips the other columns of every vector of 2048 rows none of them is in —
# interleaved (an OTLP request carries several resources, a batch many requests), every vector holds every
# partition's rows, and each INSERT reads every staged row's every column
_TENANT_KEY = b'"tenant_id":"'
# DuckDB's cache of table blocks is trimmed back to ``cache_bytes`` after writes, every CACHE_TRIM_INTERVAL_S
# (_trim_after_write), and while an export runs (tea.storage.duckdb.export).
CACHE_TRIM_INTERVAL_S = 2.0


# A page of events (LIMIT up to 10 001: the API's largest page and the row that says more follow) is chosen
# by the filtered and ordered columns alone, the others read only for its rows (DuckDB's late
# materialization, by default only up to LIMIT 50): a 100-event page of a 440 000-span tenant 6.7 instead
# of 13.8 ms of CPU — reading zstd's attributes for every candidate row costs the most
LATE_MATERIALIZATION_ROWS = 10_001

# the name the DuckDB file is attached under (when a row group size is set)
DATABASE = "tea"
ROW_GROUP_SIZE = 16384  # the default of duckdb.row_group_size
# the block size of a new file, the default of duckdb.block_size (an existing file keeps its own): DuckDB's. A
# row group's segment of a column of unique strings (ids) takes a block of its own, at 16 384 rows about half of
# one; 131072 makes the metrics data set's file 18 % smaller, at a cost in read and write speed (performance.md)
BLOCK_SIZE = 262144
# count(*) of every event (/health asks often): 0.5 ms per table instead of a scan through the view (40 ms of CPU
# per million rows)
_FROM_EVENTS = " FROM events"  # what tea.storage.duckdb.sql.scan() makes of no filter
_COUNT_ALL = "SELECT " + " + ".join(f"(SELECT count(*) FROM {partition_table(n)})" for n in range(PARTITIONS))
_NON_EMPTY = " UNION ALL ".join(f"SELECT {n} WHERE EXISTS (SELECT 1 FROM {partition_table(n)})"
                                for n in range(PARTITIONS))


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


# what a read fails with while DuckDB is short of memory or temporary disk, or its file cannot be read or is
# held: transient — the read answers 503 with Retry-After (as a PostgreSQL or ClickHouse server down), not 500
TRANSIENT = (duckdb.OutOfMemoryException, duckdb.IOException, duckdb.ResourceInUseException,
             duckdb.TransactionException, duckdb.ConnectionException)


@contextlib.contextmanager
def transient_as_unavailable() -> Iterator[None]:
    try:
        yield
    except TRANSIENT as exc:
        raise StorageUnavailable(f"duckdb: {first_line(exc)}") from exc


def _by_partition(tenants: list[str]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for tenant in tenants:
        out.setdefault(partition_of(tenant), []).append(tenant)
    return out


class DuckDBStorage(DuckDBStores, DuckDBAnalytics, DuckDBExport, DuckDBRollup):
    name: ClassVar[str] = "duckdb"
    persistent: ClassVar[bool] = True

    def __init__(self, path: str, *, dedup_window_us: int = 3_600_000_000, dedup_same_time: bool = True,
                 threads: int | None = None,
                 memory_limit: str | None = None, max_object_bytes: int = 20 * 1024 * 1024,
                 checkpoint_threshold: str | None = "256MB", row_group_size: int | None = ROW_GROUP_SIZE,
                 readers: int = 4, cache_bytes: int = CACHE_BYTES, block_size: int = BLOCK_SIZE) -> None:
        self.path = path
        self.cache_bytes = cache_bytes
        self._trimmed_at = 0.0  # time.monotonic() of the last trim after a write
        self.dedup_window_us = dedup_window_us
        self.dedup_same_time = dedup_same_time
        self.threads = threads
        self.memory_limit = memory_limit or default_memory_limit()
        self.checkpoint_threshold = checkpoint_threshold
        self.row_group_size = row_group_size
        self.block_size = block_size  # (of a file it creates)
        self.max_object_bytes = max_object_bytes
        self._ingest_path = path + ".ingest.ndjson"
        self.signals = duckdb_signals.DuckDBSignals(self)  # metric points and log records
        self._changes = 0  # moved on before and after every call on the writer thread
        self._counted: tuple[int, int] | None = None  # (_changes, count of all events) when it was counted
        self._live = Live()  # the partitions that may hold events (all, until the file is opened)
        self.dialect = DuckDBDialect(self._live)  # the SQL of this file's event reads
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
        config: dict[str, Any] = {"preserve_insertion_order": False, "default_block_size": self.block_size,
                                  "late_materialization_max_rows": LATE_MATERIALIZATION_ROWS}
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
        self._live.parts = tuple(n for n, in self._con.execute(_NON_EMPTY).fetchall())
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
        self._interrupt_roll_up()
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
        """``fn(connection, staging path, *args)`` on the writer thread (a tea.storage.duckdb.writes function)."""
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
            with self._reading(), transient_as_unavailable():
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
                # once in typed form (each tenant's lines together); then without in-batch duplicates; then into
                # each tenant's partition
                stage(con, self._ingest_path, EVENTS, group_lines(chunks, _TENANT_KEY), self.max_object_bytes)
                if count > 1:  # (one event repeats none: ~1 ms of a single event's write)
                    self._drop_repeats_sync(con)
                written = self._insert_partitions_sync(con)
                if written:  # (their minutes of the Prometheus rollup are read from the events until rolled up)
                    rollup.mark(con, min_ts, max_ts)
        except duckdb.Error as exc:
            raise refused(exc, "batch") from exc
        self._trim_after_write()
        return WriteResult(written, count - written)

    def _windowed(self, alias: str = "") -> str:
        """The staged events (of ``alias``) the dedup window applies to: those stamped on arrival, or every one."""
        return f"{alias}timestamp = {alias}received_at" if self.dedup_same_time else "TRUE"

    def _drop_repeats_sync(self, con: duckdb.DuckDBPyConnection) -> None:
        """Staged events repeating one received before them in the batch (the same time; within the window of its
        own for an event stamped on arrival). (A window over the wide rows costs 2-3x the load itself, so only when
        the narrow key check finds some.)"""
        repeated = con.execute("SELECT 1 FROM staged GROUP BY tenant_id, event_id HAVING count(*) > 1 LIMIT 1").fetchall()
        if not repeated:
            return
        con.execute("CREATE OR REPLACE TEMP TABLE staged AS SELECT *, row_number() OVER "
                    "(PARTITION BY tenant_id, event_id ORDER BY received_at) AS tea_n FROM staged")
        con.execute(
            "CREATE OR REPLACE TEMP TABLE staged AS SELECT * EXCLUDE (tea_n) FROM staged s WHERE NOT EXISTS ("
            "SELECT 1 FROM staged o WHERE o.tenant_id = s.tenant_id AND o.event_id = s.event_id "
            f"AND o.tea_n < s.tea_n AND (o.timestamp = s.timestamp OR {self._windowed('s.')} "
            "AND o.timestamp BETWEEN s.timestamp - to_microseconds(?) AND s.timestamp + to_microseconds(?)))",
            [self.dedup_window_us, self.dedup_window_us])

    def _insert_partitions_sync(self, con: duckdb.DuckDBPyConnection) -> int:
        """Insert the staged events no stored one repeats (_SAME_TIME, _WITHIN_WINDOW). Only events stamped on
        arrival look at the stored events of a whole dedup window; the others at those of their own times (a
        window's stored ids cost ~60–85 ns each to check for random ids, every write: docs/performance.md)."""
        windowed = self._windowed()
        # the time range of the events with their own times, then of those the window applies to (NULL: none)
        ranges = ", ".join(f"epoch_us({end}(timestamp) FILTER (WHERE {which}))"
                           for which in (f"NOT ({windowed})", windowed) for end in ("min", "max"))
        tenants, low, high, first, last = con.execute(
            f"SELECT list(DISTINCT tenant_id), {ranges} FROM staged").fetchone()  # type: ignore[misc]
        # (the window finds an event's own time too: the events it applies to need no check of their time alone)
        matches = [] if low is None else [Match(_SAME_TIME, (low, high))]
        if first is not None:
            window = self.dedup_window_us
            matches.append(Match(_WITHIN_WINDOW.format(applies=self._windowed("s.")),
                                 (first - window, last + window, window, window)))
        parts = _by_partition(tenants)
        self._live.add(parts)  # (before the commit: a read after it unites these partitions too)
        targets = [Target(partition_table(number)) if len(parts) == 1 else
                   Target(partition_table(number), " AND s." + tenant_clause(tuple(members)), tuple(members))
                   for number, members in parts.items()]
        return insert_new(con, targets, matches)

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
            with transaction(con):  # (the deleted events' minutes pending in the rollup, with the delete)
                rollup.mark_deleted(con, partition_table(number), condition, params)
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
        if several_partitions(spec.filter, self._live):
            return self._query_partitions_sync(cur, spec)
        total = None
        if spec.with_total:  # (one partition: DuckDB's own top-N of it reads every column of its page's rows only)
            total = cur.execute(*count_sql(spec.filter, self.dialect)).fetchone()[0]  # type: ignore[index]
            if not total:
                return QueryResult([], 0, False)
        if spec.filter.event_id is not None and total is None:
            # one id: a row or a few (one a tenant and dedup window), put in order here. DuckDB's top-N of them
            # would read them twice (late materialization: the keys, then the rows): ~1 ms more a lookup
            rows = sorted(cur.execute(*events.candidates(spec, self.dialect)).fetchall(), key=_page_key,
                          reverse=True)[: spec.limit + 1]
        else:
            rows = cur.execute(*events.page(spec, self.dialect)).fetchall()
        return QueryResult([_row_to_event(row) for row in rows[: spec.limit]], total, len(rows) > spec.limit)

    def _query_partitions_sync(self, cur: duckdb.DuckDBPyConnection, spec: QuerySpec) -> QueryResult:
        """A page across partitions in two statements: its count and its keys (the ``limit + 1`` first: the last
        says whether more follow), read from the columns the filter and the order test; then every column of
        the page's events only, from the partitions that hold them (tea.storage.duckdb.sql.page_keys, rows).
        Each column of each partition a statement reads costs its planning and scan set-up (~25 µs), so the
        second statement unites only the page's partitions."""
        cur.execute("BEGIN TRANSACTION")  # (both statements read one snapshot: a purge between them cuts no page)
        try:
            total, keys = cur.execute(*page_keys(spec, self.dialect)).fetchone()  # type: ignore[misc]
            if total == 0 or not keys:
                return QueryResult([], total, False)
            page = sorted(keys, reverse=True)[: spec.limit]
            wanted = {key[:3] for key in page}
            found = cur.execute(*rows_sql(page, self.dialect)).fetchall()
        finally:
            with contextlib.suppress(duckdb.TransactionException):  # (a failed statement may have ended it)
                cur.execute("ROLLBACK")  # (read only: nothing to commit)
        rows = sorted((row for row in found if _page_key(row) in wanted), key=_page_key, reverse=True)
        return QueryResult([_row_to_event(row) for row in rows[: spec.limit]], total, len(keys) > spec.limit)

    async def count(self, filter: EventFilter | None = None) -> int:
        """Events matching ``filter``. The count of all of them (what /health shows, however often it is polled)
        is kept until the next write: every change to the file goes through the writer thread (``_on_writer``),
        which moves ``_changes`` on before and after it, so a count taken at one value of it is exact until
        the value moves (and is taken per partition: ``_COUNT_ALL``)."""
        frm, params = scan(filter)
        if frm != _FROM_EVENTS:
            return await self._on_reader(self._count_sync, *count_sql(filter, self.dialect))
        changes = self._changes
        if self._counted is not None and self._counted[0] == changes:
            return self._counted[1]
        total = await self._on_reader(self._count_sync, _COUNT_ALL, [])
        self._counted = (changes, total)
        return total

    async def existing_event_keys(self, tenant_id: str, event_ids: list[str], start_us: int,
                                  end_us: int) -> set[tuple[str, int]]:
        if not event_ids:
            return set()
        table = partition_table(partition_of(tenant_id))
        rows = await self._on_reader(lambda cur: cur.execute(
            f"SELECT DISTINCT event_id, epoch_us(timestamp) FROM {table} WHERE tenant_id = ? AND timestamp "
            f"BETWEEN make_timestamp(?) AND make_timestamp(?) AND event_id IN (SELECT unnest(?))",
            [tenant_id, start_us, end_us, event_ids]).fetchall())
        return {(row[0], row[1]) for row in rows}

    async def iter_events(self, filter: EventFilter, chunk_rows: int = 10000) -> AsyncIterator[list[Event]]:
        frm, params = scan(filter, self.dialect)
        cursor = await self._on_writer(self._cursor)
        loop = asyncio.get_running_loop()
        try:
            with self._reading():
                async with self._exporting():
                    with transient_as_unavailable():
                        await loop.run_in_executor(
                            self._readers, lambda: cursor.execute(f"SELECT {DIALECT.event_columns}{frm}", params))
                    while True:
                        with transient_as_unavailable():
                            rows = await loop.run_in_executor(self._readers, cursor.fetchmany, chunk_rows)
                        if not rows:
                            return
                        yield [_row_to_event(row) for row in rows]
        finally:
            cursor.close()

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


_PAGE_KEY = tuple(COLUMNS.index(c) for c in ("timestamp", *events.ORDER_KEYS))  # a page's order


def _page_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """(as tea.storage.duckdb.sql.page_keys lists an event: its time µs, id and tenant)"""
    return tuple(row[i] for i in _PAGE_KEY)


def _row_to_event(row: tuple[Any, ...]) -> Event:
    values = dict(zip(COLUMNS, row))
    values["attributes"] = msgspec.Raw(values["attributes"])
    return Event(**values)
