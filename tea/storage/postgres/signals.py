"""Metric points and log records in PostgreSQL: the buffer's lines copied in as text and turned into
typed rows by ``json_to_record`` in one statement per batch (``ON CONFLICT DO NOTHING`` on (tenant_id,
id)); json columns keep the attributes' text exactly as received."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from tea.signals.model import LogRecord, MetricPoint, PointQuery, RecordQuery, SeriesKey
from tea.storage.duckdb import signals as duckdb_signals
from tea.storage.postgres.sql import DIALECT
from tea.storage.sql.signals import conjunction, purge_where, where


_COUNT = "numeric"
_METRIC_TYPES = ("name text, kind text, unit text, temporality text, monotonic boolean, start_us bigint, value float8, "
                 f"count {_COUNT}, sum float8, min float8, max float8, bounds float8[], counts {_COUNT}[], scale integer, "
                 f"zero_count {_COUNT}, positive_offset integer, positive_counts {_COUNT}[], negative_offset integer, "
                 f"negative_counts {_COUNT}[], quantiles float8[], flags bigint")
_LINE = ('CROSS JOIN LATERAL json_to_record(l.line::json) AS r(tenant_id text, event_id text, "timestamp" bigint, '
         "received_at bigint, source text, trace_id text, span_id text, attributes json)")
_PAYLOAD = ("COALESCE(r.attributes -> 'attributes', '{}'), COALESCE(r.attributes -> 'resource', '{}'), "
            "r.attributes ->> 'scope'")
_DATA = duckdb_signals._DATA
_POINTS = (f"INSERT INTO metric_points SELECT r.tenant_id, r.event_id, r.\"timestamp\", r.received_at, r.source, "
           + ", ".join("COALESCE(m.unit, '')" if c == "unit" else f"m.{c}" for c in _DATA)
           + f", {_PAYLOAD} FROM tea_signal_lines l {_LINE} CROSS JOIN LATERAL json_to_record(r.attributes -> 'metric') "
           f"AS m({_METRIC_TYPES}) ON CONFLICT (tenant_id, id) DO NOTHING")
_BODY = "(r.attributes -> 'log' -> 'body')"
_RECORDS = ("INSERT INTO log_records SELECT r.tenant_id, r.event_id, r.\"timestamp\", r.received_at, r.source, "
            "COALESCE(g.severity_number, 0), COALESCE(g.severity_text, ''), "
            f"CASE json_typeof({_BODY}) WHEN 'string' THEN {_BODY} #>> '{{}}' WHEN 'null' THEN NULL "
            f"ELSE {_BODY}::text END, COALESCE(json_typeof({_BODY}) NOT IN ('string', 'null'), false), "
            f"g.observed_us, g.event_name, g.flags, {_PAYLOAD}, r.trace_id, r.span_id FROM tea_signal_lines l {_LINE} "
            "CROSS JOIN LATERAL json_to_record(r.attributes -> 'log') AS g(severity_number integer, severity_text text, "
            "observed_us bigint, event_name text, flags bigint) ON CONFLICT (tenant_id, id) DO NOTHING")
_COPY = "COPY tea_signal_lines (line) FROM STDIN (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"
_POINT_COLUMNS = 'tenant_id, id, "timestamp", service, ' + ", ".join(_DATA) + ", attributes::text, resource::text, scope"
_RECORD_COLUMNS = ('tenant_id, id, "timestamp", service, severity_number, severity_text, body, body_json, observed_us, '
                   "event_name, flags, attributes::text, resource::text, scope, trace_id, span_id")
_BUCKETS = {"day": "day", "month": "month", "hour": "hour"}


def _plain(value: Any) -> Any:
    """numeric (uint64 counts) as int, arrays of them too."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class PostgresSignals:
    def __init__(self, storage: Any) -> None:
        self.storage = storage

    async def _load(self, statement: str, lines: list[bytes]) -> int:
        async with self.storage._connection() as conn:
            async with conn.transaction():
                await conn.execute("CREATE TEMP TABLE tea_signal_lines (line text) ON COMMIT DROP")
                async with conn.cursor().copy(_COPY) as copy:
                    for line in lines:
                        await copy.write(line)
                cur = await conn.execute(statement)
                return max(cur.rowcount, 0)

    async def write_points(self, lines: list[bytes]) -> int:
        return await self._load(_POINTS, lines)

    async def write_records(self, lines: list[bytes]) -> int:
        return await self._load(_RECORDS, lines)

    async def points(self, q: PointQuery) -> list[MetricPoint]:
        clauses, params = where(q, DIALECT)
        rows = await self.storage._fetch(f"SELECT {_POINT_COLUMNS} FROM metric_points{conjunction(clauses)} "
                                         'ORDER BY "timestamp", id LIMIT %s', [*params, q.limit + 1])
        return [duckdb_signals.point_of(tuple(_plain(v) for v in row)) for row in rows]

    async def series(self, q: PointQuery) -> list[SeriesKey]:
        clauses, params = where(q, DIALECT)
        rows = await self.storage._fetch("SELECT DISTINCT tenant_id, name, kind, service, attributes::text, unit, "
                                         f"temporality, monotonic FROM metric_points{conjunction(clauses)}", params)
        return [SeriesKey(*row) for row in rows]

    async def records(self, q: RecordQuery) -> list[LogRecord]:
        clauses, params = where(q, DIALECT)
        rows = await self.storage._fetch(f"SELECT {_RECORD_COLUMNS} FROM log_records{conjunction(clauses)} "
                                         'ORDER BY "timestamp" DESC, id DESC LIMIT %s', [*params, q.limit + 1])
        return [duckdb_signals.record_of(row) for row in rows]

    async def counts(self, tenant_ids: tuple[str, ...] | None, start_us: int, end_us: int,
                     bucket: str) -> list[tuple[int, str, str, int]]:
        clauses, params = where(RecordQuery(tenant_ids=tenant_ids, start_us=start_us, end_us=end_us), DIALECT)
        b = (f"(extract(epoch FROM date_trunc('{_BUCKETS[bucket]}', timestamp 'epoch' + \"timestamp\" * "
             "interval '1 microsecond')) * 1000000)::bigint")
        sql = " UNION ALL ".join(f"SELECT {b}, tenant_id, '{table}', count(*) FROM {table}{conjunction(clauses)} "
                                 "GROUP BY 1, 2" for table in ("metric_points", "log_records"))
        return [tuple(row) for row in await self.storage._fetch(sql, params + params)]  # type: ignore[misc]

    async def purge_older_than(self, cutoff_us: int, tenant_ids: tuple[str, ...] | None = None,
                               exclude_tenant_ids: tuple[str, ...] = ()) -> int:
        condition, params = purge_where(cutoff_us, tenant_ids, exclude_tenant_ids, DIALECT)
        return sum([await self.storage._run(f"DELETE FROM {t}{condition}", params)
                    for t in ("metric_points", "log_records")])
