"""OTLP → canonical events: spans, log records and metric data points, from protobuf or JSON.

Each wire form has a small adapter yielding plain values; one mapping per signal turns them into
events, so protobuf and JSON behave identically. Semantic conventions lifted into columns:
HTTP (``http.request.method``/``http.method``, ``http.route``, ``http.response.status_code``/
``http.status_code``, ``url.*``), GenAI (``gen_ai.usage.input_tokens`` + ``output_tokens`` →
``tokens_used``, and each in its own column; ``gen_ai.tool.name`` → ``tool``, ``gen_ai.request.model``
→ ``model``), MCP (``mcp.method.name`` / ``gen_ai.tool.name`` → ``method``, ``mcp.session.id``
→ ``session_id``, a JSON-RPC error code → ``status_code`` and ``error``: tea.semconv); everything else
stays in ``attributes``, the resource attributes under ``resource``. Timestamps are UTC microseconds.
"""
from __future__ import annotations

import base64
from typing import Any, Iterator

import msgspec

from tea import semconv
from tea.types import Event

SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
STATUS = {1: "ok", 2: "error"}  # 0 (unset): no opinion — status stays empty


# ------------------------------------------------------------------ attribute values
def pb_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [pb_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: pb_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


def pb_attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in pairs:  # the scalar cases inline: this runs for every attribute of every span
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "string_value":
            out[kv.key] = value.string_value
        elif kind == "int_value":
            out[kv.key] = value.int_value
        else:
            out[kv.key] = pb_value(value)
    return out


def json_value(value: dict[str, Any] | None) -> Any:
    if not value:
        return None
    for key, item in value.items():
        if key == "stringValue" or key == "boolValue" or key == "bytesValue":
            return item
        if key == "intValue":
            return int(item)
        if key == "doubleValue":
            return float(item)
        if key == "arrayValue":
            return [json_value(v) for v in (item or {}).get("values", [])]
        if key == "kvlistValue":
            return {kv["key"]: json_value(kv.get("value")) for kv in (item or {}).get("values", [])}
    return None


def json_attributes(pairs: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {kv["key"]: json_value(kv.get("value")) for kv in pairs or ()}


def json_id(text: str | None) -> str | None:
    return text.lower() if text else None


# ------------------------------------------------------------------ spans
def span_event(*, trace_id: str | None, span_id: str | None, parent_span_id: str | None, name: str, kind: int,
               start_ns: int, end_ns: int, attrs: dict[str, Any], status_code: int, status_message: str,
               resource: dict[str, Any], scope: str | None, events: list[dict[str, Any]],
               tenant_from_resource: bool, resource_json: bytes | None = None) -> Event:
    """``attrs`` is the span's own dict (it is extended in place); ``resource_json`` is the resource
    attributes already encoded, shared by every span of that resource."""
    http_method = attrs.get("http.request.method") or attrs.get("http.method")
    route = attrs.get("http.route") or attrs.get("url.path") or attrs.get("http.target")
    mcp_method = attrs.get("mcp.method.name") or attrs.get("gen_ai.tool.name")
    if mcp_method:
        method, protocol = str(mcp_method), "mcp"
    elif http_method:
        method, protocol = f"{http_method} {route}" if route else str(http_method), "http"
    else:
        method, protocol = name, ("grpc" if attrs.get("rpc.system") == "grpc" else None)
    code = attrs.get("http.response.status_code", attrs.get("http.status_code", attrs.get("rpc.grpc.status_code")))
    jsonrpc = semconv.jsonrpc_code(attrs)
    tool, model, input_tokens, output_tokens = semconv.genai(attrs)
    tokens = [attrs.get(k) for k in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")]
    used = sum(int(t) for t in tokens if isinstance(t, (int, float))) if any(t is not None for t in tokens) else None
    user = attrs.get("enduser.id") or attrs.get("user.id")
    session = attrs.get("mcp.session.id") or attrs.get("session.id")
    error_type = attrs.get("error.type")
    attrs["span.name"] = name
    attrs["span.kind"] = SPAN_KINDS[kind] if 0 <= kind < 6 else str(kind)
    if scope:
        attrs["scope"] = scope
    if events:
        attrs["span.events"] = events
    encoded = msgspec.json.encode(attrs)
    encoded = encoded[:-1] + b',"resource":' + (resource_json or msgspec.json.encode(resource)) + b"}"
    return Event(
        event_type="span", event_id=f"{trace_id}{span_id}" if trace_id and span_id else None,
        tenant_id=_tenant(resource) if tenant_from_resource else None, timestamp=start_ns // 1000,
        source=_str(resource.get("service.name")), user_id=_str(user), session_id=_str(session),
        method=method[:1024], protocol=protocol, status=STATUS.get(status_code) or ("error" if jsonrpc is not None else None),
        status_code=code if isinstance(code, int) else jsonrpc, duration_ms=max(0, end_ns - start_ns) / 1e6,
        tokens_used=used, error_type=_str(error_type), error_message=status_message or None, trace_id=trace_id,
        span_id=span_id, parent_span_id=parent_span_id, attributes=msgspec.Raw(encoded), tool=tool, model=model,
        input_tokens=input_tokens, output_tokens=output_tokens)


def pb_spans(request: Any, tenant_from_resource: bool) -> Iterator[Event]:
    for resource_spans in request.resource_spans:
        resource = pb_attributes(resource_spans.resource.attributes)
        resource_json = msgspec.json.encode(resource)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name or None
            for s in scope_spans.spans:
                events = [{"name": e.name, "time_unix_nano": e.time_unix_nano, **pb_attributes(e.attributes)}
                          for e in s.events] if s.events else None
                yield span_event(trace_id=s.trace_id.hex() or None, span_id=s.span_id.hex() or None,
                                 parent_span_id=s.parent_span_id.hex() or None, name=s.name, kind=s.kind,
                                 start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano,
                                 attrs=pb_attributes(s.attributes), status_code=s.status.code,
                                 status_message=s.status.message, resource=resource, scope=scope,
                                 events=events, tenant_from_resource=tenant_from_resource,  # type: ignore[arg-type]
                                 resource_json=resource_json)


def json_spans(request: dict[str, Any], tenant_from_resource: bool) -> Iterator[Event]:
    for resource_spans in request.get("resourceSpans") or ():
        resource = json_attributes((resource_spans.get("resource") or {}).get("attributes"))
        resource_json = msgspec.json.encode(resource)
        for scope_spans in resource_spans.get("scopeSpans") or ():
            scope = (scope_spans.get("scope") or {}).get("name") or None
            for s in scope_spans.get("spans") or ():
                status = s.get("status") or {}
                events = [{"name": e.get("name"), "time_unix_nano": int(e.get("timeUnixNano", 0)),
                           **json_attributes(e.get("attributes"))} for e in s.get("events") or ()]
                yield span_event(trace_id=json_id(s.get("traceId")), span_id=json_id(s.get("spanId")),
                                 parent_span_id=json_id(s.get("parentSpanId")), name=s.get("name", ""),
                                 kind=int(s.get("kind", 0)), start_ns=int(s.get("startTimeUnixNano", 0)),
                                 end_ns=int(s.get("endTimeUnixNano", 0)), attrs=json_attributes(s.get("attributes")),
                                 status_code=int(status.get("code", 0)), status_message=status.get("message", ""),
                                 resource=resource, scope=scope, events=events,
                                 tenant_from_resource=tenant_from_resource, resource_json=resource_json)


# ------------------------------------------------------------------ logs
def log_event(*, time_ns: int, severity_number: int, severity_text: str, body: Any, attrs: dict[str, Any],
              trace_id: str | None, span_id: str | None, event_name: str | None, resource: dict[str, Any],
              tenant_from_resource: bool) -> Event:
    extra = {**attrs, "severity_number": severity_number, "severity_text": severity_text, "body": body,
             "resource": resource}
    return Event(event_type="log", tenant_id=_tenant(resource) if tenant_from_resource else None,
                 timestamp=time_ns // 1000 if time_ns else None, source=_str(resource.get("service.name")),
                 method=event_name or None, status="error" if severity_number >= 17 else None,
                 error_message=body if severity_number >= 17 and isinstance(body, str) else None,
                 trace_id=trace_id, span_id=span_id, attributes=msgspec.Raw(msgspec.json.encode(extra)))


def pb_logs(request: Any, tenant_from_resource: bool) -> Iterator[Event]:
    for resource_logs in request.resource_logs:
        resource = pb_attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for r in scope_logs.log_records:
                yield log_event(time_ns=r.time_unix_nano or r.observed_time_unix_nano,
                                severity_number=r.severity_number, severity_text=r.severity_text,
                                body=pb_value(r.body), attrs=pb_attributes(r.attributes),
                                trace_id=r.trace_id.hex() or None, span_id=r.span_id.hex() or None,
                                event_name=r.event_name, resource=resource, tenant_from_resource=tenant_from_resource)


def json_logs(request: dict[str, Any], tenant_from_resource: bool) -> Iterator[Event]:
    for resource_logs in request.get("resourceLogs") or ():
        resource = json_attributes((resource_logs.get("resource") or {}).get("attributes"))
        for scope_logs in resource_logs.get("scopeLogs") or ():
            for r in scope_logs.get("logRecords") or ():
                yield log_event(time_ns=int(r.get("timeUnixNano") or r.get("observedTimeUnixNano") or 0),
                                severity_number=int(r.get("severityNumber", 0)),
                                severity_text=r.get("severityText", ""), body=json_value(r.get("body")),
                                attrs=json_attributes(r.get("attributes")), trace_id=json_id(r.get("traceId")),
                                span_id=json_id(r.get("spanId")), event_name=r.get("eventName"), resource=resource,
                                tenant_from_resource=tenant_from_resource)


# ------------------------------------------------------------------ metrics
def metric_event(*, name: str, unit: str, kind: str, time_ns: int, value: float | None, attrs: dict[str, Any],
                 detail: dict[str, Any], resource: dict[str, Any], tenant_from_resource: bool) -> Event:
    extra = {**attrs, "metric.name": name, "metric.unit": unit, "metric.kind": kind, "value": value, **detail,
             "resource": resource}
    return Event(event_type="metric", tenant_id=_tenant(resource) if tenant_from_resource else None,
                 timestamp=time_ns // 1000 if time_ns else None, source=_str(resource.get("service.name")),
                 method=name[:1024], attributes=msgspec.Raw(msgspec.json.encode(extra)))


def pb_metrics(request: Any, tenant_from_resource: bool) -> Iterator[Event]:
    for resource_metrics in request.resource_metrics:
        resource = pb_attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for m in scope_metrics.metrics:
                kind = m.WhichOneof("data")
                if kind is None:
                    continue
                data = getattr(m, kind)
                for point in data.data_points:
                    value, detail = _pb_point(kind, data, point)
                    yield metric_event(name=m.name, unit=m.unit, kind=kind, time_ns=point.time_unix_nano,
                                       value=value, attrs=pb_attributes(point.attributes), detail=detail,
                                       resource=resource, tenant_from_resource=tenant_from_resource)


def _pb_point(kind: str, data: Any, point: Any) -> tuple[float | None, dict[str, Any]]:
    if kind in ("gauge", "sum"):
        value = point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int)
        detail = {"monotonic": data.is_monotonic, "temporality": data.aggregation_temporality} if kind == "sum" else {}
        return value, detail
    detail = {"count": point.count, "sum": point.sum if point.HasField("sum") or kind == "summary" else None}
    if kind == "histogram":
        detail.update(bucket_counts=list(point.bucket_counts), explicit_bounds=list(point.explicit_bounds),
                      min=point.min if point.HasField("min") else None, max=point.max if point.HasField("max") else None)
    elif kind == "summary":
        detail["quantiles"] = {str(q.quantile): q.value for q in point.quantile_values}
    elif kind == "exponential_histogram":
        detail.update(scale=point.scale, zero_count=point.zero_count)
    return detail["sum"], detail


def json_metrics(request: dict[str, Any], tenant_from_resource: bool) -> Iterator[Event]:
    for resource_metrics in request.get("resourceMetrics") or ():
        resource = json_attributes((resource_metrics.get("resource") or {}).get("attributes"))
        for scope_metrics in resource_metrics.get("scopeMetrics") or ():
            for m in scope_metrics.get("metrics") or ():
                kind = next((k for k in ("gauge", "sum", "histogram", "exponentialHistogram", "summary") if k in m),
                            None)
                if kind is None:
                    continue
                for point in (m[kind] or {}).get("dataPoints") or ():
                    value, detail = _json_point(kind, point)
                    yield metric_event(name=m.get("name", ""), unit=m.get("unit", ""), kind=_snake(kind),
                                       time_ns=int(point.get("timeUnixNano", 0)), value=value,
                                       attrs=json_attributes(point.get("attributes")), detail=detail,
                                       resource=resource, tenant_from_resource=tenant_from_resource)


def _json_point(kind: str, point: dict[str, Any]) -> tuple[float | None, dict[str, Any]]:
    if kind in ("gauge", "sum"):
        raw = point.get("asDouble", point.get("asInt"))
        return (float(raw) if raw is not None else None), {}
    total = point.get("sum")
    detail: dict[str, Any] = {"count": int(point.get("count", 0)), "sum": float(total) if total is not None else None}
    if kind == "histogram":
        detail.update(bucket_counts=[int(c) for c in point.get("bucketCounts", [])],
                      explicit_bounds=[float(b) for b in point.get("explicitBounds", [])])
    return detail["sum"], detail


def _snake(name: str) -> str:
    return "exponential_histogram" if name == "exponentialHistogram" else name


def _tenant(resource: dict[str, Any]) -> str | None:
    value = resource.get("tenant.id")
    return str(value)[:256] if value else None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)[:1024]
