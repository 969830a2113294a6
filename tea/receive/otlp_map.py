"""OTLP → canonical events: spans here (metric data points and log records: tea.receive.otlp_signals),
from protobuf or JSON.

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
from tea.types import INT32_MAX, INT32_MIN, Event

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
    # (a token key present: their sum, what is no count — text, NaN, a negative number, a boolean — counting 0)
    used = semconv.token_sum(input_tokens, output_tokens) if any(
        attrs.get(k) is not None for k in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")) else None
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
        tenant_id=resource_tenant(resource) if tenant_from_resource else None, timestamp=start_ns // 1000,
        source=_str(resource.get("service.name")), user_id=_str(user), session_id=_str(session),
        method=method[:1024], protocol=protocol, status=STATUS.get(status_code) or ("error" if jsonrpc is not None else None),
        status_code=code if type(code) is int and INT32_MIN <= code <= INT32_MAX else jsonrpc,  # (INTEGER)
        duration_ms=max(0, end_ns - start_ns) / 1e6,
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


def resource_tenant(resource: dict[str, Any]) -> str | None:
    """The tenant a resource names (``tenant.id``), heeded only for admins and development mode."""
    value = resource.get("tenant.id")
    return str(value)[:256] if value else None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)[:1024]
