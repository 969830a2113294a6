"""PostgreSQL's SQL dialect (for the compiler, ``tea.storage.sql``) and its trace summaries, with psycopg
parameters.

Timestamps are BIGINT UTC microseconds, so filters, cursors and fixed-width buckets are exact integer
arithmetic (floor division, also before 1970); months go through ``timestamp 'epoch'`` without a
time zone, which is UTC whatever the session's TimeZone says. ``%`` is psycopg's placeholder
character: the SQL here uses ``mod()`` instead.
"""
from __future__ import annotations

from typing import Any

from tea.storage.sql import FLOAT_COLUMNS, Dialect
from tea.storage.sql.events import scan as compile_scan
from tea.types import COLUMNS, EventFilter

TS = '"timestamp"'


def exact_sum(column: str) -> str:
    """The sum of a float8 column as (nearly) exact numeric: float8 → numeric keeps only 15 digits, so the
    residual each value loses is added back (it is exact in float8), giving ~30 significant digits — the
    same float8 as Python's math.fsum and DuckDB's fsum except at exact rounding ties."""
    return f"sum({column}::numeric + ({column} - {column}::numeric::float8)::numeric)"


class PostgresDialect(Dialect):
    mark = "%s"
    ts = TS
    null_bigint = "NULL::bigint"
    row_compare = True
    event_columns = ", ".join("attributes::text" if c == "attributes" else TS if c == "timestamp" else c
                              for c in COLUMNS)

    def in_list(self, params: list[Any], column: str, values: tuple[str, ...], negate: bool = False) -> str:
        if len(values) <= 1:
            return super().in_list(params, column, values, negate)
        return f"{column} {'<> ALL' if negate else '= ANY'}({self.bind(params, list(values))})"

    def attribute(self, params: list[Any], key: str) -> str:
        return f"(attributes ->> {self.bind(params, key)})"

    def json_texts(self, column: str, keys: tuple[str, ...]) -> tuple[str, list[str]]:
        return "", [f"{column}->>'{key}'" for key in keys]

    def mod(self, a: str, b: str) -> str:
        return f"mod({a}, {b})"

    def month_bucket(self) -> str:
        return (f"(extract(epoch FROM date_trunc('month', timestamp 'epoch' + {TS} * interval '1 microsecond'))"
                f" * 1000000)::bigint")

    def sum(self, column: str) -> str:
        return f"{exact_sum(column)}::float8" if column in FLOAT_COLUMNS else f"sum({column})::bigint"

    def avg(self, column: str) -> str:  # the rounded sum divided by the count, as fsum(values) / len(values)
        total = exact_sum(column) if column in FLOAT_COLUMNS else f"sum({column})"
        return f"({total}::float8 / NULLIF(count({column}), 0))"

    def quantile(self, column: str, q: float) -> str:  # linear interpolation between the closest ranks, in float8
        return f"percentile_cont({float(q)!r}) WITHIN GROUP (ORDER BY {column}::float8)"

    def quantiles(self, column: str, qs: list[float]) -> str | None:  # (the values sorted once)
        points = ", ".join(repr(float(q)) for q in qs)
        return f"percentile_cont(ARRAY[{points}]::float8[]) WITHIN GROUP (ORDER BY {column}::float8)"

    def sorted_values(self, column: str) -> str:
        return f"(array_agg({column} ORDER BY {column}) FILTER (WHERE {column} IS NOT NULL))"


DIALECT = PostgresDialect()


def tenant_clause(tenant_ids: tuple[str, ...], negate: bool = False) -> tuple[str, list[Any]]:
    params: list[Any] = []
    return DIALECT.in_list(params, "tenant_id", tenant_ids, negate), params


def scan(f: EventFilter | None) -> tuple[str, list[Any]]:
    """`` FROM events WHERE <filter>`` and its parameters (partitions are pruned by the time bounds)."""
    return compile_scan(f, DIALECT)


def and_(frm: str, clause: str) -> str:
    return frm + (" AND " if " WHERE " in frm else " WHERE ") + clause


def traces(f: EventFilter, *, service: str | None, min_duration_ms: float, errors: bool | None,
           limit: int) -> tuple[str, list[Any]]:
    frm, params = scan(f)
    frm = and_(frm, "event_type = 'span' AND trace_id IS NOT NULL")
    roots = "FILTER (WHERE parent_span_id IS NULL)"
    inner = (f'SELECT trace_id, tenant_id, min("timestamp") AS start_us, '
             f'max("timestamp" + trunc(COALESCE(duration_ms, 0) * 1000)::bigint) AS end_us, '
             f"count(*) AS span_count, count(*) FILTER (WHERE status = 'error') AS error_count, "
             f'(array_agg(method ORDER BY "timestamp", event_id) {roots})[1] AS root_name, '
             f'(array_agg(source ORDER BY "timestamp", event_id) {roots})[1] AS root_service, '
             f"COALESCE(array_agg(DISTINCT source ORDER BY source) FILTER (WHERE source IS NOT NULL), '{{}}') "
             f"AS services{frm} GROUP BY tenant_id, trace_id")
    conditions = ["end_us - start_us >= %s"]
    extra: list[Any] = [int(min_duration_ms * 1000)]
    if service is not None:
        conditions.append("%s = ANY(services)")
        extra.append(service)
    if errors is not None:
        conditions.append("error_count > 0" if errors else "error_count = 0")
    sql = (f"SELECT trace_id, tenant_id, start_us, end_us, span_count, error_count, root_name, root_service, "
           f"services FROM ({inner}) t WHERE {' AND '.join(conditions)} ORDER BY start_us DESC, trace_id LIMIT %s")
    return sql, [*params, *extra, limit]
