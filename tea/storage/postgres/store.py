"""The postgres backend: for teams that already run PostgreSQL.

psycopg 3 with an async connection pool; the schema is Alembic's (tea/migrations, applied at open
unless ``postgres.auto_migrate`` is false). Events go to a table RANGE-partitioned by UTC day on
``"timestamp"`` (BIGINT µs, so every filter and bucket is exact integer arithmetic); retention drops
whole partitions. A batch is one transaction: the buffer's NDJSON is COPYed as is into a temporary
table, typed there by ``json_to_record`` (no Python object per event), deduplicated, and inserted
with an anti-join against the stored keys at each event's time (within the dedup window of an event
stamped on arrival: tea.storage.dedup).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, AsyncIterator, ClassVar

import msgspec
import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tea.errors import ConfigError, StorageDataError, StorageError, StorageUnavailable
from tea.storage.health import StorageHealth, first_line, retrieved
from tea.storage.postgres import sql as q
from tea.storage.sql import comms, events
from tea.storage.postgres.copy import copy_lines
from tea.storage.postgres.signals import PostgresSignals
from tea.storage.postgres.stores import PostgresStores
from tea.timebuckets import DAY_US
from tea.timeutil import now_us
from tea.types import (COLUMNS, AggregateSpec, Batch, Event, EventFilter, QueryResult, QuerySpec, TraceSummary,
                       WriteResult)

if TYPE_CHECKING:
    from tea.settings import Settings

log = logging.getLogger(__name__)

# How json_to_record reads the buffer's NDJSON (absent keys are NULL)
_RECORD_TYPES = {
    "event_id": "text", "tenant_id": "text", "timestamp": "bigint", "received_at": "bigint", "status_code": "integer",
    "duration_ms": "float8", "request_size": "bigint", "response_size": "bigint", "tokens_used": "bigint",
    "cost": "float8", "tags": "text[]", "attributes": "json", "input_tokens": "bigint", "output_tokens": "bigint"}
_RECORD = ", ".join(f'"{c}" {_RECORD_TYPES.get(c, "text")}' for c in COLUMNS)
_QUOTED = ", ".join(f'"{c}"' for c in COLUMNS)
_STAGED = ", ".join("COALESCE(r.tags, '{}') AS tags" if c == "tags" else
                    "COALESCE(r.attributes, '{}') AS attributes" if c == "attributes" else f'r."{c}"' for c in COLUMNS)
_STAGE = (f"CREATE TEMP TABLE tea_staged ON COMMIT DROP AS SELECT l.n AS tea_n, {_STAGED} "
          f"FROM tea_lines l CROSS JOIN LATERAL json_to_record(l.line::json) AS r({_RECORD})")
_DAYS = (f"SELECT COALESCE(array_agg(DISTINCT {q.DIALECT.floor_to(q.TS, DAY_US)}), '{{}}'), min({q.TS}), max({q.TS}) "
         f"FROM tea_staged")
_LOCK_TIMEOUT = "5s"  # creating or dropping a partition waits this long for readers, then retries later
_BOUND = re.compile(r"FOR VALUES FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


def partition_name(day_us: int) -> str:
    return "events_" + datetime.fromtimestamp(day_us / 1e6, timezone.utc).strftime("%Y%m%d")


def _day(us: int) -> int:
    return us - us % DAY_US


class PostgresStorage(PostgresStores):
    name: ClassVar[str] = "postgres"
    persistent: ClassVar[bool] = True

    def __init__(self, url: str, *, dedup_window_us: int = 3_600_000_000, dedup_same_time: bool = True,
                 pool_min: int = 1, pool_max: int = 10,
                 auto_migrate: bool = True, connect_timeout_s: float = 10.0, read_timeout_s: float = 2.0,
                 probe_timeout_s: float = 1.0) -> None:
        self.url = url
        self.dedup_window_us = dedup_window_us
        self.dedup_same_time = dedup_same_time
        self.pool_min = min(pool_min, pool_max)
        self.pool_max = pool_max
        self.auto_migrate = auto_migrate
        self.connect_timeout_s = connect_timeout_s
        self.health = StorageHealth(self.name, self._ping, read_timeout_s=read_timeout_s,
                                    probe_timeout_s=probe_timeout_s)
        self.signals = PostgresSignals(self)  # metric points and log records
        self._pool: AsyncConnectionPool | None = None
        self._days: set[int] = set()  # partitions known to exist (day starts)
        self._closed = False

    @classmethod
    def from_settings(cls, settings: "Settings") -> "PostgresStorage":
        if not settings.postgres_url:
            raise ConfigError("invalid postgres_url=None: storage_backend=postgres needs TEA_POSTGRES_URL "
                              "(or ANALYTICS_DATABASE_URL) set to postgresql://user:password@host:5432/database")
        return cls(settings.postgres_url, dedup_window_us=settings.storage.dedup_window_us,
                   dedup_same_time=settings.storage.dedup_same_time,
                   pool_max=settings.postgres.pool_max, auto_migrate=settings.postgres.auto_migrate,
                   read_timeout_s=settings.storage.read_timeout_s, probe_timeout_s=settings.storage.probe_timeout_s)

    # ----------------------------------------------------------------- lifecycle
    async def open(self) -> None:
        from tea import migrations

        try:
            if self.auto_migrate:
                await asyncio.to_thread(migrations.upgrade, self.url)
            else:
                current, head = await asyncio.to_thread(migrations.current, self.url), migrations.head()
                if current != head:
                    raise StorageError(f"the database schema is at {current or 'nothing'}, this TEA needs {head}: "
                                       f"run `tea migrate` (or set postgres.auto_migrate=true)")
        except StorageError:
            raise
        except Exception as exc:  # SQLAlchemy / Alembic / driver errors alike
            raise StorageError(f"cannot migrate the PostgreSQL schema: {exc}") from exc
        self._pool = AsyncConnectionPool(self.url, min_size=self.pool_min, max_size=self.pool_max, open=False,
                                         timeout=self.connect_timeout_s, name="tea-postgres",
                                         kwargs={"autocommit": True, "client_encoding": "utf8",
                                                 "application_name": "tea",
                                                 "connect_timeout": max(2, round(self.connect_timeout_s))})
        try:
            await self._pool.open(wait=True, timeout=self.connect_timeout_s)
        except PoolTimeout as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
        self._days = {lo for lo, _, _ in await self._partitions()}

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            await self._pool.close()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection (autocommit), waited for at most ``connect_timeout_s``; driver failures
        become StorageError / StorageDataError, and a server that is gone or refuses, or a pool that stays
        empty, StorageUnavailable. (Reads are bounded sooner by ``health.bounded``: its probe tells a hung
        server from a busy pool.)"""
        if self._pool is None:
            raise StorageError("postgres storage is not open")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except (pg_errors.DataError, pg_errors.IntegrityError) as exc:
            if isinstance(exc, pg_errors.CheckViolation) and "no partition" in str(exc):
                self._days.clear()  # another node dropped a partition we knew: look again on retry
                raise StorageError(f"postgres: {exc}") from exc
            raise StorageDataError(f"postgres refused the data: {exc}") from exc
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            # (OperationalError: refused, lost, canceled, too many connections; InterfaceError: closed)
            raise StorageUnavailable(f"postgres: {first_line(exc)}") from exc
        except psycopg.Error as exc:
            raise StorageError(f"postgres: {exc}") from exc

    async def _fetch(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Rows of one statement, within the read bound (``StorageHealth.bounded``)."""
        return await self.health.bounded(self._fetch_now(sql, params))

    async def _fetch_now(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        async with self._connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def _ping(self, timeout_s: float) -> None:
        """A trivial statement on a connection of its own (the pool's may all be stuck on a hung server)."""
        try:
            async with await psycopg.AsyncConnection.connect(self.url, connect_timeout=max(2, round(timeout_s)),
                                                             autocommit=True, application_name="tea-probe") as conn:
                await conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise StorageUnavailable(f"postgres: {first_line(exc)}") from exc

    async def _run(self, sql: str, params: Any = None) -> int:
        async with self._connection() as conn:
            cur = await conn.execute(sql, params)
            return cur.rowcount

    # ----------------------------------------------------------------- partitions
    async def _partitions(self) -> list[tuple[int, int, str]]:
        """``(from_us, to_us, name)`` of every partition of ``events``."""
        rows = await self._fetch("SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                                 "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass")
        out = []
        for name, bound in rows:
            match = _BOUND.search(bound or "")
            if match:  # (a DEFAULT partition someone added has no bounds: left alone)
                out.append((int(match.group(1)), int(match.group(2)), name))
        return sorted(out)

    async def _create_partitions(self, conn: psycopg.AsyncConnection[Any], days: list[int]) -> None:
        """(The caller adds ``days`` to the cache once they are committed.)"""
        for day in sorted(set(days) - self._days):
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF events "
                               f"FOR VALUES FROM ({day}) TO ({day + DAY_US})")

    async def _ensure_current_days(self) -> None:
        """Today's and tomorrow's partitions, outside any write transaction: live data never waits for DDL."""
        today = _day(now_us())
        wanted = [today, today + DAY_US]
        if all(d in self._days for d in wanted):
            return
        async with self._connection() as conn:
            await conn.execute(f"SET lock_timeout = '{_LOCK_TIMEOUT}'")
            try:
                await self._create_partitions(conn, wanted)
            finally:
                await conn.execute("RESET lock_timeout")
        self._days.update(wanted)

    # ----------------------------------------------------------------- writing
    async def write_batch(self, batch: Batch) -> WriteResult:
        if not batch.count:
            return WriteResult(0, 0)
        await self._ensure_current_days()
        window = self.dedup_window_us
        async with self._connection() as conn:
            async with conn.transaction():
                await copy_lines(conn, batch.chunks)  # (the buffer's chunks as they are: no joined copy)
                await conn.execute(_STAGE)
                row = await (await conn.execute(_DAYS)).fetchone()
                assert row is not None
                days, low, high = row
                if low is None:
                    return WriteResult(0, batch.count)
                new_days = [d for d in days if d not in self._days]
                if new_days:  # late or back-filled days: DDL inside the batch's transaction
                    await conn.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
                    await self._create_partitions(conn, new_days)
                # an event repeats a stored one, or one earlier in the batch
                cur = await conn.execute(
                    f"INSERT INTO events ({_QUOTED}) SELECT {_QUOTED} FROM tea_staged s WHERE NOT EXISTS ("
                    f"SELECT 1 FROM events e WHERE e.tenant_id = s.tenant_id AND e.event_id = s.event_id "
                    f'AND {self._repeats("e")} '
                    f'AND e."timestamp" BETWEEN {int(low) - window} AND {int(high) + window}) AND NOT EXISTS ('
                    f"SELECT 1 FROM tea_staged o WHERE o.tenant_id = s.tenant_id AND o.event_id = s.event_id "
                    f'AND o.tea_n < s.tea_n AND {self._repeats("o")})')
                written = cur.rowcount
        self._days.update(new_days)
        return WriteResult(written, batch.count - written)

    def _repeats(self, other: str) -> str:
        """SQL: row ``other`` (of the staged event ``s``'s key) repeats ``s`` (tea.storage.dedup)."""
        windowed = 's."timestamp" = s.received_at' if self.dedup_same_time else "TRUE"
        window = self.dedup_window_us
        return (f'({other}."timestamp" = s."timestamp" OR {windowed} AND {other}."timestamp" BETWEEN '
                f's."timestamp" - {window} AND s."timestamp" + {window})')

    async def purge_older_than(self, cutoff_us: int, tenant_ids: tuple[str, ...] | None = None,
                               exclude_tenant_ids: tuple[str, ...] = ()) -> int:
        if tenant_ids == ():
            return 0
        doomed, params = ["TRUE"], []
        for ids, negate in ((tenant_ids, False), (exclude_tenant_ids or None, True)):
            if ids is not None:
                clause, values = q.tenant_clause(ids, negate)
                doomed.append(clause)
                params.extend(values)
        condition = " AND ".join(doomed)
        deleted = 0
        for low, high, name in await self._partitions():
            if low >= cutoff_us:
                continue
            if high <= cutoff_us:
                deleted += await self._purge_partition(name, low, condition, params)
            else:
                deleted += await self._run(f'DELETE FROM {name} WHERE "timestamp" < %s AND {condition}',
                                           [cutoff_us, *params])
        return deleted

    async def _purge_partition(self, name: str, low: int, condition: str, params: list[Any]) -> int:
        """A partition wholly past the cutoff: dropped when every row in it is doomed, else its doomed rows deleted."""
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
                    survivors = await (await conn.execute(
                        f"SELECT EXISTS (SELECT 1 FROM {name} WHERE NOT ({condition}))", params)).fetchone()
                    if survivors and not survivors[0]:
                        count = await (await conn.execute(f"SELECT count(*) FROM {name}")).fetchone()
                        await conn.execute(f"DROP TABLE {name}")
                        self._days.discard(low)
                        log.info("postgres: dropped partition %s (%d events past retention)", name, count[0])
                        return count[0] if count else 0
            except pg_errors.LockNotAvailable:
                log.warning("postgres: partition %s is busy; deleting its rows instead of dropping it", name)
            cur = await conn.execute(f"DELETE FROM {name} WHERE {condition}", params)
            return cur.rowcount

    async def retention_overrides(self) -> dict[str, int]:
        return dict(await self._fetch("SELECT tenant_id, hours FROM tenant_retention"))  # type: ignore[arg-type]

    async def set_retention_override(self, tenant_id: str, hours: int | None) -> None:
        if hours is None:
            await self._run("DELETE FROM tenant_retention WHERE tenant_id = %s", [tenant_id])
        else:
            await self._run("INSERT INTO tenant_retention (tenant_id, hours) VALUES (%s, %s) ON CONFLICT (tenant_id) "
                            "DO UPDATE SET hours = EXCLUDED.hours, updated_at = now()", [tenant_id, hours])

    # ----------------------------------------------------------------- reading
    async def query_events(self, spec: QuerySpec) -> QueryResult:
        total, rows = await self.health.bounded(self._page(spec))
        return QueryResult([_row_to_event(r) for r in rows[: spec.limit]], total, len(rows) > spec.limit)

    async def _page(self, spec: QuerySpec) -> tuple[int | None, list[tuple[Any, ...]]]:
        async with self._connection() as conn:
            total = None
            if spec.with_total:
                total = (await (await conn.execute(*events.count(spec.filter, q.DIALECT))).fetchone())[0]  # type: ignore[index]
            cur = await conn.execute(*events.page(spec, q.DIALECT))
            return total, await cur.fetchall()

    async def count(self, filter: EventFilter | None = None) -> int:
        return (await self._fetch(*events.count(filter, q.DIALECT)))[0][0]

    async def aggregate(self, spec: AggregateSpec) -> list[tuple[Any, ...]]:
        return await self._fetch(*events.aggregate(spec, q.DIALECT))

    async def iter_events(self, filter: EventFilter, chunk_rows: int = 10000) -> AsyncIterator[list[Event]]:
        # the cursor lives in a task of its own, a chunk ahead: a read given up on a hung server leaves it
        # behind (its transaction ends whenever the server answers) instead of waiting for it here
        chunks: asyncio.Queue[list[Event] | BaseException | None] = asyncio.Queue(maxsize=1)
        producer = asyncio.ensure_future(self._stream(filter, chunk_rows, chunks))
        try:
            while (chunk := await self.health.bounded(chunks.get())) is not None:
                if isinstance(chunk, BaseException):
                    raise chunk
                yield chunk
        finally:
            producer.cancel()
            producer.add_done_callback(retrieved)

    async def _stream(self, filter: EventFilter, chunk_rows: int,
                      chunks: "asyncio.Queue[list[Event] | BaseException | None]") -> None:
        frm, params = q.scan(filter)
        try:
            async with self._connection() as conn:
                async with conn.transaction():
                    async with conn.cursor(name="tea_iter_events") as cur:
                        await cur.execute(f"SELECT {q.DIALECT.event_columns}{frm}", params)
                        while rows := await cur.fetchmany(chunk_rows):
                            await chunks.put([_row_to_event(r) for r in rows])
        except Exception as exc:  # (handed to the reader, which raises it)
            await chunks.put(exc)
        else:
            await chunks.put(None)

    async def existing_event_keys(self, tenant_id: str, event_ids: list[str], start_us: int,
                                  end_us: int) -> set[tuple[str, int]]:
        if not event_ids:
            return set()
        rows = await self._fetch('SELECT DISTINCT event_id, "timestamp" FROM events WHERE tenant_id = %s AND '
                                 '"timestamp" BETWEEN %s AND %s AND event_id = ANY(%s)',
                                 [tenant_id, start_us, end_us, event_ids])
        return {(r[0], r[1]) for r in rows}

    async def traces(self, filter: EventFilter, *, service: str | None = None, min_duration_ms: float = 0.0,
                     errors: bool | None = None, limit: int = 100) -> list[TraceSummary]:
        sql, params = q.traces(filter, service=service, min_duration_ms=min_duration_ms, errors=errors, limit=limit)
        rows = await self._fetch(sql, params)
        return [TraceSummary(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(r[8])) for r in rows]

    async def communication_groups(self, kind: str, filter: EventFilter) -> list[tuple[Any, ...]]:
        return await self._fetch(*comms.communication_groups(kind, filter, q.DIALECT))


def _row_to_event(row: tuple[Any, ...]) -> Event:
    values = dict(zip(COLUMNS, row))
    values["attributes"] = msgspec.Raw(values["attributes"].encode())
    return Event(**values)
