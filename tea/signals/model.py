"""OTLP metric points and log records as typed rows, and how they travel in the durable buffer.

A data point or log record is acknowledged like every event: as a canonical ``Event`` line in the
buffer (``event_type`` ``metric`` or ``log``) whose ``attributes`` hold the typed payload under fixed
keys — ``{"metric": {...}, "attributes": {...}, "resource": {...}, "scope": "..."}`` (``"log"`` for a
log record). The writer routes those lines to the metric-point and log-record tables instead of the
events table (tea.signals.writer); ``MetricLine`` / ``LogLine`` read exactly those lines.
"""
from __future__ import annotations

from typing import Any

import msgspec

KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
TEMPORALITY = {1: "delta", 2: "cumulative"}


class MetricData(msgspec.Struct, omit_defaults=True, gc=False):
    """One data point's metric and values. ``bounds``/``counts``: explicit-bucket histograms (``counts``
    has one more entry than ``bounds``: the last bucket is (bounds[-1], +Inf]); ``scale``, ``zero_count``,
    ``positive_*``/``negative_*``: exponential histograms; ``quantiles``: summaries, as [q, value] pairs."""

    name: str
    kind: str
    unit: str = ""
    temporality: str | None = None      # sums and histograms: cumulative | delta
    monotonic: bool | None = None       # sums
    start_us: int | None = None
    value: float | None = None          # gauges and sums
    count: int | None = None
    sum: float | None = None
    min: float | None = None
    max: float | None = None
    bounds: list[float] | None = None
    counts: list[int] | None = None
    scale: int | None = None
    zero_count: int | None = None
    positive_offset: int | None = None
    positive_counts: list[int] | None = None
    negative_offset: int | None = None
    negative_counts: list[int] | None = None
    quantiles: list[tuple[float, float]] | None = None
    flags: int | None = None


class LogData(msgspec.Struct, omit_defaults=True, gc=False):
    severity_number: int = 0
    severity_text: str = ""
    body: Any = None                    # a string, or any JSON value the record's AnyValue held
    observed_us: int | None = None
    event_name: str | None = None
    flags: int | None = None


class _MetricPayload(msgspec.Struct, gc=False):
    metric: MetricData
    attributes: msgspec.Raw = msgspec.Raw(b"{}")
    resource: msgspec.Raw = msgspec.Raw(b"{}")
    scope: str | None = None


class _LogPayload(msgspec.Struct, gc=False):
    log: LogData
    attributes: msgspec.Raw = msgspec.Raw(b"{}")
    resource: msgspec.Raw = msgspec.Raw(b"{}")
    scope: str | None = None


class MetricLine(msgspec.Struct, gc=False):
    """A buffered ``metric`` event line, as the metric-point stores read it."""

    event_id: str
    tenant_id: str
    timestamp: int
    received_at: int
    attributes: _MetricPayload
    source: str | None = None


class LogLine(msgspec.Struct, gc=False):
    event_id: str
    tenant_id: str
    timestamp: int
    received_at: int
    attributes: _LogPayload
    source: str | None = None
    trace_id: str | None = None
    span_id: str | None = None


class MetricPoint(msgspec.Struct, omit_defaults=True, gc=False):
    """A stored metric point, as queries return it (``attributes``/``resource`` as JSON text)."""

    tenant_id: str
    id: str
    timestamp: int                      # µs
    service: str | None
    data: MetricData
    attributes: msgspec.Raw = msgspec.Raw(b"{}")
    resource: msgspec.Raw = msgspec.Raw(b"{}")
    scope: str | None = None
    received_at: int = 0                # µs


class LogRecord(msgspec.Struct, omit_defaults=True, gc=False):
    tenant_id: str
    id: str
    timestamp: int                      # µs
    service: str | None
    data: LogData
    attributes: msgspec.Raw = msgspec.Raw(b"{}")
    resource: msgspec.Raw = msgspec.Raw(b"{}")
    scope: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    received_at: int = 0                # µs


METRIC_PREFIX = b'{"event_type":"metric",'
LOG_PREFIX = b'{"event_type":"log",'
_metric_lines = msgspec.json.Decoder(list[MetricLine])
_log_lines = msgspec.json.Decoder(list[LogLine])


def _array(lines: list[bytes]) -> bytes:
    """One JSON array of NDJSON items of one or more whole lines each (a raw newline ends a line)."""
    return b"[" + b",".join(line.rstrip(b"\n") for line in lines).replace(b"\n", b",") + b"]"


def points_of(lines: list[bytes]) -> list[MetricPoint]:
    return [MetricPoint(m.tenant_id, m.event_id, m.timestamp, m.source, m.attributes.metric, m.attributes.attributes,
                        m.attributes.resource, m.attributes.scope, m.received_at)
            for m in _metric_lines.decode(_array(lines))]


def records_of(lines: list[bytes]) -> list[LogRecord]:
    return [LogRecord(r.tenant_id, r.event_id, r.timestamp, r.source, r.attributes.log, r.attributes.attributes,
                      r.attributes.resource, r.attributes.scope, r.trace_id, r.span_id, r.received_at)
            for r in _log_lines.decode(_array(lines))]


def body_text(body: Any) -> str | None:
    """A log body as searchable text: a string as it is, anything else as its JSON."""
    if body is None or isinstance(body, str):
        return body
    return msgspec.json.encode(body).decode()


# ------------------------------------------------------------------ what a read asks for
class PointQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Metric points of ``names`` (all when None) in [start_us, end_us), oldest first; ``attributes``: point
    attributes that must equal these texts; at most ``limit`` (the store answers ``limit + 1`` when there
    are more, so the caller can tell). ``tenant_ids`` None: every tenant (admins)."""

    tenant_ids: tuple[str, ...] | None = None
    names: tuple[str, ...] | None = None
    start_us: int | None = None
    end_us: int | None = None
    service: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    limit: int = 1_000_000


class RecordQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Log records, newest first (timestamp, then id, descending), after ``after`` (a cursor)."""

    tenant_ids: tuple[str, ...] | None = None
    start_us: int | None = None
    end_us: int | None = None
    min_severity: int | None = None
    body_contains: str | None = None        # case-insensitive
    attributes: tuple[tuple[str, str], ...] = ()
    trace_id: str | None = None
    span_id: str | None = None
    service: str | None = None
    after: tuple[int, str] | None = None     # (timestamp, id) of the last record of the previous page
    limit: int = 100


class SeriesKey(msgspec.Struct, frozen=True, gc=False):
    """One distinct series of a metric in a time range (what the Prometheus API's discovery lists)."""

    tenant_id: str
    name: str
    kind: str
    service: str | None
    attributes: str                          # JSON text
    unit: str = ""
    temporality: str | None = None
    monotonic: bool | None = None
