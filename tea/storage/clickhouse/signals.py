"""Metric points and log records in ClickHouse (18.16 and current): ReplacingMergeTree tables partitioned by
day; a batch is decoded once, rid of the ids it repeats or that are stored already in its time range, and
inserted columnar. Attribute filters read the JSON text with ``visitParamExtract*`` (18.16 has no
JSONExtract): top-level keys, strings and numbers."""
from __future__ import annotations

from typing import Any

import msgspec

from tea.signals.model import (LogData, LogRecord, MetricData, MetricPoint, PointQuery, RecordQuery, SeriesKey,
                               body_text, points_of, records_of)
from tea.storage.clickhouse.sql import DAY_OF, in_list, lit


_U64, _F64, _STR = "Nullable(UInt64)", "Nullable(Float64)", "Nullable(String)"
_DATA_TYPES = {"name": "String", "kind": "String", "unit": "String", "temporality": _STR, "monotonic": "Nullable(UInt8)",
               "start_us": "Nullable(Int64)", "value": _F64, "count": _U64, "sum": _F64, "min": _F64, "max": _F64,
               "bounds": "Array(Float64)", "counts": "Array(UInt64)", "scale": "Nullable(Int32)", "zero_count": _U64,
               "positive_offset": "Nullable(Int32)", "positive_counts": "Array(UInt64)",
               "negative_offset": "Nullable(Int32)", "negative_counts": "Array(UInt64)",
               "quantiles": "Array(Array(Float64))", "flags": "Nullable(Int64)"}
_ARRAYS = {"bounds": "histogram", "counts": "histogram", "positive_counts": "exponential_histogram",
           "negative_counts": "exponential_histogram", "quantiles": "summary"}
_ROW = {"tenant_id": "String", "id": "String", "timestamp": "Int64", "received_at": "Int64", "service": _STR}
_PAYLOAD = {"attributes": "String", "resource": "String", "scope": _STR}
POINT_TYPES = {**_ROW, **_DATA_TYPES, **_PAYLOAD}
RECORD_TYPES = {**_ROW, "severity_number": "Int32", "severity_text": "String", "body": _STR, "body_json": "UInt8",
                "observed_us": "Nullable(Int64)", "event_name": _STR, "flags": "Nullable(Int64)", **_PAYLOAD,
                "trace_id": _STR, "span_id": _STR}


def schema() -> tuple[str, ...]:
    def table(name: str, types: dict[str, str], order: str) -> str:
        columns = ", ".join(f"`{c}` {t}" for c, t in types.items())
        return (f"CREATE TABLE IF NOT EXISTS {name} ({columns}) ENGINE = ReplacingMergeTree() PARTITION BY {DAY_OF} "
                f"ORDER BY {order}")
    return (table("metric_points", POINT_TYPES, "(tenant_id, name, timestamp, id)"),
            table("log_records", RECORD_TYPES, "(tenant_id, timestamp, id)"))


def _conditions(q: PointQuery | RecordQuery) -> list[str]:
    out = []
    if q.tenant_ids is not None:
        out.append(in_list("tenant_id", q.tenant_ids))
    for clause, value in (("timestamp >= ", q.start_us), ("timestamp < ", q.end_us), ("service = ", q.service)):
        if value is not None:
            out.append(clause + lit(value))
    for key, value in q.attributes:
        out.append(f"(visitParamExtractString(attributes, {lit(key)}) = {lit(value)} OR "
                   f"visitParamExtractRaw(attributes, {lit(key)}) = {lit(value)})")
    if isinstance(q, PointQuery):
        if q.names is not None:
            out.append(in_list("name", q.names))
        return out
    for clause, value in (("severity_number >= ", q.min_severity), ("trace_id = ", q.trace_id),
                          ("span_id = ", q.span_id)):
        if value is not None:
            out.append(clause + lit(value))
    if q.body_contains is not None:
        out.append(f"positionCaseInsensitiveUTF8(ifNull(body, ''), {lit(q.body_contains)}) > 0")
    if q.after is not None:
        t = lit(q.after[0])
        out.append(f"(timestamp < {t} OR (timestamp = {t} AND id < {lit(q.after[1])}))")
    return out


def _where(clauses: list[str]) -> str:
    return " WHERE " + " AND ".join(clauses) if clauses else ""


class ClickHouseSignals:
    def __init__(self, storage: Any) -> None:
        self.storage = storage

    def _table(self, name: str) -> str:
        return name + (" FINAL" if self.storage.final_reads else "")

    # ----------------------------------------------------------------- writing
    def _new(self, client: Any, table: str, rows: list[Any]) -> list[Any]:
        """``rows`` without those repeating an earlier one or a stored one (same tenant, id and time)."""
        unique = list({(r.tenant_id, r.id): r for r in reversed(rows)}.values())[::-1]
        if not unique:
            return []
        low, high = min(r.timestamp for r in unique), max(r.timestamp for r in unique)
        keys = [{"tenant_id": r.tenant_id, "id": r.id} for r in unique]
        stored = {tuple(k) for k in client.execute(
            f"SELECT tenant_id, id FROM {table} WHERE timestamp >= {lit(low)} AND timestamp <= {lit(high)} AND "
            "(tenant_id, id) IN batch_keys",
            external_tables=[{"name": "batch_keys", "structure": [("tenant_id", "String"), ("id", "String")],
                              "data": keys}])}
        return [r for r in unique if (r.tenant_id, r.id) not in stored]

    def _insert_points(self, client: Any, lines: list[bytes]) -> int:
        rows = self._new(client, "metric_points", points_of(lines))
        if rows:
            data = [[getattr(p, c) for p in rows] for c in _ROW if c != "service"] + [[p.service for p in rows]]
            for name in _DATA_TYPES:
                values = [getattr(p.data, name) for p in rows]
                data.append([v if v is not None else [] for v in values] if name in _ARRAYS else
                            [int(v) if isinstance(v, bool) else v for v in values])
            data += [[bytes(p.attributes).decode() for p in rows], [bytes(p.resource).decode() for p in rows],
                     [p.scope for p in rows]]
            client.execute(f"INSERT INTO metric_points ({', '.join(POINT_TYPES)}) VALUES", data, columnar=True)
        return len(rows)

    def _insert_records(self, client: Any, lines: list[bytes]) -> int:
        rows = self._new(client, "log_records", records_of(lines))
        if rows:
            values = [(r.tenant_id, r.id, r.timestamp, r.received_at, r.service, r.data.severity_number,
                       r.data.severity_text, body_text(r.data.body),
                       int(r.data.body is not None and not isinstance(r.data.body, str)), r.data.observed_us,
                       r.data.event_name, r.data.flags, bytes(r.attributes).decode(), bytes(r.resource).decode(),
                       r.scope, r.trace_id, r.span_id) for r in rows]
            client.execute(f"INSERT INTO log_records ({', '.join(RECORD_TYPES)}) VALUES", list(map(list, zip(*values))),
                           columnar=True)
        return len(rows)

    async def write_points(self, lines: list[bytes]) -> int:
        return await self.storage._on_writer(self._insert_points, lines)

    async def write_records(self, lines: list[bytes]) -> int:
        return await self.storage._on_writer(self._insert_records, lines)

    # ----------------------------------------------------------------- reading
    async def points(self, q: PointQuery) -> list[MetricPoint]:
        rows = await self.storage._rows(f"SELECT tenant_id, id, timestamp, service, {', '.join(_DATA_TYPES)}, "
                                        f"attributes, resource, scope FROM {self._table('metric_points')}"
                                        f"{_where(_conditions(q))} ORDER BY timestamp, id LIMIT {int(q.limit) + 1}")
        return [_point(row) for row in rows]

    async def series(self, q: PointQuery) -> list[SeriesKey]:
        rows = await self.storage._rows("SELECT DISTINCT tenant_id, name, kind, service, attributes, unit, temporality, "
                                        f"monotonic FROM {self._table('metric_points')}{_where(_conditions(q))}")
        return [SeriesKey(*row[:7], None if row[7] is None else bool(row[7])) for row in rows]

    async def records(self, q: RecordQuery) -> list[LogRecord]:
        columns = [c for c in RECORD_TYPES if c != "received_at"]
        rows = await self.storage._rows(f"SELECT {', '.join(columns)} FROM {self._table('log_records')}"
                                        f"{_where(_conditions(q))} ORDER BY timestamp DESC, id DESC "
                                        f"LIMIT {int(q.limit) + 1}")
        return [_record(row) for row in rows]

    async def counts(self, tenant_ids: tuple[str, ...] | None, start_us: int, end_us: int,
                     bucket: str) -> list[tuple[int, str, str, int]]:
        from tea.storage.clickhouse.sql import BUCKETS
        clauses = _where(_conditions(RecordQuery(tenant_ids=tenant_ids, start_us=start_us, end_us=end_us)))
        out: list[tuple[int, str, str, int]] = []
        for table in ("metric_points", "log_records"):
            rows = await self.storage._rows(f"SELECT {BUCKETS[bucket]} AS b, tenant_id, count() FROM "
                                            f"{self._table(table)}{clauses} GROUP BY b, tenant_id")
            out += [(b, tenant, table, n) for b, tenant, n in rows]
        return out

    async def purge_older_than(self, cutoff_us: int, tenant_ids: tuple[str, ...] | None = None,
                               exclude_tenant_ids: tuple[str, ...] = ()) -> int:
        from tea.storage.clickhouse.sql import purge_condition
        condition = purge_condition(cutoff_us, tenant_ids, exclude_tenant_ids)

        def run(client: Any) -> int:
            purged = 0
            for table in ("metric_points", "log_records"):
                purged += client.execute(f"SELECT count() FROM {table} WHERE {condition}")[0][0]
                self.storage._mutate(client, f"ALTER TABLE {table} DELETE WHERE {condition}", table)
            return purged
        return await self.storage._on_writer(run)


def _point(row: tuple[Any, ...]) -> MetricPoint:
    names = list(_DATA_TYPES)
    values = dict(zip(names, row[4:4 + len(names)]))
    kind = values["kind"]
    for name, owner in _ARRAYS.items():  # (arrays are never NULL here: empty where the kind has none)
        values[name] = [tuple(p) for p in values[name]] if name == "quantiles" and owner == kind else \
            (list(values[name]) if owner == kind else None)
    if values["monotonic"] is not None:
        values["monotonic"] = bool(values["monotonic"])
    data = MetricData(**{k: v for k, v in values.items() if v is not None})
    attributes, resource, scope = row[4 + len(names):]
    return MetricPoint(row[0], row[1], row[2], row[3], data, msgspec.Raw(attributes.encode()),
                       msgspec.Raw(resource.encode()), scope)


def _record(row: tuple[Any, ...]) -> LogRecord:
    (tenant, rid, ts, service, number, text, body, body_json, observed, event_name, flags, attrs, resource, scope,
     trace_id, span_id) = row
    value = msgspec.json.decode(body) if body_json and body is not None else body
    return LogRecord(tenant, rid, ts, service, LogData(number, text, value, observed, event_name, flags),
                     msgspec.Raw(attrs.encode()), msgspec.Raw(resource.encode()), scope, trace_id, span_id)
