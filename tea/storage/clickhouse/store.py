"""The scale-out backend: several stateless TEA nodes writing to one ClickHouse server or cluster.

Speaks the native protocol through clickhouse-driver, which works with both the 18.16 server Debian
ships and current releases. The driver is synchronous: one writer thread (so this node's dedup check
and insert never race each other) and a few reader threads, one ``Client`` per thread, all off the
event loop. Events live in a ReplacingMergeTree partitioned by UTC day (clickhouse_sql.schema).

Idempotency is exact at write time: a batch's keys are looked up in the dedup window and repeats of
a stored or an in-batch event (tea.storage.dedup) dropped before the insert (as DuckDB does). Only two
nodes writing the same event at the same instant can both pass that check; the sorting key makes such
exact replays collapse when parts merge, and ``final_reads`` makes every read exact before that
(``FINAL``).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import struct
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import urlsplit
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, ClassVar, TypeVar

import msgspec
from clickhouse_driver import Client, errors
from clickhouse_driver.util.helpers import parse_url

from tea.errors import ConfigError, StorageDataError, StorageError, StorageUnavailable
from tea.storage.clickhouse import signals as clickhouse_signals, sql
from tea.storage.clickhouse.sql import lit
from tea.storage.sql import events
from tea.storage.clickhouse.stores import ClickHouseStores
from tea.storage.dedup import repeats as repeated, windowed
from tea.storage.health import StorageHealth, first_line
from tea.storage.projections import TABLES
from tea.types import (COLUMNS, AggregateSpec, Batch, Event, EventFilter, QueryResult, QuerySpec, TraceSummary,
                       WriteResult)

if TYPE_CHECKING:
    from tea.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# server error codes meaning "this data is refused" (the rest are transient or bugs: retried)
_DATA_CODES = frozenset({6, 26, 27, 38, 41, 53, 69, 70, 72, 117, 131})
# TIMEOUT_EXCEEDED, TOO_MANY_SIMULTANEOUS_QUERIES, SOCKET_TIMEOUT, NETWORK_ERROR: the server is not answering now
_UNAVAILABLE_CODES = frozenset({159, 202, 209, 210})
_EVENTS_INSERT = f"INSERT INTO events ({sql.SELECT_EVENTS}) VALUES"
_KEYS = [("tenant_id", "String"), ("event_id", "String")]
_OPTIONAL_SETTINGS = ("max_partitions_per_insert_block", "mutations_sync")


def check_url(url: str) -> None:
    """TEA speaks ClickHouse's native protocol: a URL of another scheme is refused at once (the native
    driver, pointed at the HTTP port, would wait for a reply that never comes), with the URL to use."""
    parts = urlsplit(url)
    if parts.scheme in ("clickhouse", "clickhouses"):
        return
    if parts.scheme not in ("http", "https"):
        raise ConfigError("invalid clickhouse_url: it must start with clickhouse:// (or clickhouses:// for TLS), "
                          "e.g. clickhouse://user:password@host:9000/database")
    secure = parts.scheme == "https"
    login = parts.username + (":***" if parts.password is not None else "") + "@" if parts.username else ""
    suggested = f"{'clickhouses' if secure else 'clickhouse'}://{login}{parts.hostname}:{9440 if secure else 9000}" \
                f"{parts.path or '/default'}"
    raise ConfigError(f"invalid clickhouse_url: {parts.scheme}:// is ClickHouse's HTTP interface; TEA speaks its "
                      f"native protocol (the server's tcp_port, {9440 if secure else 9000} by default): use "
                      f"{suggested}")


class ClickHouseStorage(ClickHouseStores):
    name: ClassVar[str] = "clickhouse"
    persistent: ClassVar[bool] = True

    def __init__(self, url: str, *, dedup_window_us: int = 3_600_000_000, dedup_same_time: bool = True,
                 readers: int = 4, final_reads: bool = False, timeout_s: float = 30.0, insert_block_rows: int = 65536,
                 read_timeout_s: float = 2.0, probe_timeout_s: float = 1.0) -> None:
        self.url = url
        self.health = StorageHealth(self.name, self._ping, read_timeout_s=read_timeout_s,
                                    probe_timeout_s=probe_timeout_s)
        self.dedup_window_us = dedup_window_us
        self.dedup_same_time = dedup_same_time
        self.signals = clickhouse_signals.ClickHouseSignals(self)  # metric points and log records
        self.final_reads = final_reads
        self.timeout_s = timeout_s
        self._host, self._kwargs = parse_url(url)
        self._kwargs.setdefault("connect_timeout", min(timeout_s, 10.0))
        self._kwargs.setdefault("send_receive_timeout", timeout_s)
        # the driver's client setting (not the server's): an insert is serialized and sent a block at a time
        self._kwargs["settings"] = {"insert_block_size": insert_block_rows, **self._kwargs.get("settings", {})}
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="tea-clickhouse-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="tea-clickhouse-reader")
        self._local = threading.local()
        self._clients: list[Client] = []
        self._lock = threading.Lock()
        self._last_version = 0
        self._supported: set[str] = set()
        self._replacing: set[str] = set()  # projection tables that collapse rows of one identity (see schema)
        self._closed = False

    @classmethod
    def from_settings(cls, settings: "Settings") -> "ClickHouseStorage":
        if not settings.clickhouse_url:
            raise ConfigError("invalid clickhouse_url=None: storage_backend=clickhouse needs TEA_CLICKHOUSE_URL "
                              "(clickhouse://user:password@host:9000/database)")
        check_url(settings.clickhouse_url)
        return cls(settings.clickhouse_url, dedup_window_us=settings.storage.dedup_window_us,
                   dedup_same_time=settings.storage.dedup_same_time,
                   readers=settings.clickhouse.readers, final_reads=settings.clickhouse.final_reads,
                   timeout_s=settings.clickhouse.timeout_s, insert_block_rows=settings.clickhouse.insert_block_rows,
                   read_timeout_s=settings.storage.read_timeout_s, probe_timeout_s=settings.storage.probe_timeout_s)

    # ----------------------------------------------------------------- connections
    def _client(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = Client(self._host, **self._kwargs)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(client, *args)``, turning driver failures into StorageError / StorageDataError."""
        client = self._client()
        try:
            return fn(client, *args)
        except errors.ServerException as exc:
            if exc.code in _DATA_CODES:
                raise StorageDataError(f"clickhouse refused the data: {first_line(exc)}") from exc
            if exc.code in _UNAVAILABLE_CODES:
                raise StorageUnavailable(f"clickhouse: {first_line(exc)}") from exc
            raise StorageError(f"clickhouse: {first_line(exc)}") from exc
        except (errors.TypeMismatchError, errors.TooLargeStringSize, TypeError, ValueError, OverflowError,
                struct.error) as exc:
            raise StorageDataError(f"clickhouse refused the data: {exc}") from exc
        except (errors.NetworkError, errors.SocketTimeoutError, EOFError, OSError) as exc:
            client.disconnect()  # the next call reconnects
            raise StorageUnavailable(f"clickhouse unavailable ({self._host}): {first_line(exc)}") from exc
        except errors.Error as exc:
            client.disconnect()  # (the connection's state is unknown after a protocol error)
            raise StorageError(f"clickhouse ({self._host}): {first_line(exc)}") from exc

    async def _on_writer(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, self._guarded, fn, *args)

    async def _on_reader(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(client, *args)`` on a reader thread, within the read bound (``StorageHealth.bounded``)."""
        return await self.health.bounded(
            asyncio.get_running_loop().run_in_executor(self._readers, self._guarded, fn, *args))

    async def _ping(self, timeout_s: float) -> None:
        """``SELECT 1`` on a connection of its own, off the reader threads (all may wait on a hung server)."""
        await asyncio.to_thread(self._ping_sync, timeout_s)

    def _ping_sync(self, timeout_s: float) -> None:
        client = Client(self._host, **{**self._kwargs, "connect_timeout": timeout_s, "send_receive_timeout": timeout_s})
        try:
            client.execute("SELECT 1")
        except (errors.Error, EOFError, OSError) as exc:
            raise StorageUnavailable(f"clickhouse unavailable ({self._host}): {first_line(exc)}") from exc
        finally:
            client.disconnect()

    async def _rows(self, query: str) -> list[tuple[Any, ...]]:
        return await self._on_reader(lambda client: client.execute(query))

    def _version(self) -> int:
        """Increasing per process (ns clock, bumped on ties): newest document/record wins."""
        with self._lock:
            self._last_version = max(time.time_ns(), self._last_version + 1)
            return self._last_version

    # ----------------------------------------------------------------- lifecycle
    async def open(self) -> None:
        await self._on_writer(self._open_sync)

    def _open_sync(self, client: Client) -> None:
        try:
            client.execute("SELECT 1")
        except errors.ServerException as exc:
            if exc.code != 81:  # UNKNOWN_DATABASE: create it, as a fresh install expects
                raise
            client.disconnect()
            admin = Client(self._host, **{**self._kwargs, "database": "default"})
            try:
                admin.execute(f"CREATE DATABASE IF NOT EXISTS `{self._kwargs['database']}`")
            finally:
                admin.disconnect()
        for statement in sql.schema():
            client.execute(statement)
        present = {row[0] for row in client.execute(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'events'")}
        for name in sql.ADDED_COLUMNS:  # an events table from before they existed: append them
            if name not in present:
                client.execute(f"ALTER TABLE events ADD COLUMN `{name}` {sql.COLUMN_TYPES[name]}")
        for statement in clickhouse_signals.schema():
            client.execute(statement)
        self._replacing = {row[0] for row in client.execute(
            f"SELECT name FROM system.tables WHERE database = currentDatabase() AND engine = 'ReplacingMergeTree' "
            f"AND {sql.in_list('name', tuple(TABLES))}")}
        names = ", ".join(lit(n) for n in _OPTIONAL_SETTINGS)
        self._supported = {row[0] for row in client.execute(f"SELECT name FROM system.settings WHERE name IN ({names})")}

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._readers.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.disconnect()

    # ----------------------------------------------------------------- writing
    async def write_batch(self, batch: Batch) -> WriteResult:
        if not batch.count:
            return WriteResult(0, 0)
        return await self._on_writer(self._write_sync, batch.ndjson(), batch.count)

    def _write_sync(self, client: Client, data: bytes, count: int) -> WriteResult:
        try:
            events = _ROWS.decode(b"[" + data.rstrip(b"\n").replace(b"\n", b",") + b"]")
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise StorageDataError(f"clickhouse: a batch event is not canonical: {exc}") from exc
        window, same_time = self.dedup_window_us, self.dedup_same_time
        by_key: dict[tuple[str, str], list[_Row]] = {}
        for event in sorted(events, key=lambda e: e.received_at):  # stable: line order breaks ties
            by_key.setdefault((event.tenant_id, event.event_id), []).append(event)
        stamps = [e.timestamp for e in events]
        # the stored times that can repeat: the batch's own, and the window around those the window applies to
        near = [e.timestamp for e in events if windowed(e.timestamp, e.received_at, same_time)]
        low, high = min(stamps), max(stamps)
        if near:
            low, high = min(low, min(near) - window), max(high, max(near) + window)
        stored = self._stored_times(client, list(by_key), low, high)
        rows = []
        for key, repeats in by_key.items():
            seen = list(stored.get(key, ()))  # an event repeats a stored or earlier one (tea.storage.dedup)
            for event in repeats:
                if not any(repeated(other, event.timestamp, event.received_at, window, same_time) for other in seen):
                    rows.append(event)
                seen.append(event.timestamp)
        if rows:
            settings = {"max_partitions_per_insert_block": 0} if "max_partitions_per_insert_block" in self._supported \
                else {}
            client.execute(_EVENTS_INSERT, _columns(rows), columnar=True, settings=settings)
        return WriteResult(len(rows), count - len(rows))

    def _stored_times(self, client: Client, keys: list[tuple[str, str]], start_us: int,
                      end_us: int) -> dict[tuple[str, str], list[int]]:
        tenants = sorted({k[0] for k in keys})
        data = [{"tenant_id": t, "event_id": e} for t, e in keys]
        rows = client.execute(sql.stored_times(tenants, start_us, end_us, "batch_keys"),
                              external_tables=[{"name": "batch_keys", "structure": _KEYS, "data": data}])
        times: dict[tuple[str, str], list[int]] = {}
        for tenant, event_id, stamp in rows:
            times.setdefault((tenant, event_id), []).append(stamp)
        return times

    async def purge_older_than(self, cutoff_us: int, tenant_ids: tuple[str, ...] | None = None,
                               exclude_tenant_ids: tuple[str, ...] = ()) -> int:
        return await self._on_writer(self._purge_sync, cutoff_us, tenant_ids, exclude_tenant_ids)

    def _purge_sync(self, client: Client, cutoff_us: int, tenant_ids: tuple[str, ...] | None,
                    exclude_tenant_ids: tuple[str, ...]) -> int:
        condition = sql.purge_condition(cutoff_us, tenant_ids, exclude_tenant_ids)
        count_sql = f"SELECT count() FROM events{' FINAL' if self.final_reads else ''} WHERE {condition}"
        doomed = client.execute(count_sql)[0][0]
        if not doomed:
            return 0
        if tenant_ids is None and not exclude_tenant_ids:
            # whole UTC days before the cutoff's day: drop their partitions (no rewrite at all)
            cutoff_day = int(time.strftime("%Y%m%d", time.gmtime(cutoff_us // 1_000_000)))
            parts = client.execute("SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase() "
                                   "AND table = 'events' AND active")
            for (partition,) in parts:
                if int(partition) < cutoff_day:
                    client.execute(f"ALTER TABLE events DROP PARTITION {int(partition)}")
            if not client.execute(count_sql)[0][0]:
                return doomed
        self._mutate(client, f"ALTER TABLE events DELETE WHERE {condition}")
        return doomed

    def _mutate(self, client: Client, statement: str, table: str = "events") -> None:
        """Run a mutation of ``table`` and wait for it (``mutations_sync`` where the server has it, else poll)."""
        if "mutations_sync" in self._supported:
            client.execute(statement, settings={"mutations_sync": 2})
            return
        client.execute(statement)
        deadline = time.monotonic() + max(self.timeout_s, 60.0)
        while client.execute("SELECT count() FROM system.mutations WHERE database = currentDatabase() "
                             f"AND table = {lit(table)} AND is_done = 0")[0][0]:
            if time.monotonic() > deadline:
                raise StorageError("clickhouse: a retention mutation is still running")
            time.sleep(0.05)

    async def retention_overrides(self) -> dict[str, int]:
        return {tenant: doc["hours"] for tenant, _, doc in await self.list_documents("tea.retention", None)}

    async def set_retention_override(self, tenant_id: str, hours: int | None) -> None:
        if hours is None:
            await self.delete_document("tea.retention", tenant_id, tenant_id)
        else:
            await self.put_document("tea.retention", tenant_id, tenant_id, {"hours": hours})

    # ----------------------------------------------------------------- reading events
    async def query_events(self, spec: QuerySpec) -> QueryResult:
        return await self._on_reader(self._query_sync, spec)

    def _query_sync(self, client: Client, spec: QuerySpec) -> QueryResult:
        d = sql.dialect(self.final_reads)
        total = client.execute(events.count(spec.filter, d)[0])[0][0] if spec.with_total else None
        rows = client.execute(events.page(spec, d)[0])
        return QueryResult([_event(row) for row in rows[: spec.limit]], total, len(rows) > spec.limit)

    async def count(self, filter: EventFilter | None = None) -> int:
        return (await self._rows(events.count(filter, sql.dialect(self.final_reads))[0]))[0][0]

    async def aggregate(self, spec: AggregateSpec) -> list[tuple[Any, ...]]:
        return await self._rows(events.aggregate(spec, sql.dialect(self.final_reads))[0])

    async def iter_events(self, filter: EventFilter, chunk_rows: int = 10000) -> AsyncIterator[list[Event]]:
        # its own connection, streamed block by block: at most a chunk (and a block) in memory
        client = Client(self._host, **self._kwargs)
        query = f"SELECT {sql.SELECT_EVENTS}{sql.scan(filter, self.final_reads)}"

        def start() -> Any:
            return self._guarded(lambda _: client.execute_iter(query, settings={"max_block_size": chunk_rows}))

        def take(rows: Any) -> list[tuple[Any, ...]]:
            return self._guarded(lambda _: list(itertools.islice(rows, chunk_rows)))
        running: list[Future[Any]] = []

        def on_reader(fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
            running[:] = [self._readers.submit(fn, *args)]
            return self.health.bounded(asyncio.wrap_future(running[0]))
        try:
            rows = await on_reader(start)
            while chunk := await on_reader(take, rows):
                yield [_event(row) for row in chunk]
        finally:
            if running and not running[0].done():  # given up on a hung server: the reader thread disconnects
                running[0].add_done_callback(lambda _: client.disconnect())  # (once done with the client)
            else:
                client.disconnect()

    async def existing_event_keys(self, tenant_id: str, event_ids: list[str], start_us: int,
                                  end_us: int) -> set[tuple[str, int]]:
        if not event_ids:
            return set()
        rows = await self._rows(f"SELECT DISTINCT event_id, timestamp FROM events WHERE tenant_id = {lit(tenant_id)} "
                                f"AND timestamp >= {lit(start_us)} AND timestamp <= {lit(end_us)} AND "
                                f"{sql.in_list('event_id', event_ids)}")
        return {(row[0], int(row[1])) for row in rows}

    async def traces(self, filter: EventFilter, *, service: str | None = None, min_duration_ms: float = 0.0,
                     errors: bool | None = None, limit: int = 100) -> list[TraceSummary]:
        rows = await self._rows(sql.traces(filter, service=service, min_duration_ms=min_duration_ms, errors=errors,
                                           limit=limit, final=self.final_reads))
        return [TraceSummary(r[0], r[1], r[2], r[3], r[4], r[5],
                             None if not r[6] or r[8] else r[7], None if not r[6] or r[10] else r[9], tuple(r[11]))
                for r in rows]


class _Row(msgspec.Struct, gc=False):
    """A canonical event as the writer hands it over: only its stored types (checked at ingest already).
    Untracked by the garbage collector, which otherwise costs more than decoding a large batch."""

    event_id: str
    tenant_id: str
    timestamp: int
    event_type: str
    received_at: int = 0
    source: str | None = None
    source_protocol: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    organization: str | None = None
    method: str | None = None
    target: str | None = None
    protocol: str | None = None
    status: str | None = None
    status_code: int | None = None
    duration_ms: float | None = None
    request_size: int | None = None
    response_size: int | None = None
    tokens_used: int | None = None
    cost: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    correlation_id: str | None = None
    tags: list[str] = []
    attributes: msgspec.Raw = msgspec.Raw(b"{}")
    tool: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


_ROWS = msgspec.json.Decoder(list[_Row])


def _columns(events: list[_Row]) -> list[list[Any]]:
    return [[bytes(e.attributes).decode() for e in events] if c == "attributes" else [getattr(e, c) for e in events]
            for c in COLUMNS]


def _event(row: tuple[Any, ...]) -> Event:
    values = dict(zip(COLUMNS, row))
    values["attributes"] = msgspec.Raw(values["attributes"].encode())
    return Event(**values)
