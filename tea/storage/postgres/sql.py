"""Compile the neutral specs (EventFilter, AggregateSpec, traces) into PostgreSQL with psycopg parameters.

Timestamps are BIGINT UTC microseconds, so filters, cursors and fixed-width buckets are exact integer
arithmetic (floor division, also before 1970); months go through ``timestamp 'epoch'`` without a
time zone, which is UTC whatever the session's TimeZone says. ``%`` is psycopg's placeholder
character: the SQL here uses ``mod()`` instead.
"""
from __future__ import annotations

from typing import Any

from tea.storage.sql_common import at_most
from tea.timebuckets import DAY_US, FIXED_US, WEEK_US
from tea.types import COLUMNS, FILTER_COLUMNS, RANK_MERGE, Agg, AggregateSpec, EventFilter

IS_ERROR = ("(status IN ('error', 'timeout') OR (status IS NULL AND (error_type IS NOT NULL "
            "OR status_code >= 400 OR status_code < 0)))")
TS = '"timestamp"'
SELECT_EVENT = ", ".join("attributes::text" if c == "attributes" else '"timestamp"' if c == "timestamp" else c
                         for c in COLUMNS)
ORDER = 'ORDER BY "timestamp" DESC, event_id DESC, tenant_id DESC'
_MONDAY_OFFSET_US = 3 * DAY_US  # 1970-01-01 was a Thursday; ISO weeks start on Monday
_EXACT_FLOAT = ("duration_ms", "cost")


def floor_to(expr: str, width: int, offset: int = 0) -> str:
    """Start of the ``width``-µs bucket holding ``expr`` (floor, also for negative values)."""
    shifted = f"({expr} + {offset})" if offset else expr
    return f"({shifted} - mod(mod({shifted}, {width}) + {width}, {width}){f' - {offset}' if offset else ''})"


def bucket_sql(bucket: str, expr: str = TS) -> str:
    if bucket in FIXED_US:
        return floor_to(expr, FIXED_US[bucket])
    if bucket == "week":
        return floor_to(expr, WEEK_US, _MONDAY_OFFSET_US)
    if bucket == "month":
        return (f"(extract(epoch FROM date_trunc('month', timestamp 'epoch' + {expr} * interval '1 microsecond'))"
                f" * 1000000)::bigint")
    raise ValueError(f"unknown bucket {bucket!r}")


def tenant_clause(tenant_ids: tuple[str, ...], negate: bool = False) -> tuple[str, list[Any]]:
    if len(tenant_ids) == 1:
        return f"tenant_id {'<>' if negate else '='} %s", [tenant_ids[0]]
    return ("tenant_id <> ALL(%s)" if negate else "tenant_id = ANY(%s)"), [list(tenant_ids)]


def where(f: EventFilter | None) -> tuple[str, list[Any]]:
    """`` WHERE ...`` (or nothing) and its parameters."""
    if f is None:
        return "", []
    clauses: list[str] = []
    params: list[Any] = []
    if f.tenant_ids is not None:
        clause, values = tenant_clause(f.tenant_ids)
        clauses.append(clause)
        params.extend(values)
    for name in FILTER_COLUMNS:
        value = getattr(f, name)
        if value is not None:
            clauses.append(f"{name} = %s")
            params.append(value)
    if f.start_us is not None:
        clauses.append(f"{TS} >= %s")
        params.append(f.start_us)
    if f.end_us is not None:
        clauses.append(f"{TS} < %s")
        params.append(f.end_us)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def scan(f: EventFilter | None) -> tuple[str, list[Any]]:
    """`` FROM events WHERE <filter>`` and its parameters (partitions are pruned by the time bounds)."""
    clause, params = where(f)
    return f" FROM events{clause}", params


def and_(frm: str, clause: str) -> str:
    return frm + (" AND " if " WHERE " in frm else " WHERE ") + clause


def exact_sum(column: str) -> str:
    """The sum of a float8 column as (nearly) exact numeric: float8 → numeric keeps only 15 digits, so the
    residual each value loses is added back (it is exact in float8), giving ~30 significant digits — the
    same float8 as Python's math.fsum and DuckDB's fsum except at exact rounding ties."""
    return f"sum({column}::numeric + ({column} - {column}::numeric::float8)::numeric)"


def agg_sql(agg: Agg) -> str:
    if agg.fn == "count":
        return "count(*)"
    if agg.fn == "errors":
        return f"count(*) FILTER (WHERE {IS_ERROR})"
    column = TS if agg.column == "timestamp" else agg.column
    if agg.fn == "count_distinct":
        return f"count(DISTINCT {column})"
    if agg.fn == "sum":
        return f"{exact_sum(column)}::float8" if column in _EXACT_FLOAT else f"sum({column})::bigint"  # type: ignore[operator]
    if agg.fn == "avg":  # the rounded sum divided by the count, as fsum(values) / len(values)
        total = exact_sum(column) if column in _EXACT_FLOAT else f"sum({column})"  # type: ignore[arg-type]
        return f"({total}::float8 / NULLIF(count({column}), 0))"
    if agg.fn == "quantile":  # linear interpolation between the closest ranks, in float8
        return f"percentile_cont({float(agg.q)!r}) WITHIN GROUP (ORDER BY {column}::float8)"  # type: ignore[arg-type]
    if agg.fn == "count_le":
        return f"count({column}) FILTER (WHERE {at_most(column, agg.le)})"  # type: ignore[arg-type]
    return f"{agg.fn}({column})"


def bucket_expr(spec: AggregateSpec) -> str:
    if spec.bucket_us is not None:
        width, origin = int(spec.bucket_us), int(spec.origin_us)
        return f"({TS} - mod(mod({TS} - ({origin}), {width}) + {width}, {width}))"
    return bucket_sql(spec.bucket) if spec.bucket else "NULL::bigint"


def aggregate(spec: AggregateSpec) -> tuple[str, list[Any]]:
    frm, params = scan(spec.filter)
    bucket = bucket_expr(spec)
    groups = list(spec.group_by)
    select = ", ".join([f"{bucket} AS bucket", *groups, *(f"{agg_sql(a)} AS a{i}" for i, a in enumerate(spec.aggs))])
    group_clause = " GROUP BY " + ", ".join(str(i + 1) for i in range(1 + len(groups)))
    if spec.top is None or not groups:
        return f"SELECT {select}{frm}{group_clause}", params
    # One scan: aggregate every (bucket, group) once, then keep the groups ranked first by top_by overall.
    order = ", ".join(f"{g} ASC NULLS LAST" for g in groups)
    on = " AND ".join(f"cells.{g} IS NOT DISTINCT FROM top.{g}" for g in groups)
    outputs = ", ".join(["cells.bucket", *(f"cells.{g}" for g in groups), *(f"a{i}" for i in range(len(spec.aggs)))])
    sql = (f"WITH cells AS MATERIALIZED (SELECT {select}, {agg_sql(spec.top_by)} AS cell_rank{frm}{group_clause}), "
           f"top AS (SELECT {', '.join(groups)} FROM cells GROUP BY {', '.join(groups)} "
           f"ORDER BY {RANK_MERGE[spec.top_by.fn]}(cell_rank) DESC NULLS LAST, {order} LIMIT %s) "
           f"SELECT {outputs} FROM cells JOIN top ON {on}")
    return sql, [*params, spec.top]


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


# ---------------------------------------------------------------- communication views (tea.comms.views)
_COMM_BASE = ('SELECT "timestamp" AS ts, protocol, source AS source_id, attributes->>\'source_type\' AS source_type, '
              "target AS target_id, attributes->>'target_type' AS target_type, trunc(duration_ms)::bigint AS d, "
              "status, COALESCE(tokens_used, 0) AS tok, round(COALESCE(cost, 0) * 10000)::bigint AS c4")
_ERR = "count(*) FILTER (WHERE status = 'error')"
_DUR = "COALESCE(sum(d), 0)::bigint, count(d)"
_COMM_SELECT = {
    "health": f"SELECT protocol, count(*), count(DISTINCT source_id), count(DISTINCT target_id), {_DUR}, {_ERR} "
              "FROM base GROUP BY protocol",
    "pairs": f"SELECT source_id, source_type, target_id, target_type, protocol, count(*), {_DUR}, min(d), max(d), "
             f"{_ERR}, count(DISTINCT div(ts, {DAY_US})), max(ts), sum(tok)::bigint, sum(c4)::bigint "
             "FROM base GROUP BY source_id, source_type, target_id, target_type, protocol",
    "realtime": f"SELECT ts - mod(ts, 60000000) AS minute, protocol, source_id, source_type, target_id, target_type, "
                f"count(*), {_DUR}, (array_agg(d ORDER BY d) FILTER (WHERE d IS NOT NULL))"
                f"[floor(0.95::float8 * (count(d) - 1))::bigint + 1], "
                f"(array_agg(d ORDER BY d) FILTER (WHERE d IS NOT NULL))[ceil(0.95::float8 * (count(d) - 1))::bigint + 1], "
                f"{_ERR} FROM base GROUP BY 1, protocol, source_id, source_type, target_id, target_type",
    "matrix": f"SELECT source_id, target_id, protocol, count(*), {_DUR}, {_ERR} FROM base "
              "GROUP BY source_id, target_id, protocol",
    "endpoints": "SELECT id, kind, count(*), max(ts) FROM (SELECT source_id AS id, source_type AS kind, ts FROM base "
                 "UNION ALL SELECT target_id, target_type, ts FROM base) ends GROUP BY id, kind",
}


def communication_groups(kind: str, f: EventFilter) -> tuple[str, list[Any]]:
    """Raw groups of one communication view (shapes as ``tea.comms.views.python_groups``)."""
    frm, params = scan(f)
    return f"WITH base AS MATERIALIZED ({_COMM_BASE}{frm}) {_COMM_SELECT[kind]}", params
