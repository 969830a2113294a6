"""The neutral specs (EventFilter, QuerySpec, AggregateSpec) compiled into SQL and its parameters, once for
every SQL backend: each asks its ``Dialect`` for what it writes otherwise."""
from __future__ import annotations

from typing import Any

from tea.storage.sql.dialect import Dialect
from tea.types import FILTER_COLUMNS, RANK_MERGE, Agg, AggregateSpec, Cursor, EventFilter, QuerySpec

ORDER_KEYS = ("event_id", "tenant_id")  # a page's order after its time, every key descending
ORDER = "DESC, " + ", ".join(f"{key} DESC" for key in ORDER_KEYS)  # (after the time column)


def conditions(f: EventFilter | None, d: Dialect, params: list[Any]) -> list[str]:
    """What ``f`` asks of an event: its tenant scope, the equality filters (tea.types.FILTER_FIELDS), its time
    range; their values bound into ``params``."""
    if f is None:
        return []
    out: list[str] = []
    if f.tenant_ids is not None:
        out.append(d.in_list(params, "tenant_id", f.tenant_ids))
    for name in FILTER_COLUMNS:
        value = getattr(f, name)
        if value is not None:
            out.append(f"{name} = {d.bind(params, value)}")
    if f.start_us is not None:
        out.append(f"{d.ts} >= {d.bind_us(params, f.start_us)}")
    if f.end_us is not None:
        out.append(f"{d.ts} < {d.bind_us(params, f.end_us)}")
    return out


def frame(f: EventFilter | None, d: Dialect, clauses: list[str], source: str | None = None) -> str:
    """`` FROM <the events f can match> WHERE <clauses>`` (from ``source`` when given)."""
    return f" FROM {source or d.source(f)}" + (" WHERE " + " AND ".join(clauses) if clauses else "")


def scan(f: EventFilter | None, d: Dialect, extra: tuple[str, ...] = ()) -> tuple[str, list[Any]]:
    """`` FROM … WHERE …`` of the events ``f`` matches (and the conditions ``extra``, which bind nothing)."""
    params: list[Any] = []
    return frame(f, d, [*conditions(f, d, params), *extra]), params


def count(f: EventFilter | None, d: Dialect) -> tuple[str, list[Any]]:
    frm, params = scan(f, d)
    return f"SELECT {d.count_all()}{frm}", params


def after(cursor: Cursor, d: Dialect, params: list[Any]) -> str:
    """Events after ``cursor`` in a page's order (time, event id, tenant, each descending)."""
    if d.row_compare:
        t, e, x = (d.bind(params, v) for v in (cursor.timestamp, cursor.event_id, cursor.tenant_id))
        return f"({d.ts}, event_id, tenant_id) < ({t}, {e}, {x})"
    t1, t2 = d.bind_us(params, cursor.timestamp), d.bind_us(params, cursor.timestamp)
    e1, e2 = d.bind(params, cursor.event_id), d.bind(params, cursor.event_id)
    return (f"({d.ts} < {t1} OR ({d.ts} = {t2} AND (event_id < {e1} OR "
            f"(event_id = {e2} AND tenant_id < {d.bind(params, cursor.tenant_id)}))))")


def candidates(spec: QuerySpec, d: Dialect) -> tuple[str, list[Any]]:
    """Every event a page can hold (its filter's, after its cursor), in no order."""
    params: list[Any] = []
    clauses = conditions(spec.filter, d, params)
    if spec.after is not None:
        clauses.append(after(spec.after, d, params))
    return f"SELECT {d.event_columns}{frame(spec.filter, d, clauses)}", params


def page(spec: QuerySpec, d: Dialect) -> tuple[str, list[Any]]:
    """One page of events (``limit + 1`` rows: the last says whether there are more), newest first."""
    sql, params = candidates(spec, d)
    return f"{sql} ORDER BY {d.ts} {ORDER} LIMIT {d.bind(params, spec.limit + 1)}", params


# ---------------------------------------------------------------- aggregates
def agg_sql(agg: Agg, d: Dialect) -> str:
    """One aggregate (tea.types.Agg), as every backend computes it: exact sums, quantiles interpolated."""
    if agg.fn == "count":
        return d.count_all()
    if agg.fn == "errors":
        return d.count_if(d.is_error)
    column: str = agg.column  # type: ignore[assignment]
    if column == "timestamp":
        return d.us(f"{agg.fn}({d.ts})")
    if agg.fn == "count_distinct":
        return d.count_distinct(column)
    if agg.fn == "sum":
        return d.sum(column)
    if agg.fn == "avg":
        return d.avg(column)
    if agg.fn == "quantile":
        return d.quantile(column, agg.q)  # type: ignore[arg-type]
    if agg.fn == "count_le":  # (+inf: every event that has a value)
        return f"count({column})" if agg.le == float("inf") else d.count_if(d.at_most(column, agg.le))  # type: ignore[arg-type]
    return f"{agg.fn}({column})"


def bucket_expr(spec: AggregateSpec, d: Dialect) -> str:
    if spec.bucket_us is not None:
        return d.fixed_bucket(int(spec.bucket_us), int(spec.origin_us))
    return d.bucket(spec.bucket) if spec.bucket else d.null_bigint


def _agg_columns(aggs: tuple[Agg, ...], d: Dialect) -> tuple[list[str], list[str] | None]:
    """The aggregates as ``expr AS a{i}``; where the dialect computes several quantiles of one column as one
    list (sorting the group's values once, not once per quantile), those become ``q{k}``, unpacked by the
    second list ``q{k}[j] AS a{i}`` in an outer SELECT. The second list is None when nothing was merged."""
    qs: dict[str, list[int]] = {}
    for i, a in enumerate(aggs):
        if a.fn == "quantile":
            qs.setdefault(a.column, []).append(i)  # type: ignore[arg-type]
    merged = {column: (expr, members) for column, members in qs.items() if len(members) > 1
              and (expr := d.quantiles(column, [float(aggs[i].q) for i in members])) is not None}  # type: ignore[arg-type]
    if not merged:
        return [f"{agg_sql(a, d)} AS a{i}" for i, a in enumerate(aggs)], None
    inner, outer, where_of = [], [], {}
    for k, (expr, members) in enumerate(merged.values()):
        inner.append(f"{expr} AS q{k}")
        where_of.update({i: f"q{k}[{j + 1}]" for j, i in enumerate(members)})
    for i, a in enumerate(aggs):
        if i in where_of:
            outer.append(f"{where_of[i]} AS a{i}")
        else:
            inner.append(f"{agg_sql(a, d)} AS a{i}")
            outer.append(f"a{i}")
    return inner, outer


def aggregate(spec: AggregateSpec, d: Dialect) -> tuple[str, list[Any]]:
    """Rows ``(bucket_us | NULL, *groups, *aggs)`` of the cells that hold events. With ``top``: one scan
    aggregates every (bucket, group) once, and the groups ranked first by ``top_by`` over the whole filter
    are kept (from those cells where the dialect has CTEs, else by a second pass ranking the groups)."""
    params: list[Any] = []
    groups = list(spec.group_by)
    keys = (["bucket"] if spec.bucket is not None or spec.bucket_us is not None else []) + groups
    ranked = spec.top is not None and bool(groups)
    inner, outer = _agg_columns(spec.aggs, d)
    rank = [f"{agg_sql(spec.top_by, d)} AS cell_rank"] if ranked and d.ctes else []
    select = ", ".join([f"{bucket_expr(spec, d)} AS bucket", *groups, *inner, *rank])
    clauses = conditions(spec.filter, d, params)
    if ranked and not d.ctes:
        clauses.append(_in_top_groups(spec, d, params))
    grouping = f" GROUP BY {', '.join(keys)}" if keys else f" HAVING {d.count_all()} > 0"
    sql = f"SELECT {select}{frame(spec.filter, d, clauses)}{grouping}"
    if outer is not None:
        sql = f"SELECT {', '.join(['bucket', *groups, *outer, *(['cell_rank'] if rank else [])])} FROM ({sql}) grouped"
    if not rank:
        return sql, params
    order = ", ".join(d.ascending_nulls_last(g) for g in groups)
    on = " AND ".join(f"cells.{g} IS NOT DISTINCT FROM top.{g}" for g in groups)
    outputs = ", ".join(["cells.bucket", *(f"cells.{g}" for g in groups), *(f"a{i}" for i in range(len(spec.aggs)))])
    sql = (f"WITH cells AS MATERIALIZED ({sql}), top AS (SELECT {', '.join(groups)} FROM cells "
           f"GROUP BY {', '.join(groups)} ORDER BY {RANK_MERGE[spec.top_by.fn]}(cell_rank) DESC NULLS LAST, "
           f"{order} LIMIT {d.bind(params, spec.top)}) SELECT {outputs} FROM cells {d.semi_join} top ON {on}")
    return sql, params


def _in_top_groups(spec: AggregateSpec, d: Dialect, params: list[Any]) -> str:
    """The event's group is one of the ``top`` ranked first by ``top_by`` over the whole filter."""
    groups = list(spec.group_by)
    key = ", ".join(d.group_key(groups))
    order = ", ".join(d.ascending_nulls_last(g) for g in groups)
    ranking = frame(spec.filter, d, conditions(spec.filter, d, params))
    return (f"({key}) IN (SELECT {key}{ranking} GROUP BY {', '.join(groups)} "
            f"ORDER BY {agg_sql(spec.top_by, d)} DESC NULLS LAST, {order} LIMIT {d.bind(params, spec.top)})")
