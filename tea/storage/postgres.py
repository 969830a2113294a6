"""The postgres backend: for teams that already run PostgreSQL.

psycopg 3 with an async connection pool; the schema is Alembic's (tea/migrations, applied at open
unless ``postgres.auto_migrate`` is false). Events go to a table RANGE-partitioned by UTC day on
``"timestamp"`` (BIGINT µs, so every filter and bucket is exact integer arithmetic); retention drops
whole partitions. A batch is one transaction: the buffer's NDJSON is COPYed as is into a temporary
table, typed there by ``json_to_record`` (no Python object per event), deduplicated, and inserted
with an anti-join against the stored keys within the dedup window of each event.
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

from tea.errors import ConfigError, StorageDataError, StorageError
from tea.storage import postgres_sql as q
from tea.storage.postgres_signals import PostgresSignals
from tea.storage.rows import TOKEN_COLUMNS, token_from_row
from tea.storage.projections import IDENTITY, TABLES, distinct_rows
from tea.timebuckets import DAY_US
from tea.timeutil import now_us
from tea.types import (COLUMNS, AggregateSpec, AuditRecord, Batch, DeadLetter, Event, EventFilter, QueryResult,
                       QuerySpec, TokenRecord, TraceSummary, WriteResult)

if TYPE_CHECKING:
    from tea.settings import Settings

log = logging.getLogger(__name__)

# How json_to_record reads the buffer's NDJSON (absent keys are NULL)
_RECORD_TYPES = {
    "event_id": "text", "tenant_id": "text", "timestamp": "bigint", "received_at": "bigint", "status_code": "integer",
    "duration_ms": "float8", "request_size": "bigint", "response_size": "bigint", "tokens_used": "bigint",
    "cost": "float8", "tags": "text[]", "attributes": "jsonb", "input_tokens": "bigint", "output_tokens": "bigint"}
_RECORD = ", ".join(f'"{c}" {_RECORD_TYPES.get(c, "text")}' for c in COLUMNS)
_QUOTED = ", ".join(f'"{c}"' for c in COLUMNS)
_STAGED = ", ".join("COALESCE(r.tags, '{}') AS tags" if c == "tags" else
                    "COALESCE(r.attributes, '{}') AS attributes" if c == "attributes" else f'r."{c}"' for c in COLUMNS)
# CSV with quote and delimiter bytes JSON never contains raw: each NDJSON line arrives untouched
_COPY_LINES = "COPY tea_lines (line) FROM STDIN (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"
_STAGE = (f"CREATE TEMP TABLE tea_staged ON COMMIT DROP AS SELECT l.n AS tea_n, {_STAGED} "
          f"FROM tea_lines l CROSS JOIN LATERAL json_to_record(l.line::json) AS r({_RECORD})")
_DAYS = (f"SELECT COALESCE(array_agg(DISTINCT {q.floor_to(q.TS, DAY_US)}), '{{}}'), min({q.TS}), max({q.TS}) "
         f"FROM tea_staged")
_COPY_CHUNK = 1 << 20
_LOCK_TIMEOUT = "5s"  # creating or dropping a partition waits this long for readers, then retries later
_BOUND = re.compile(r"FOR VALUES FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")
_DLQ_COLUMNS = ", ".join(f'"{c}"' for c in DeadLetter.__struct_fields__)
_AUDIT_COLUMNS = tuple(AuditRecord.__struct_fields__)
_lines = msgspec.json.Encoder()


async def _copy_lines(conn: psycopg.AsyncConnection[Any], chunks: list[bytes]) -> None:
    """COPY NDJSON ``chunks`` (whole lines in all) into the transaction's temporary ``tea_lines (n, line)``, one
    line a row, as is, at most ``_COPY_CHUNK`` bytes a write."""
    await conn.execute("CREATE TEMP TABLE tea_lines (n bigserial, line text) ON COMMIT DROP")
    async with conn.cursor().copy(_COPY_LINES) as copy:
        for chunk in chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), _COPY_CHUNK):
                await copy.write(view[start:start + _COPY_CHUNK])


def _from_lines(table: str, columns: tuple[str, ...], **exprs: str) -> str:
    """``INSERT INTO table (columns) SELECT …`` of the staged lines, each typed as a row of ``table`` (``r``;
    ``exprs`` replace a column's value), in the order of the lines."""
    names = ", ".join(f'"{c}"' for c in columns)
    values = ", ".join(exprs.get(c, f'r."{c}"') for c in columns)
    return (f"INSERT INTO {table} ({names}) SELECT {values} FROM tea_lines l "
            f"CROSS JOIN LATERAL json_populate_record(NULL::{table}, l.line::json) AS r ORDER BY l.n")


def partition_name(day_us: int) -> str:
    return "events_" + datetime.fromtimestamp(day_us / 1e6, timezone.utc).strftime("%Y%m%d")


def _day(us: int) -> int:
    return us - us % DAY_US


class PostgresStorage:
    name: ClassVar[str] = "postgres"
    persistent: ClassVar[bool] = True

    def __init__(self, url: str, *, dedup_window_us: int = 3_600_000_000, pool_min: int = 1, pool_max: int = 10,
                 auto_migrate: bool = True, connect_timeout_s: float = 10.0) -> None:
        self.url = url
        self.dedup_window_us = dedup_window_us
        self.pool_min = min(pool_min, pool_max)
        self.pool_max = pool_max
        self.auto_migrate = auto_migrate
        self.connect_timeout_s = connect_timeout_s
        self.signals = PostgresSignals(self)  # metric points and log records
        self._pool: AsyncConnectionPool | None = None
        self._days: set[int] = set()  # partitions known to exist (day starts)
        self._closed = False

    @classmethod
    def from_settings(cls, settings: "Settings") -> "PostgresStorage":
        if not settings.postgres_url:
            raise ConfigError("invalid postgres_url=None: storage_backend=postgres needs TEA_POSTGRES_URL "
                              "(or ANALYTICS_DATABASE_URL) set to postgresql://user:password@host:5432/database")
        return cls(settings.postgres_url, dedup_window_us=int(settings.storage.dedup_window_s * 1e6),
                   pool_max=settings.postgres.pool_max, auto_migrate=settings.postgres.auto_migrate)

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
                                                 "application_name": "tea"})
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
        """A pooled connection (autocommit); driver failures become StorageError / StorageDataError."""
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
        except (psycopg.Error, PoolTimeout) as exc:
            raise StorageError(f"postgres: {exc}") from exc

    async def _fetch(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        async with self._connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

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
                await _copy_lines(conn, batch.chunks)  # (the buffer's chunks as they are: no joined copy)
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
                # an event repeats a stored one, or one earlier in the batch, within the window of its own time
                cur = await conn.execute(
                    f"INSERT INTO events ({_QUOTED}) SELECT {_QUOTED} FROM tea_staged s WHERE NOT EXISTS ("
                    f"SELECT 1 FROM events e WHERE e.tenant_id = s.tenant_id AND e.event_id = s.event_id "
                    f'AND e."timestamp" BETWEEN s."timestamp" - {window} AND s."timestamp" + {window} '
                    f'AND e."timestamp" BETWEEN {int(low) - window} AND {int(high) + window}) AND NOT EXISTS ('
                    f"SELECT 1 FROM tea_staged o WHERE o.tenant_id = s.tenant_id AND o.event_id = s.event_id "
                    f'AND o.tea_n < s.tea_n AND o."timestamp" BETWEEN s."timestamp" - {window} AND s."timestamp" + {window})')
                written = cur.rowcount
        self._days.update(new_days)
        return WriteResult(written, batch.count - written)

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
        frm, params = q.scan(spec.filter)
        page, page_params = frm, list(params)
        if spec.after is not None:
            a = spec.after
            page = q.and_(frm, '("timestamp", event_id, tenant_id) < (%s, %s, %s)')
            page_params += [a.timestamp, a.event_id, a.tenant_id]
        async with self._connection() as conn:
            total = None
            if spec.with_total:
                total = (await (await conn.execute(f"SELECT count(*){frm}", params)).fetchone())[0]  # type: ignore[index]
            cur = await conn.execute(f"SELECT {q.SELECT_EVENT}{page} {q.ORDER} LIMIT %s", [*page_params, spec.limit + 1])
            rows = await cur.fetchall()
        return QueryResult([_row_to_event(r) for r in rows[: spec.limit]], total, len(rows) > spec.limit)

    async def count(self, filter: EventFilter | None = None) -> int:
        frm, params = q.scan(filter)
        return (await self._fetch(f"SELECT count(*){frm}", params))[0][0]

    async def aggregate(self, spec: AggregateSpec) -> list[tuple[Any, ...]]:
        sql, params = q.aggregate(spec)
        return await self._fetch(sql, params)

    async def iter_events(self, filter: EventFilter, chunk_rows: int = 10000) -> AsyncIterator[list[Event]]:
        frm, params = q.scan(filter)
        async with self._connection() as conn:
            async with conn.transaction():
                async with conn.cursor(name="tea_iter_events") as cur:
                    await cur.execute(f"SELECT {q.SELECT_EVENT}{frm}", params)
                    while rows := await cur.fetchmany(chunk_rows):
                        yield [_row_to_event(r) for r in rows]

    async def existing_event_ids(self, tenant_id: str, event_ids: list[str], start_us: int, end_us: int) -> set[str]:
        if not event_ids:
            return set()
        rows = await self._fetch('SELECT DISTINCT event_id FROM events WHERE tenant_id = %s AND "timestamp" '
                                 "BETWEEN %s AND %s AND event_id = ANY(%s)", [tenant_id, start_us, end_us, event_ids])
        return {r[0] for r in rows}

    async def traces(self, filter: EventFilter, *, service: str | None = None, min_duration_ms: float = 0.0,
                     errors: bool | None = None, limit: int = 100) -> list[TraceSummary]:
        sql, params = q.traces(filter, service=service, min_duration_ms=min_duration_ms, errors=errors, limit=limit)
        rows = await self._fetch(sql, params)
        return [TraceSummary(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(r[8])) for r in rows]

    async def communication_groups(self, kind: str, filter: EventFilter) -> list[tuple[Any, ...]]:
        sql, params = q.communication_groups(kind, filter)
        return await self._fetch(sql, params)

    # ----------------------------------------------------------------- tokens, audit, dead letters
    async def save_token(self, record: TokenRecord) -> None:
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in TOKEN_COLUMNS[1:])
        insert = _from_lines("api_tokens", TOKEN_COLUMNS, secret_sealed="decode(l.line::json->>'secret_sealed', "
                             "'base64')")  # (JSON carries bytes as base64)
        await self._load(_lines.encode_lines([record]), f"{insert} ON CONFLICT (token_id) DO UPDATE SET {updates}")

    async def _load(self, lines: bytes, insert: str) -> int:
        """Stage NDJSON ``lines`` (COPY) and run ``insert`` (from ``_from_lines``) on them, in one transaction."""
        async with self._connection() as conn:
            async with conn.transaction():
                await _copy_lines(conn, [lines])
                return (await conn.execute(insert)).rowcount

    async def find_token(self, *, token_hash: str | None = None, token_id: str | None = None) -> TokenRecord | None:
        column, value = ("token_id", token_id) if token_id is not None else ("token_hash", token_hash)
        rows = await self._fetch(f"SELECT {', '.join(TOKEN_COLUMNS)} FROM api_tokens WHERE {column} = %s", [value])
        return token_from_row(rows[0]) if rows else None

    async def list_tokens(self, tenant_id: str | None = None) -> list[TokenRecord]:
        where_tenant, params = (" WHERE tenant_id = %s", [tenant_id]) if tenant_id is not None else ("", [])
        rows = await self._fetch(f"SELECT {', '.join(TOKEN_COLUMNS)} FROM api_tokens{where_tenant} "
                                 f"ORDER BY created_at DESC, token_id", params)
        return [token_from_row(r) for r in rows]

    async def append_audit(self, records: list[AuditRecord]) -> None:
        if records:
            await self._load(_lines.encode_lines(records), _from_lines("audit_log", _AUDIT_COLUMNS))

    async def query_audit(self, *, action: str | None = None, tenant_id: str | None = None,
                          start_us: int | None = None, end_us: int | None = None,
                          limit: int = 100) -> list[AuditRecord]:
        clauses, params = ["TRUE"], []
        for clause, value in (("action = %s", action), ("tenant_id = %s", tenant_id), ('"at" >= %s', start_us),
                              ('"at" < %s', end_us)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        rows = await self._fetch(f'SELECT "at", action, actor, tenant_id, remote_addr, success, reason, details::text '
                                 f'FROM audit_log WHERE {" AND ".join(clauses)} ORDER BY "at" DESC, seq DESC LIMIT %s',
                                 [*params, limit])
        return [AuditRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], msgspec.json.decode(r[7])) for r in rows]

    async def purge_audit_older_than(self, cutoff_us: int) -> int:
        return await self._run('DELETE FROM audit_log WHERE "at" < %s', [cutoff_us])

    async def purge_records_older_than(self, cutoff_us: int) -> int:
        return await self._run('DELETE FROM records WHERE "at" < %s', [cutoff_us])

    async def add_dead_letter(self, entry: DeadLetter) -> None:
        await self._load(_lines.encode_lines([entry]), _from_lines("dead_letters", DeadLetter.__struct_fields__))

    async def list_dead_letters(self, *, limit: int = 100, include_replayed: bool = False) -> list[DeadLetter]:
        where_sql = "" if include_replayed else " WHERE replayed_at IS NULL"
        rows = await self._fetch(f'SELECT {_DLQ_COLUMNS} FROM dead_letters{where_sql} ORDER BY "at" DESC, id LIMIT %s',
                                 [limit])
        return [DeadLetter(*r) for r in rows]

    async def mark_replayed(self, entry_id: str, at_us: int) -> None:
        await self._run("UPDATE dead_letters SET replayed_at = %s WHERE id = %s", [at_us, entry_id])

    # ----------------------------------------------------------------- analytics projections
    async def write_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        fresh = distinct_rows(rows)
        if fresh:  # (a row already stored is skipped by the unique index on IDENTITY)
            identity = ", ".join(f'"{c}"' for c in IDENTITY)
            await self._load(_lines.encode_lines(fresh),
                             f"{_from_lines(table, TABLES[table])} ON CONFLICT ({identity}) DO NOTHING")

    async def query_rows(self, table: str, *, tenant_ids: tuple[str, ...] | None, filters: dict[str, Any],
                         start_us: int | None = None, end_us: int | None = None,
                         limit: int = 100) -> list[dict[str, Any]]:
        columns = TABLES[table]
        clauses, params = ["TRUE"], []
        if tenant_ids is not None:
            clause, values = q.tenant_clause(tenant_ids)
            clauses.append(clause)
            params.extend(values)
        for key, value in filters.items():
            if key not in columns:
                raise ValueError(f"{table} has no column {key!r}")
            # (an integer column compared with text: as text, so a non-number simply matches nothing)
            clauses.append(f'"{key}"::text = %s' if isinstance(value, str) else f'"{key}" = %s')
            params.append(value)
        for clause, value in (('"timestamp" >= %s', start_us), ('"timestamp" < %s', end_us)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        select = ", ".join("event_metadata::text" if c == "event_metadata" else "id::text" if c == "id" else f'"{c}"'
                           for c in columns)
        rows = await self._fetch(f'SELECT {select} FROM {table} WHERE {" AND ".join(clauses)} '
                                 f'ORDER BY "timestamp" DESC, id LIMIT %s', [*params, limit])
        out = [dict(zip(columns, r)) for r in rows]
        for row in out:
            row["event_metadata"] = msgspec.json.decode(row["event_metadata"]) if row["event_metadata"] else None
        return out

    async def projection_report(self, report: str, *, tenant_ids: tuple[str, ...] | None,
                                since_us: int) -> list[dict[str, Any]]:
        scope, params = "", []
        if tenant_ids is not None:
            clause, params = q.tenant_clause(tenant_ids)
            scope = " AND " + clause
        if report == "summary":
            sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t} WHERE TRUE{scope}" for t in TABLES)
            counts = dict(await self._fetch(sql, params * len(TABLES)))  # type: ignore[arg-type]
            return [{"table_name": t, "count": counts[t]} for t in TABLES]
        if report == "recent_activity":
            rows = await self._fetch(f'SELECT event_type, count(*) AS n, max("timestamp") FROM user_activity '
                                     f'WHERE "timestamp" > %s{scope} GROUP BY event_type ORDER BY n DESC, event_type',
                                     [since_us, *params])
            return [{"event_type": r[0], "count": r[1], "latest": r[2]} for r in rows]
        rows = await self._fetch(f"SELECT endpoint, method, count(*) AS hits, avg(duration_ms) FROM endpoint_usage "
                                 f'WHERE "timestamp" > %s{scope} GROUP BY endpoint, method '
                                 f"ORDER BY hits DESC, endpoint, method NULLS FIRST LIMIT 10", [since_us, *params])
        return [{"endpoint": r[0], "method": r[1], "hits": r[2], "avg_duration_ms": r[3]} for r in rows]

    # ------------------------------------------------------------ documents and records
    async def put_document(self, kind: str, tenant_id: str, key: str, doc: dict[str, Any]) -> None:
        await self.put_documents(kind, [(tenant_id, key, doc)])

    async def put_documents(self, kind: str, docs: list[tuple[str, str, dict[str, Any]]]) -> None:
        latest = {(tenant, key): doc for tenant, key, doc in docs}  # (a key given twice: the last one wins)
        if latest:
            lines = _lines.encode_lines({"kind": kind, "tenant_id": t, "key": k, "doc": d} for (t, k), d in latest.items())
            await self._load(lines, f"{_from_lines('documents', ('kind', 'tenant_id', 'key', 'doc'))} "
                                    f"ON CONFLICT (kind, tenant_id, key) DO UPDATE SET doc = EXCLUDED.doc")

    async def get_document(self, kind: str, tenant_id: str, key: str) -> dict[str, Any] | None:
        rows = await self._fetch("SELECT doc::text FROM documents WHERE kind = %s AND tenant_id = %s AND key = %s",
                                 [kind, tenant_id, key])
        return msgspec.json.decode(rows[0][0]) if rows else None

    async def list_documents(self, kind: str, tenant_ids: tuple[str, ...] | None) -> list[tuple[str, str, dict[str, Any]]]:
        scope, params = "", []
        if tenant_ids is not None:
            clause, params = q.tenant_clause(tenant_ids)
            scope = " AND " + clause
        rows = await self._fetch(f"SELECT tenant_id, key, doc::text FROM documents WHERE kind = %s{scope} "
                                 f"ORDER BY tenant_id, key", [kind, *params])
        return [(r[0], r[1], msgspec.json.decode(r[2])) for r in rows]

    async def delete_document(self, kind: str, tenant_id: str, key: str) -> bool:
        return await self._run("DELETE FROM documents WHERE kind = %s AND tenant_id = %s AND key = %s",
                               [kind, tenant_id, key]) > 0

    async def append_records(self, kind: str, records: list[tuple[str, int, dict[str, Any]]]) -> None:
        if records:
            lines = _lines.encode_lines({"kind": kind, "tenant_id": t, "at": at, "body": body} for t, at, body in records)
            await self._load(lines, _from_lines("records", ("kind", "tenant_id", "at", "body")))

    async def query_records(self, kind: str, *, tenant_ids: tuple[str, ...] | None, filters: dict[str, str] | None = None,
                            start_us: int | None = None, end_us: int | None = None,
                            limit: int = 100) -> list[tuple[str, int, dict[str, Any]]]:
        clauses, params = ["kind = %s"], [kind]
        if tenant_ids is not None:
            clause, values = q.tenant_clause(tenant_ids)
            clauses.append(clause)
            params.extend(values)
        for key, value in (filters or {}).items():
            clauses.append("body ->> %s = %s")
            params.extend([key, value])
        for clause, value in (('"at" >= %s', start_us), ('"at" < %s', end_us)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        rows = await self._fetch(f'SELECT tenant_id, "at", body::text FROM records WHERE {" AND ".join(clauses)} '
                                 f'ORDER BY "at" DESC, seq DESC LIMIT %s', [*params, limit])
        return [(r[0], r[1], msgspec.json.decode(r[2])) for r in rows]


def _row_to_event(row: tuple[Any, ...]) -> Event:
    values = dict(zip(COLUMNS, row))
    values["attributes"] = msgspec.Raw(values["attributes"].encode())
    return Event(**values)
