"""DuckDB's per-minute rollup of the events, for the Prometheus API's range queries (``aggregate_minutes``).

``prom_rollup`` holds, per tenant and UTC minute of the events' time, the event count, the errors, the
integer sums (tokens, request and response bytes) and the count of events whose latency is at most each
of ``BOUNDS`` (and of those with a latency at all): once over every event of the minute (``label`` ''), and
once per value of each label the Prometheus API exposes (``label`` 'method', ``value`` 'tools/call'...). Each of these is also kept over
every tenant at once (``tenant_id`` NULL), which is what an admin's query without a tenant reads. A
query that groups on at most one label (and filters on no other) reads these rows instead of the events:
for the synthetic day of bench.dataset, 29 000 rows instead of a million events.

The rollup is derived data, recomputed from the events, never incremented:

* every change to the events marks the minutes it touched as pending (``prom_rollup_pending``), in the
  same transaction: a stored batch its events' time span, a purge the span of the events it deletes;
* ``catch_up`` (every few seconds: ``tea.ops.rollup``, on a cursor of its own beside the writer) recomputes
  the pending minutes older than the last whole minute from the events, replacing their rows, and clears
  the marks it saw, in one transaction (marks written meanwhile stay). A replay, a resend or a catch-up
  that runs twice recomputes the same rows; a kill -9 rolls the transaction back and leaves the marks;
* a read takes, in one snapshot, the rollup's rows of the minutes not pending and the events of the
  pending ones (the unfinished tail, and whatever a write or a purge touched since the last catch-up): the
  same cells the events alone give, for any write acknowledged before the read.

Float sums (durations, cost) are not rolled up (summing per-minute sums could change their last digits),
nor are latency bounds other than ``BOUNDS``: queries that need them read the events.
"""
from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import duckdb

from tea.storage.duckdb import bins
from tea.storage.duckdb.sql import DIALECT, DuckDBDialect
from tea.storage.sql import events
from tea.types import FILTER_COLUMNS, Agg, AggregateSpec, EventFilter

MINUTE_US = 60_000_000
# the latency bins' upper bounds in ms (the Prometheus API's default duration buckets)
BOUNDS: tuple[float, ...] = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
# the labels rolled up one at a time (the Prometheus API's labels but the tenant, a column of its own)
LABELS: tuple[str, ...] = ("event_type", "source", "method", "tool", "model", "status", "protocol", "target")
SUMS: tuple[str, ...] = ("tokens_used", "input_tokens", "output_tokens", "request_size", "response_size")
_LE = tuple(f"le{i:02d}" for i in range(len(BOUNDS) + 1))  # (the last: every event with a latency)
TABLE, PENDING = "prom_rollup", "prom_rollup_pending"
_FOREVER = (-(2**62), 2**62)

DDL = (f"CREATE TABLE {TABLE} (tenant_id VARCHAR, minute BIGINT NOT NULL, label VARCHAR NOT NULL, value VARCHAR, "
       "events BIGINT NOT NULL, errors BIGINT NOT NULL, " + ", ".join(f"{s} HUGEINT" for s in SUMS) + ", "
       + ", ".join(f"{le} BIGINT NOT NULL" for le in _LE) + ")",
       # minutes [lo, hi) (µs, whole minutes) whose rollup rows may not hold their events yet
       f"CREATE TABLE {PENDING} (lo BIGINT NOT NULL, hi BIGINT NOT NULL)")


def create(con: duckdb.DuckDBPyConnection) -> None:
    """The migration: both tables, and every stored event's minutes pending (the first catch-up rolls them up)."""
    for ddl in DDL:
        con.execute(ddl)
    mark_deleted(con, "events", "", [])  # (not deleted: the same span, of every stored event)


def mark_all(con: duckdb.DuckDBPyConnection) -> None:
    """Every minute pending (after events were loaded past ``mark``, as bench.dataset does)."""
    con.execute(f"INSERT INTO {PENDING} VALUES (?, ?)", list(_FOREVER))


def floor_minute(us: int) -> int:
    return us - us % MINUTE_US


def mark(con: duckdb.DuckDBPyConnection, min_us: int, max_us: int) -> None:
    """The minutes of events timed ``min_us`` to ``max_us`` pending (inside the transaction that changes them)."""
    con.execute(f"INSERT INTO {PENDING} VALUES (?, ?)", [floor_minute(min_us), floor_minute(max_us) + MINUTE_US])


def mark_deleted(con: duckdb.DuckDBPyConnection, table: str, where: str, params: list[Any]) -> None:
    """The minutes of the events of ``table`` that ``where`` (`` WHERE …``) is about to delete pending (none:
    nothing marked)."""
    con.execute(f"INSERT INTO {PENDING} SELECT {_MINUTE_OF.format('min(timestamp)')}, "
                f"{_MINUTE_OF.format('max(timestamp)')} + {MINUTE_US} FROM {table}{where} HAVING count(*) > 0", params)


_MINUTE_OF = "epoch_us(date_trunc('minute', {}))"


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _rows_sql() -> str:
    """The rollup's rows of the events of ``{frm}`` (the caller's FROM … WHERE), in the order reads select them
    by (label, tenant, minute: their row groups' ranges skip the rest). The events are counted once per tenant,
    minute and every label (each bound's count among them: ``fine``); grouping sets add those up per tenant,
    minute and one label (``per``); the rest is added up from ``per``, whose rows are few: a tenant's minute
    over every event from its rows of one label (each event has one value of it, NULL too), the rows over every
    tenant from the tenants' rows. Integer sums all, so the same numbers as grouping the events each way (~3
    CPU-s a million events of bench.dataset's shape on a busy machine, where hardly two events of a minute share
    every label, and 0.4 where they repeat as bench.ingest's do; all 18 grouping sets over ``fine`` cost ~1.3x
    and ~1.2x that, the 8 over the events themselves ~0.8x and ~3x)."""
    label = "CASE " + " ".join(f"WHEN grouping({g}) = 0 THEN '{g}'" for g in LABELS) + " END"
    value = "COALESCE(" + ", ".join(f"CASE WHEN grouping({g}) = 0 THEN {g} END" for g in LABELS) + ")"
    counted = ("n", "errors", *SUMS, *_LE)
    added = ", ".join(f"sum({c}) AS {c}" for c in counted)
    fine = (f"SELECT tenant_id, minute, {', '.join(LABELS)}, count(*) AS n, "
            f"{events.agg_sql(Agg('errors'), DIALECT)} AS errors, "
            + ", ".join(f"sum({s})::HUGEINT AS {s}" for s in SUMS) + ", "
            + ", ".join(f"count(*) FILTER (WHERE bin <= {i}) AS {le}" for i, le in enumerate(_LE))
            + f" FROM (SELECT *, {_MINUTE_OF.format('timestamp')} AS minute, "
            f"{bins.bin_expr('duration_ms', BOUNDS)} AS bin {{frm}}) GROUP BY ALL")
    per = (f"SELECT tenant_id, minute, {label} AS label, {value} AS value, {added} FROM ({fine}) "
           f"GROUP BY GROUPING SETS ({', '.join(f'(tenant_id, minute, {g})' for g in LABELS)})")
    one = f"FROM per WHERE label = '{LABELS[0]}'"
    rows = (f"SELECT tenant_id, minute, label, value, {', '.join(counted)} FROM per"
            f" UNION ALL SELECT tenant_id, minute, '', NULL, {added} {one} GROUP BY tenant_id, minute"
            f" UNION ALL SELECT NULL, minute, label, value, {added} FROM per GROUP BY minute, label, value"
            f" UNION ALL SELECT NULL, minute, '', NULL, {added} {one} GROUP BY minute")
    return f"WITH per AS MATERIALIZED ({per}) SELECT * FROM ({rows}) ORDER BY 3, 1 NULLS FIRST, 2"


_ROWS = _rows_sql()


def catch_up(con: duckdb.DuckDBPyConnection, sealed_us: int) -> int:
    """Recompute the pending minutes before ``sealed_us`` (a whole minute) from the events, in one transaction;
    the later ones stay pending. Returns how many minute spans were recomputed."""
    con.execute("BEGIN")
    try:
        spans = _merged([(lo, hi) for lo, hi in con.execute(f"SELECT lo, hi FROM {PENDING}").fetchall()])
        done = [(lo, min(hi, sealed_us)) for lo, hi in spans if lo < sealed_us]
        if done:  # (the later parts stay pending; every span recomputed at once: one DELETE, one INSERT)
            con.execute(f"DELETE FROM {PENDING}")
            later = [(max(lo, sealed_us), hi) for lo, hi in spans if hi > sealed_us]
            if later:
                con.execute(f"INSERT INTO {PENDING} SELECT * FROM (VALUES "
                            + ", ".join("(?, ?)" for _ in later) + ")", [v for span in later for v in span])
            spans = [(max(lo, _FOREVER[0] // 2), min(hi, _FOREVER[1] // 2)) for lo, hi in done]
            within = " OR ".join("(minute >= ? AND minute < ?)" for _ in spans)
            con.execute(f"DELETE FROM {TABLE} WHERE {within}", [v for span in spans for v in span])
            at = " OR ".join("(timestamp >= make_timestamp(?) AND timestamp < make_timestamp(?))" for _ in spans)
            con.execute(f"INSERT INTO {TABLE} " + _ROWS.format(frm=f" FROM events WHERE {at}"),
                        [v for span in spans for v in span])
        con.execute("COMMIT")
        return len(done)
    except BaseException:
        con.execute("ROLLBACK")
        raise


# ---------------------------------------------------------------- reading
def _columns(aggs: tuple[Agg, ...]) -> list[str] | None:
    """Each aggregate as a sum over rollup rows, or None when one of them is not rolled up."""
    out = []  # (each sum(column): the column itself where a cell is one row)
    for a in aggs:
        if a.fn == "count":
            out.append("sum(events)")
        elif a.fn == "errors":
            out.append("sum(errors)")
        elif a.fn == "sum" and a.column in SUMS:
            out.append(f"sum({a.column})")
        elif a.fn == "count_le" and a.column == "duration_ms" and (a.le == math.inf or a.le in BOUNDS):
            out.append(f"sum({_LE[len(BOUNDS) if a.le == math.inf else BOUNDS.index(a.le)]})")  # type: ignore[arg-type]
        else:
            return None
    return out


def plan(spec: AggregateSpec) -> str | None:
    """The label the spec's rows are read from ('' for none: the rows over every event) when the rollup answers
    ``spec``: whole-minute buckets and range, at most one label grouped on or filtered by."""
    f = spec.filter
    width = spec.bucket_us
    if (spec.top is not None or spec.bucket is not None or width is None or width % MINUTE_US
            or spec.origin_us % MINUTE_US or f.start_us is None or f.end_us is None
            or f.start_us % MINUTE_US or f.end_us % MINUTE_US or f.start_us < spec.origin_us
            or _columns(spec.aggs) is None):
        return None
    named = {g for g in spec.group_by if g != "tenant_id"} | {c for c in FILTER_COLUMNS if getattr(f, c) is not None}
    if len(named) > 1 or not named <= set(LABELS) or len(set(spec.group_by)) != len(spec.group_by):
        return None
    return next(iter(named), "")


def _pending(spans: list[tuple[int, int]], f: EventFilter) -> list[tuple[int, int]]:
    return [(max(lo, f.start_us), min(hi, f.end_us)) for lo, hi in _merged(spans)  # type: ignore[type-var]
            if hi > f.start_us and lo < f.end_us]  # type: ignore[operator]


def read(cur: duckdb.DuckDBPyConnection, spec: AggregateSpec, d: DuckDBDialect = DIALECT) -> list[Any] | None:
    """``aggregate_columns``' answer to ``spec`` from the rollup and the pending minutes' events, in one
    snapshot; None when the rollup does not answer it (``plan``) or every minute of it is pending."""
    label = plan(spec)
    if label is None:
        return None
    f, width, origin = spec.filter, int(spec.bucket_us), int(spec.origin_us)  # type: ignore[arg-type]
    cur.execute("BEGIN TRANSACTION")
    try:
        pending = _pending(cur.execute(f"SELECT lo, hi FROM {PENDING}").fetchall(), f)
        if pending == [(f.start_us, f.end_us)]:
            return None
        groups = list(spec.group_by)
        sums = _columns(spec.aggs)
        params: list[Any] = [label, f.start_us, f.end_us]
        where = "label = ? AND minute >= ? AND minute < ?"
        if f.tenant_ids is None and "tenant_id" not in groups:
            where += " AND tenant_id IS NULL"
        elif f.tenant_ids is None:
            where += " AND tenant_id IS NOT NULL"
        else:
            where += " AND " + DIALECT.in_list(params, "tenant_id", f.tenant_ids)
        if label and getattr(f, label) is not None:
            where += f" AND value = {DIALECT.bind(params, getattr(f, label))}"
        for lo, hi in pending:
            where += f" AND NOT (minute >= {DIALECT.bind(params, lo)} AND minute < {DIALECT.bind(params, hi)})"
        keys = [f"{origin} + (minute - {origin}) // {width} * {width} AS bucket",
                *(g if g == "tenant_id" else f"value AS {g}" for g in groups)]
        # one row a cell already (a minute of one tenant, or of all of them, or of each): no grouping to do
        single = width == MINUTE_US and (f.tenant_ids is None or len(f.tenant_ids) == 1 or "tenant_id" in groups)
        rolled = (f"SELECT {', '.join(keys)}, "
                  + ", ".join(f"{s[4:-1] if single else s} AS a{i}" for i, s in enumerate(sums))  # type: ignore[arg-type]
                  + f" FROM {TABLE} WHERE {where}" + ("" if single else " GROUP BY ALL"))
        sql = rolled
        if pending:
            raw_params: list[Any] = []
            clauses = events.conditions(f, d, raw_params)
            clauses.append("(" + " OR ".join(f"(timestamp >= {d.bind_us(raw_params, lo)} AND timestamp < "
                                              f"{d.bind_us(raw_params, hi)})" for lo, hi in pending) + ")")
            raw = (f"SELECT {events.bucket_expr(spec, d)} AS bucket, {', '.join([*groups, ''])}"
                   + ", ".join(f"{events.agg_sql(a, d)} AS a{i}" for i, a in enumerate(spec.aggs))
                   + events.frame(f, d, clauses) + " GROUP BY ALL")
            outer = ", ".join(["bucket", *groups, *(f"sum(a{i})" for i in range(len(spec.aggs)))])
            sql = f"SELECT {outer} FROM ({rolled} UNION ALL {raw}) GROUP BY ALL"
            params += raw_params
        return list(cur.execute(sql, params).fetchnumpy().values())
    finally:
        cur.execute("ROLLBACK")  # (read only)


class DuckDBRollup:
    """Mixed into DuckDBStorage: the rollup's reads on its reader cursors, its catch-up on a cursor of its own
    on a reader thread (writes go on meanwhile: what they mark while it runs stays pending)."""

    _on_reader: Any
    _on_writer: Any
    _cursor: Any
    _reading: Any
    _readers: Any
    dialect: DuckDBDialect
    _rolling = threading.Lock()  # (one catch-up at a time, per process: they would replace the same rows)
    _catching_up: duckdb.DuckDBPyConnection | None = None

    async def aggregate_minutes(self, spec: AggregateSpec) -> list[Any] | None:
        """``aggregate_columns``' answer from the per-minute rollup, or None where it does not answer ``spec``."""
        if plan(spec) is None:
            return None
        return await self._on_reader(read, spec, self.dialect)

    async def roll_up(self, now_us: int) -> int:
        """Roll up the pending minutes before the last whole one (``catch_up``); the spans recomputed."""
        cursor = await self._on_writer(self._cursor)
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._roll_up_sync, cursor,
                                                                floor_minute(now_us) - MINUTE_US)

    def _roll_up_sync(self, cursor: duckdb.DuckDBPyConnection, sealed_us: int) -> int:
        try:  # (closed here, not by the task: a cancelled task leaves the thread running until it is done)
            with self._rolling, self._reading():
                self._catching_up = cursor
                return catch_up(cursor, sealed_us)
        finally:
            self._catching_up = None
            cursor.close()

    def _interrupt_roll_up(self) -> None:
        """Stop a catch-up under way (at close: a long one would hold it up; it rolls back, its minutes stay
        pending)."""
        cursor = self._catching_up
        if cursor is not None:
            cursor.interrupt()
