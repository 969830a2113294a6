"""Metric points and log records in process memory (the memory backend): the reference semantics of every
backend's signal store, bounded like its events (the oldest go first past ``max_rows`` of each)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec

from tea import timebuckets
from tea.signals.model import (LogRecord, MetricPoint, PointQuery, RecordQuery, SeriesKey, body_text, points_of,
                               records_of)

_attrs = msgspec.json.Decoder(dict[str, Any])


def attribute_text(value: Any) -> str | None:
    """An attribute's value as the stores compare it: a string as it is, anything else as its JSON."""
    if value is None:
        return None
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def has_attributes(raw: msgspec.Raw, wanted: tuple[tuple[str, str], ...]) -> bool:
    if not wanted:
        return True
    attrs = _attrs.decode(raw)
    return all(attribute_text(attrs.get(k)) == v for k, v in wanted)


def _in_range(ts: int, start: int | None, end: int | None) -> bool:
    return (start is None or ts >= start) and (end is None or ts < end)


class MemorySignals:
    def __init__(self, max_rows: int = 1_000_000) -> None:
        self.max_rows = max_rows
        self._points: OrderedDict[tuple[str, str], MetricPoint] = OrderedDict()
        self._records: OrderedDict[tuple[str, str], LogRecord] = OrderedDict()

    def _keep(self, rows: OrderedDict, new: list[Any]) -> int:  # type: ignore[type-arg]
        written = 0
        for row in new:
            key = (row.tenant_id, row.id)
            if key not in rows:
                rows[key] = row
                written += 1
        while len(rows) > self.max_rows:
            rows.popitem(last=False)
        return written

    async def write_points(self, lines: list[bytes]) -> int:
        return self._keep(self._points, points_of(lines))

    async def write_records(self, lines: list[bytes]) -> int:
        return self._keep(self._records, records_of(lines))

    def _points_of(self, q: PointQuery) -> list[MetricPoint]:
        found = [p for p in self._points.values()
                 if (q.tenant_ids is None or p.tenant_id in q.tenant_ids) and (q.names is None or p.data.name in q.names)
                 and _in_range(p.timestamp, q.start_us, q.end_us) and (q.service is None or p.service == q.service)
                 and has_attributes(p.attributes, q.attributes)]
        return sorted(found, key=lambda p: (p.timestamp, p.id))

    async def points(self, q: PointQuery) -> list[MetricPoint]:
        return self._points_of(q)[: q.limit + 1]

    async def series(self, q: PointQuery) -> list[SeriesKey]:
        keys = {SeriesKey(p.tenant_id, p.data.name, p.data.kind, p.service, bytes(p.attributes).decode(), p.data.unit,
                          p.data.temporality, p.data.monotonic): None for p in self._points_of(q)}
        return list(keys)

    async def records(self, q: RecordQuery) -> list[LogRecord]:
        needle = q.body_contains.casefold() if q.body_contains is not None else None
        found = []
        for r in self._records.values():
            if (q.tenant_ids is not None and r.tenant_id not in q.tenant_ids) \
                    or not _in_range(r.timestamp, q.start_us, q.end_us) \
                    or (q.min_severity is not None and r.data.severity_number < q.min_severity) \
                    or (q.trace_id is not None and r.trace_id != q.trace_id) \
                    or (q.span_id is not None and r.span_id != q.span_id) \
                    or (q.service is not None and r.service != q.service) \
                    or (q.after is not None and (r.timestamp, r.id) >= q.after):
                continue
            if needle is not None and needle not in (body_text(r.data.body) or "").casefold():
                continue
            if has_attributes(r.attributes, q.attributes):
                found.append(r)
        found.sort(key=lambda r: (r.timestamp, r.id), reverse=True)
        return found[: q.limit + 1]

    async def counts(self, tenant_ids: tuple[str, ...] | None, start_us: int, end_us: int,
                     bucket: str) -> list[tuple[int, str, str, int]]:
        cells: dict[tuple[int, str, str], int] = {}
        for signal, rows in (("metric_points", self._points), ("log_records", self._records)):
            for row in rows.values():
                if (tenant_ids is None or row.tenant_id in tenant_ids) and start_us <= row.timestamp < end_us:
                    key = (timebuckets.floor(row.timestamp, bucket), row.tenant_id, signal)
                    cells[key] = cells.get(key, 0) + 1
        return [(*key, n) for key, n in cells.items()]

    async def purge_older_than(self, cutoff_us: int, tenant_ids: tuple[str, ...] | None = None,
                               exclude_tenant_ids: tuple[str, ...] = ()) -> int:
        purged = 0
        for rows in (self._points, self._records):
            doomed = [k for k, row in rows.items() if row.timestamp < cutoff_us
                      and (tenant_ids is None or row.tenant_id in tenant_ids) and row.tenant_id not in exclude_tenant_ids]
            for key in doomed:
                del rows[key]
            purged += len(doomed)
        return purged
