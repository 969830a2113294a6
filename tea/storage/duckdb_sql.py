"""Compile the neutral specs (EventFilter, AggregateSpec) into DuckDB SQL with parameters."""
from __future__ import annotations

import zlib
from typing import Any

from tea.storage.sql_common import at_most
from tea.types import FILTER_COLUMNS, RANK_MERGE, Agg, AggregateSpec, EventFilter

# Events live in PARTITIONS tables by a stable hash of the tenant; the view `events` unites them.
# A tenant-scoped read scans only its tenant's partition, whatever order the events arrived in.
PARTITIONS = 16


def partition_of(tenant_id: str) -> int:
    return zlib.crc32(tenant_id.encode("utf-8")) % PARTITIONS


def partition_table(number: int) -> str:
    return f"events_p{number:02d}"


def source(f: EventFilter | None) -> str:
    """The smallest table expression holding every event ``f`` can match, aliased ``events``."""
    if f is None or not f.tenant_ids:
        return "events"
    parts = sorted({partition_of(t) for t in f.tenant_ids})
    if len(parts) == 1:
        return f"{partition_table(parts[0])} AS events"
    return "(" + " UNION ALL ".join(f"SELECT * FROM {partition_table(k)}" for k in parts) + ") AS events"


def scan(f: EventFilter | None) -> tuple[str, list[Any]]:
    """`` FROM <source> WHERE <filter>`` and its parameters."""
    clause, params = where(f)
    return f" FROM {source(f)}{clause}", params

IS_ERROR = ("(status IN ('error', 'timeout') OR (status IS NULL AND (error_type IS NOT NULL "
            "OR status_code >= 400 OR status_code < 0)))")
_BUCKETS = {
    "minute": "time_bucket(INTERVAL 1 MINUTE, timestamp)",
    "hour": "time_bucket(INTERVAL 1 HOUR, timestamp)",
    "day": "time_bucket(INTERVAL 1 DAY, timestamp)",
    "week": "date_trunc('week', timestamp)",
    "month": "date_trunc('month', timestamp)",
}


def tenant_clause(tenant_ids: tuple[str, ...], negate: bool = False) -> str:
    if not tenant_ids:
        return "TRUE" if negate else "FALSE"
    op = "<>" if negate else "="
    if len(tenant_ids) == 1:
        return f"tenant_id {op} ?"
    return f"tenant_id {'NOT ' if negate else ''}IN (" + ", ".join("?" * len(tenant_ids)) + ")"


def where(f: EventFilter | None) -> tuple[str, list[Any]]:
    if f is None:
        return "", []
    clauses: list[str] = []
    params: list[Any] = []
    if f.tenant_ids is not None:
        clauses.append(tenant_clause(f.tenant_ids))
        params.extend(f.tenant_ids)
    for name in FILTER_COLUMNS:
        value = getattr(f, name)
        if value is not None:
            clauses.append(f"{name} = ?")
            params.append(value)
    if f.start_us is not None:
        clauses.append("timestamp >= make_timestamp(?)")
        params.append(f.start_us)
    if f.end_us is not None:
        clauses.append("timestamp < make_timestamp(?)")
        params.append(f.end_us)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def agg_sql(agg: Agg) -> str:
    if agg.fn == "count":
        return "count(*)"
    if agg.fn == "errors":
        return f"count(*) FILTER (WHERE {IS_ERROR})"
    column = agg.column
    if column == "timestamp":
        return f"epoch_us({agg.fn}(timestamp))"
    if agg.fn == "count_distinct":
        return f"count(DISTINCT {column})"
    if agg.fn == "sum":
        return f"fsum({column})" if column in ("duration_ms", "cost") else f"sum({column})::HUGEINT"
    if agg.fn == "avg":
        return f"favg({column})" if column in ("duration_ms", "cost") else f"avg({column})"
    if agg.fn == "quantile":
        return f"quantile_cont({column}, {float(agg.q)!r})"  # type: ignore[arg-type]
    if agg.fn == "count_le":
        return f"count({column}) FILTER (WHERE {at_most(column, agg.le)})"  # type: ignore[arg-type]
    return f"{agg.fn}({column})"


def bucket_expr(spec: AggregateSpec) -> str:
    if spec.bucket_us is not None:  # (time_bucket with an origin floors before it too)
        return (f"epoch_us(time_bucket(to_microseconds({int(spec.bucket_us)}), timestamp, "
                f"make_timestamp({int(spec.origin_us)})))")
    return f"epoch_us({_BUCKETS[spec.bucket]})" if spec.bucket else "NULL::BIGINT"


def aggregate(spec: AggregateSpec) -> tuple[str, list[Any]]:
    frm, params = scan(spec.filter)
    bucket = bucket_expr(spec)
    groups = list(spec.group_by)
    select = ", ".join([f"{bucket} AS bucket", *groups, *(f"{agg_sql(a)} AS a{i}" for i, a in enumerate(spec.aggs))])
    group_clause = " GROUP BY " + ", ".join(["bucket", *groups])
    if spec.top is None or not groups:
        return f"SELECT {select}{frm}{group_clause}", params
    # One scan: aggregate every (bucket, group) once, then keep the groups ranked first by top_by overall.
    order = ", ".join(f"{g} ASC NULLS LAST" for g in groups)
    on = " AND ".join(f"cells.{g} IS NOT DISTINCT FROM top.{g}" for g in groups)
    outputs = ", ".join(["bucket", *(f"cells.{g}" for g in groups), *(f"a{i}" for i in range(len(spec.aggs)))])
    rank = agg_sql(spec.top_by)
    sql = (f"WITH cells AS MATERIALIZED (SELECT {select}, {rank} AS cell_rank{frm}{group_clause}), "
           f"top AS (SELECT {', '.join(groups)} FROM cells GROUP BY ALL "
           f"ORDER BY {RANK_MERGE[spec.top_by.fn]}(cell_rank) DESC NULLS LAST, {order} "
           f"LIMIT ?) SELECT {outputs} FROM cells SEMI JOIN top ON {on}")
    return sql, [*params, spec.top]


# ---------------------------------------------------------------- communication views (tea.comms.views)
_COMM_BASE = ("SELECT epoch_us(timestamp) AS ts, protocol, source AS source_id, "
              "json_extract_string(attributes, '$.source_type') AS source_type, target AS target_id, "
              "json_extract_string(attributes, '$.target_type') AS target_type, CAST(duration_ms AS BIGINT) AS d, "
              "status, COALESCE(tokens_used, 0) AS tok, CAST(round(COALESCE(cost, 0) * 10000) AS BIGINT) AS c4")
_ERR = "count(*) FILTER (WHERE status = 'error')"
_DUR = "CAST(COALESCE(sum(d), 0) AS BIGINT), count(d)"
_COMM_SELECT = {
    "health": f"SELECT protocol, count(*), count(DISTINCT source_id), count(DISTINCT target_id), {_DUR}, {_ERR} "
              "FROM base GROUP BY protocol",
    "pairs": f"SELECT source_id, source_type, target_id, target_type, protocol, count(*), {_DUR}, min(d), max(d), "
             f"{_ERR}, count(DISTINCT ts // 86400000000), max(ts), CAST(sum(tok) AS BIGINT), CAST(sum(c4) AS BIGINT) "
             "FROM base GROUP BY source_id, source_type, target_id, target_type, protocol",
    "realtime": f"SELECT ts - ts % 60000000 AS minute, protocol, source_id, source_type, target_id, target_type, "
                f"count(*), {_DUR}, list_sort(list(d))[CAST(floor(0.95::DOUBLE * (count(d) - 1)) AS BIGINT) + 1], "
                f"list_sort(list(d))[CAST(ceil(0.95::DOUBLE * (count(d) - 1)) AS BIGINT) + 1], {_ERR} FROM base "
                "GROUP BY minute, protocol, source_id, source_type, target_id, target_type",
    "matrix": f"SELECT source_id, target_id, protocol, count(*), {_DUR}, {_ERR} FROM base "
              "GROUP BY source_id, target_id, protocol",
    "endpoints": "SELECT id, kind, count(*), max(ts) FROM (SELECT source_id AS id, source_type AS kind, ts FROM base "
                 "UNION ALL SELECT target_id, target_type, ts FROM base) GROUP BY id, kind",
}


def communication_groups(kind: str, f: EventFilter) -> tuple[str, list[Any]]:
    """Raw groups of one communication view (shapes as ``tea.comms.views.python_groups``)."""
    frm, params = scan(f)
    return f"WITH base AS MATERIALIZED ({_COMM_BASE}{frm}) {_COMM_SELECT[kind]}", params
