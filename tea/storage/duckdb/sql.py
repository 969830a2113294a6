"""DuckDB's SQL dialect (for the compiler, ``tea.storage.sql``), its partitions, and its trace summaries."""
from __future__ import annotations

import zlib
from typing import Any, Iterable

from tea.storage.sql import FLOAT_COLUMNS, Dialect
from tea.storage.sql.events import ORDER, ORDER_KEYS, after, conditions, frame
from tea.storage.sql.events import scan as compile_scan
from tea.storage.sql.signals import json_path
from tea.types import COLUMNS, FILTER_COLUMNS, EventFilter, QuerySpec

# Events live in PARTITIONS tables by a stable hash of the tenant; the view `events` unites them.
# A tenant-scoped read scans only its tenant's partition, whatever order the events arrived in.
PARTITIONS = 16


def partition_of(tenant_id: str) -> int:
    return zlib.crc32(tenant_id.encode("utf-8")) % PARTITIONS


def partition_table(number: int) -> str:
    return f"events_p{number:02d}"


class Live:
    """The partitions that may hold events: a file's non-empty ones when it was opened, and each one a write
    adds rows to, added before that write commits (so no read after the commit misses it). A partition
    emptied by retention stays until the file is opened again. A read across tenants unites only these:
    each partition in a union costs its planning and scan set-up whether or not it holds a row (a page of
    events across a single tenant's file: every other partition is empty)."""

    def __init__(self, parts: tuple[int, ...] = tuple(range(PARTITIONS))) -> None:
        self.parts = parts

    def add(self, numbers: Iterable[int]) -> None:
        """Called by the writer only (one writer thread): a read sees the old tuple or the new, both whole."""
        missing = set(numbers).difference(self.parts)
        if missing:
            self.parts = tuple(sorted({*self.parts, *missing}))


def partitions(f: EventFilter | None, live: Live | None = None) -> list[int]:
    """The partitions holding every event ``f`` can match: its tenants', else every one (with ``live``, every
    one that may hold events; at least one, so that a statement has a table to read)."""
    if f is not None and f.tenant_ids:
        return sorted({partition_of(t) for t in f.tenant_ids})
    return list(range(PARTITIONS)) if live is None else list(live.parts) or [0]


def source(f: EventFilter | None, columns: str = "*", live: Live | None = None) -> str:
    """The smallest table expression holding every event ``f`` can match, aliased ``events``. Where that is
    several partitions, ``columns`` (those the statement reads) narrows what each gives: a union of whole
    partitions (the view ``events``) costs ~2 ms more CPU a statement to plan its 16 x 32 columns, and a
    ``count(*)`` over it reads every event's ``event_id`` (its first column) for nothing. With ``live``, a
    read across tenants unites only the partitions that may hold events."""
    if live is None and columns == "*" and (f is None or not f.tenant_ids):
        return "events"
    parts = partitions(f, live)
    if len(parts) == 1:
        return f"{partition_table(parts[0])} AS events"
    return "(" + " UNION ALL ".join(f"SELECT {columns} FROM {partition_table(k)}" for k in parts) + ") AS events"


def several_partitions(f: EventFilter | None, live: Live | None = None) -> bool:
    """Whether the events ``f`` can match lie in more than one partition (every tenant's, or several tenants')."""
    return len(partitions(f, live)) > 1


def filter_columns(f: EventFilter | None) -> str:
    """The columns ``f``'s conditions read (tea.storage.sql.events.conditions), the time first."""
    named = [] if f is None else [c for c in FILTER_COLUMNS if getattr(f, c) is not None]
    return ", ".join(["timestamp", *(["tenant_id"] if f is not None and f.tenant_ids is not None else []), *named])


def key_columns(f: EventFilter | None) -> str:
    """The columns of a page's order (its time, tea.storage.sql.events.ORDER_KEYS) and those ``f`` tests."""
    named = [] if f is None else [c for c in FILTER_COLUMNS if getattr(f, c) is not None and c not in ORDER_KEYS]
    return ", ".join(["timestamp", *ORDER_KEYS, *named])


class DuckDBDialect(Dialect):
    """Timestamps are TIMESTAMP (µs): bound with make_timestamp, read with epoch_us; calendar buckets by
    date_trunc (not time_bucket: the same UTC buckets, ~10 ms less per million rows)."""

    semi_join = "SEMI JOIN"
    event_columns = ", ".join(f"epoch_us({c})" if c in ("timestamp", "received_at") else
                              "CAST(attributes AS VARCHAR)" if c == "attributes" else c for c in COLUMNS)

    def __init__(self, live: Live | None = None) -> None:
        self.live = live  # (a store's: its reads across tenants unite only the partitions that may hold events)

    def source(self, f: EventFilter | None) -> str:
        return source(f, live=self.live)

    def bind_us(self, params: list[Any], us: int) -> str:
        return f"make_timestamp({self.bind(params, us)})"

    def us(self, expr: str) -> str:
        return f"epoch_us({expr})"

    def attribute(self, params: list[Any], key: str) -> str:
        return f"json_extract_string(attributes, {self.bind(params, json_path(key))})"

    def json_texts(self, column: str, keys: tuple[str, ...]) -> tuple[str, list[str]]:
        # (a list of paths reads the JSON once)
        paths = ", ".join(f"'$.{key}'" for key in keys)
        return f", json_extract_string({column}, [{paths}]) AS tea_json", [f"tea_json[{i + 1}]" for i in range(len(keys))]

    def bucket(self, unit: str) -> str:
        return f"epoch_us(date_trunc('{unit}', timestamp))"

    def fixed_bucket(self, width_us: int, origin_us: int) -> str:  # (time_bucket with an origin floors before it too)
        return f"epoch_us(time_bucket(to_microseconds({width_us}), timestamp, make_timestamp({origin_us})))"

    def sum(self, column: str) -> str:
        return f"fsum({column})" if column in FLOAT_COLUMNS else f"sum({column})::HUGEINT"

    def avg(self, column: str) -> str:
        return f"favg({column})" if column in FLOAT_COLUMNS else f"avg({column})"

    def quantile(self, column: str, q: float) -> str:
        return f"quantile_cont({column}, {float(q)!r})"

    def quantiles(self, column: str, qs: list[float]) -> str | None:
        # p50/p95/p99 of a day cost ~60 % of three separate ones
        return f"quantile_cont({column}, [{', '.join(repr(float(q)) for q in qs)}])"

    def sorted_values(self, column: str) -> str:
        return f"list_sort(list({column}))"


DIALECT = DuckDBDialect()


def tenant_clause(tenant_ids: tuple[str, ...], negate: bool = False) -> str:
    """The tenant scope with a ``?`` a tenant (the caller binds ``tenant_ids``)."""
    return DIALECT.in_list([], "tenant_id", tenant_ids, negate)


def scan(f: EventFilter | None, d: DuckDBDialect = DIALECT) -> tuple[str, list[Any]]:
    """`` FROM <source> WHERE <filter>`` and its parameters."""
    return compile_scan(f, d)


def count(f: EventFilter | None, d: DuckDBDialect = DIALECT) -> tuple[str, list[Any]]:
    """The events ``f`` matches, counted reading only the columns its conditions need."""
    params: list[Any] = []
    clauses = conditions(f, d, params)
    return f"SELECT count(*){frame(f, d, clauses, source(f, filter_columns(f), d.live))}", params


def page_keys(spec: QuerySpec, d: DuckDBDialect = DIALECT) -> tuple[str, list[Any]]:
    """One row: the events ``spec.filter`` matches, counted (when ``spec.with_total``), and the list of the
    page's keys (time µs, event id, tenant, and the partition that holds the event: the ``limit + 1`` first in
    a page's order after ``spec.after``), each read only from the columns the filter and the order test.
    ``rows`` then reads every column of only those events: what DuckDB's late materialization does for one
    table (the top-N of a union of partitions reads every column of every row its scans pass on)."""
    f = spec.filter
    params: list[Any] = []
    clauses = conditions(f, d, params)
    if spec.after is not None:
        clauses.append(after(spec.after, d, params))
    tagged = ("(" + " UNION ALL ".join(f"SELECT {n} AS tea_partition, {key_columns(f)} FROM {partition_table(n)}"
                                       for n in partitions(f, d.live)) + ") AS events")
    top = (f"SELECT epoch_us(timestamp) AS t, event_id, tenant_id, tea_partition{frame(f, d, clauses, tagged)}"
           f" ORDER BY timestamp {ORDER} LIMIT {int(spec.limit) + 1}")
    keys = f"(SELECT list((t, event_id, tenant_id, tea_partition)) FROM ({top}))"
    if not spec.with_total:
        return f"SELECT NULL, {keys}", params
    counting, counted = count(f, d)
    return f"SELECT ({counting}), {keys}", counted + params


def rows(keys: list[tuple[int, str, str, int]], d: DuckDBDialect = DIALECT) -> tuple[str, list[Any]]:
    """Every column of the events of ``keys`` (page_keys'), in no order (tea.types.COLUMNS' columns): from each
    partition that holds one, the rows of its tenants and ids within its times (the row groups of those times
    only). A partition holds several tenants, and an id may repeat in another tenant or at another time: the
    caller keeps the rows of ``keys``."""
    by_partition: dict[int, list[tuple[int, str, str, int]]] = {}
    for key in keys:
        by_partition.setdefault(key[3], []).append(key)
    branches, params = [], []
    for number, found in sorted(by_partition.items()):
        ids, tenants = sorted({k[1] for k in found}), sorted({k[2] for k in found})
        branches.append(f"SELECT * FROM {partition_table(number)} WHERE timestamp BETWEEN make_timestamp(?) AND "
                        f"make_timestamp(?) AND {tenant_clause(tuple(tenants))} AND event_id IN "
                        f"({', '.join('?' * len(ids))})")
        params += [min(k[0] for k in found), max(k[0] for k in found), *tenants, *ids]
    return f"SELECT {d.event_columns} FROM ({' UNION ALL '.join(branches)})", params


# ---------------------------------------------------------------- trace summaries (GET /v1/traces)
_TRACE_SPAN = ("min(epoch_us(timestamp)) AS start_us, "
               "max(epoch_us(timestamp) + CAST(COALESCE(duration_ms, 0) * 1000 AS BIGINT)) AS end_us")
_TRACE_ERRORS = "count(*) FILTER (WHERE status = 'error')"
# (arg_min_null: the first root's method even when it has none, as on the other backends; arg_min skips NULLs)
_TRACE_REST = ("count(*) AS span_count, " + _TRACE_ERRORS + " AS error_count, "
               "arg_min_null(method, timestamp) FILTER (WHERE parent_span_id IS NULL) AS root_name, "
               "arg_min_null(source, timestamp) FILTER (WHERE parent_span_id IS NULL) AS root_service, "
               "list_sort(list(DISTINCT source) FILTER (WHERE source IS NOT NULL)) AS services")


def traces(f: EventFilter, *, service: str | None, min_duration_ms: float, errors: bool | None,
           limit: int, d: DuckDBDialect = DIALECT) -> tuple[str, list[Any]]:
    """The newest ``limit`` traces with a span in ``f`` that pass the conditions, summarised over their
    spans in ``f``. Two passes over the spans: the first groups every trace with the cheap aggregates the
    conditions and the order need (its start, end, errors, whether ``service`` took part) and keeps the
    first ``limit``; only those are summarised (root span, services list). The list of distinct services
    and the root's arg_min cost ~60 % of one pass over every trace of a day."""
    frm, params = scan(f, d)
    spans = frm + (" AND " if " WHERE " in frm else " WHERE ") + "event_type = 'span' AND trace_id IS NOT NULL"
    having: list[str] = ["end_us - start_us >= ?"]
    extra: list[Any] = [int(min_duration_ms * 1000)]
    if service is not None:
        having.append("bool_or(source = ?)")
        extra.append(service)
    if errors is not None:
        having.append(f"{_TRACE_ERRORS} {'> 0' if errors else '= 0'}")
    sql = (f"WITH top AS (SELECT tenant_id, trace_id, {_TRACE_SPAN}{spans} GROUP BY tenant_id, trace_id "
           f"HAVING {' AND '.join(having)} ORDER BY start_us DESC, trace_id LIMIT ?) "
           f"SELECT trace_id, tenant_id, {_TRACE_SPAN}, {_TRACE_REST}{spans} "
           f"AND (tenant_id, trace_id) IN (SELECT tenant_id, trace_id FROM top) "
           f"GROUP BY tenant_id, trace_id ORDER BY start_us DESC, trace_id")
    return sql, [*params, *extra, limit, *params]
