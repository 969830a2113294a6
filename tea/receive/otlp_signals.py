"""OTLP metric data points and log records → ``metric`` / ``log`` events carrying typed payloads
(tea.signals.model), from protobuf or JSON: one adapter per wire form yields plain values, one mapping per
signal builds the events, so both forms store the same thing.

A point's id is derived from what makes it that point — metric name and kind, resource, attributes,
start and time — and a record's from all it carries, so an exporter's retry of a request whose answer it
lost stores nothing twice (replays of the buffer repeat ids anyway).
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterator

import msgspec

from tea.receive.otlp_map import json_attributes, json_id, json_value, pb_attributes, pb_value, resource_tenant
from tea.semconv import text
from tea.signals.model import TEMPORALITY, LogData, MetricData
from tea.types import Event

_encode = msgspec.json.encode
_JSON_KINDS = {"gauge": "gauge", "sum": "sum", "histogram": "histogram", "exponentialHistogram": "exponential_histogram",
               "summary": "summary"}


def point_id(data: bytes) -> str:
    """The id of a point or record from its bytes (tea/_otlpfast.c calls this too)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _id(*parts: bytes) -> str:
    return point_id(b"\x00".join(parts))


def _payload(key: str, data: msgspec.Struct, attrs: dict[str, Any], resource_json: bytes, scope: str | None) -> bytes:
    parts = [b'{"', key.encode(), b'":', _encode(data), b',"attributes":', _encode(attrs), b',"resource":',
             resource_json]
    if scope:
        parts += [b',"scope":', _encode(scope)]
    return b"".join(parts) + b"}"


# ------------------------------------------------------------------ metrics
def metric_event(data: MetricData, time_ns: int, attrs: dict[str, Any], resource: dict[str, Any],
                 resource_json: bytes, scope: str | None, tenant_from_resource: bool) -> Event:
    payload = _payload("metric", data, attrs, resource_json, scope)
    return Event(event_type="metric", event_id=_id(payload, str(time_ns).encode()),
                 tenant_id=resource_tenant(resource) if tenant_from_resource else None,
                 timestamp=time_ns // 1000 if time_ns else None, source=text(resource.get("service.name")),
                 method=data.name[:1024], attributes=msgspec.Raw(payload))


def pb_metrics(request: Any, tenant_from_resource: bool) -> Iterator[Event]:
    for resource_metrics in request.resource_metrics:
        resource = pb_attributes(resource_metrics.resource.attributes)
        resource_json = _encode(resource)
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope.name or None
            for m in scope_metrics.metrics:
                kind = m.WhichOneof("data")
                if kind is None:
                    continue
                body = getattr(m, kind)
                for point in body.data_points:
                    yield metric_event(_pb_data(m.name, m.unit, kind, body, point), point.time_unix_nano,
                                       pb_attributes(point.attributes), resource, resource_json, scope,
                                       tenant_from_resource)


def _pb_data(name: str, unit: str, kind: str, body: Any, point: Any) -> MetricData:
    start = point.start_time_unix_nano // 1000 or None
    flags = point.flags or None
    if kind in ("gauge", "sum"):
        value = point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int)
        if kind == "gauge":
            return MetricData(name, kind, unit, start_us=start, value=value, flags=flags)
        return MetricData(name, kind, unit, TEMPORALITY.get(body.aggregation_temporality), body.is_monotonic, start,
                          value, flags=flags)
    if kind == "summary":
        return MetricData(name, kind, unit, start_us=start, count=point.count, sum=point.sum, flags=flags,
                          quantiles=[(q.quantile, q.value) for q in point.quantile_values])
    optional = {k: getattr(point, k) for k in ("sum", "min", "max") if point.HasField(k)}
    temporality = TEMPORALITY.get(body.aggregation_temporality)
    if kind == "histogram":
        return MetricData(name, kind, unit, temporality, None, start, count=point.count, bounds=list(point.explicit_bounds),
                          counts=list(point.bucket_counts), flags=flags, **optional)
    return MetricData(name, kind, unit, temporality, None, start, count=point.count, scale=point.scale,
                      zero_count=point.zero_count, positive_offset=point.positive.offset,
                      positive_counts=list(point.positive.bucket_counts), negative_offset=point.negative.offset,
                      negative_counts=list(point.negative.bucket_counts), flags=flags, **optional)


def json_metrics(request: dict[str, Any], tenant_from_resource: bool) -> Iterator[Event]:
    for resource_metrics in request.get("resourceMetrics") or ():
        resource = json_attributes((resource_metrics.get("resource") or {}).get("attributes"))
        resource_json = _encode(resource)
        for scope_metrics in resource_metrics.get("scopeMetrics") or ():
            scope = (scope_metrics.get("scope") or {}).get("name") or None
            for m in scope_metrics.get("metrics") or ():
                key = next((k for k in _JSON_KINDS if k in m), None)
                if key is None:
                    continue
                body = m[key] or {}
                for point in body.get("dataPoints") or ():
                    yield metric_event(_json_data(m.get("name", ""), m.get("unit", ""), _JSON_KINDS[key], body, point),
                                       int(point.get("timeUnixNano", 0)), json_attributes(point.get("attributes")),
                                       resource, resource_json, scope, tenant_from_resource)


def _temporality(body: dict[str, Any]) -> str | None:
    raw = body.get("aggregationTemporality", 0)
    if isinstance(raw, str) and not raw.isdigit():  # (the enum's name, as some JSON encoders write it)
        return {"AGGREGATION_TEMPORALITY_DELTA": "delta", "AGGREGATION_TEMPORALITY_CUMULATIVE": "cumulative"}.get(raw)
    return TEMPORALITY.get(int(raw))


def _floats(values: Any) -> list[float]:
    return [float(v) for v in values or ()]


def _ints(values: Any) -> list[int]:
    return [int(v) for v in values or ()]


def _json_data(name: str, unit: str, kind: str, body: dict[str, Any], point: dict[str, Any]) -> MetricData:
    start = int(point.get("startTimeUnixNano", 0)) // 1000 or None
    flags = int(point.get("flags", 0)) or None
    if kind in ("gauge", "sum"):
        value = float(point["asDouble"]) if "asDouble" in point else float(int(point.get("asInt", 0)))
        if kind == "gauge":
            return MetricData(name, kind, unit, start_us=start, value=value, flags=flags)
        return MetricData(name, kind, unit, _temporality(body), bool(body.get("isMonotonic", False)), start, value,
                          flags=flags)
    if kind == "summary":
        return MetricData(name, kind, unit, start_us=start, count=int(point.get("count", 0)),
                          sum=float(point.get("sum", 0.0)), flags=flags,
                          quantiles=[(float(q.get("quantile", 0.0)), float(q.get("value", 0.0)))
                                     for q in point.get("quantileValues") or ()])
    optional = {k: float(point[k]) for k in ("sum", "min", "max") if k in point}
    if kind == "histogram":
        return MetricData(name, kind, unit, _temporality(body), None, start, count=int(point.get("count", 0)),
                          bounds=_floats(point.get("explicitBounds")), counts=_ints(point.get("bucketCounts")),
                          flags=flags, **optional)
    positive, negative = point.get("positive") or {}, point.get("negative") or {}
    return MetricData(name, kind, unit, _temporality(body), None, start, count=int(point.get("count", 0)),
                      scale=int(point.get("scale", 0)), zero_count=int(point.get("zeroCount", 0)),
                      positive_offset=int(positive.get("offset", 0)), positive_counts=_ints(positive.get("bucketCounts")),
                      negative_offset=int(negative.get("offset", 0)), negative_counts=_ints(negative.get("bucketCounts")),
                      flags=flags, **optional)


# ------------------------------------------------------------------ logs
def log_event(*, time_ns: int, observed_ns: int, data: LogData, attrs: dict[str, Any], trace_id: str | None,
              span_id: str | None, resource: dict[str, Any], resource_json: bytes, scope: str | None,
              tenant_from_resource: bool) -> Event:
    payload = _payload("log", data, attrs, resource_json, scope)
    stamp = time_ns or observed_ns
    error = data.severity_number >= 17
    return Event(event_type="log", event_id=_id(payload, str(time_ns).encode(), (trace_id or "").encode(),
                                                (span_id or "").encode()),
                 tenant_id=resource_tenant(resource) if tenant_from_resource else None,
                 timestamp=stamp // 1000 if stamp else None, source=text(resource.get("service.name")),
                 method=text(data.event_name) or None, status="error" if error else None,
                 error_message=data.body[:65536] if error and isinstance(data.body, str) else None,
                 trace_id=trace_id, span_id=span_id, attributes=msgspec.Raw(payload))


def pb_logs(request: Any, tenant_from_resource: bool) -> Iterator[Event]:
    for resource_logs in request.resource_logs:
        resource = pb_attributes(resource_logs.resource.attributes)
        resource_json = _encode(resource)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope.name or None
            for r in scope_logs.log_records:
                data = LogData(r.severity_number, r.severity_text, pb_value(r.body), r.observed_time_unix_nano // 1000
                               or None, r.event_name or None, r.flags or None)
                yield log_event(time_ns=r.time_unix_nano, observed_ns=r.observed_time_unix_nano, data=data,
                                attrs=pb_attributes(r.attributes), trace_id=r.trace_id.hex() or None,
                                span_id=r.span_id.hex() or None, resource=resource, resource_json=resource_json,
                                scope=scope, tenant_from_resource=tenant_from_resource)


def json_logs(request: dict[str, Any], tenant_from_resource: bool) -> Iterator[Event]:
    for resource_logs in request.get("resourceLogs") or ():
        resource = json_attributes((resource_logs.get("resource") or {}).get("attributes"))
        resource_json = _encode(resource)
        for scope_logs in resource_logs.get("scopeLogs") or ():
            scope = (scope_logs.get("scope") or {}).get("name") or None
            for r in scope_logs.get("logRecords") or ():
                observed = int(r.get("observedTimeUnixNano") or 0)
                data = LogData(int(r.get("severityNumber", 0)), r.get("severityText", ""), json_value(r.get("body")),
                               observed // 1000 or None, r.get("eventName") or None, int(r.get("flags", 0)) or None)
                yield log_event(time_ns=int(r.get("timeUnixNano") or 0), observed_ns=observed, data=data,
                                attrs=json_attributes(r.get("attributes")), trace_id=json_id(r.get("traceId")),
                                span_id=json_id(r.get("spanId")), resource=resource, resource_json=resource_json,
                                scope=scope, tenant_from_resource=tenant_from_resource)
