"""``GET /v1/traces`` (summaries) and ``GET /v1/traces/{trace_id}`` (the span tree with timings)."""
from __future__ import annotations

from typing import Annotated, Any

import msgspec

from tea.errors import NotFound
from tea.http import Request, Response, Route
from tea.http.params import choice, text, whole
from tea.http.response import JSON, encode_json
from tea.http.schemas import error_responses
from tea.query.readers import Readers
from tea.query.scope import tenant_filter
from tea.query.spec import Tenant, Window, event_filter
from tea.timeutil import format_us
from tea.types import Event, QuerySpec, TraceSummary

MAX_SPANS = 10000
MAX_DURATION_MS = 1e15  # (31 000 years: any finite duration TEA stores is below it)


class TracesParams(Window):
    service: text("traces with a span of this service") | None = None  # type: ignore[valid-type]
    min_duration_ms: Annotated[float, msgspec.Meta(ge=0, le=MAX_DURATION_MS, description="at least this long")] = 0.0
    status: choice("error or ok", ("error", "ok")) | None = None  # type: ignore[valid-type]
    limit: whole("1 to 1000 (default 20)", 1, 1000) = 20  # type: ignore[valid-type]


class TraceParams(Tenant, kw_only=True):
    PATH = frozenset({"trace_id"})
    trace_id: text("32 hex characters")  # type: ignore[valid-type]


class TraceView(msgspec.Struct):
    trace_id: str
    start_time: str
    duration_ms: float
    span_count: int
    error_count: int
    root_span: str | None
    service: str | None
    services: list[str]


class TracesPage(msgspec.Struct):
    traces: list[TraceView]


class SpanNode(msgspec.Struct):
    span_id: str | None
    parent_span_id: str | None
    name: str | None       # the span's own name
    method: str | None     # what TEA derived from it (MCP method, "POST /route", …): the event's method
    service: str | None
    start_time: str
    offset_ms: float       # from the start of the trace
    duration_ms: float | None
    status: str | None
    status_code: int | None
    attributes: msgspec.Raw
    children: list["SpanNode"]


class TraceTree(msgspec.Struct):
    trace_id: str
    start_time: str
    duration_ms: float
    span_count: int
    error_count: int
    spans: list[SpanNode]


def summary_view(t: TraceSummary) -> TraceView:
    return TraceView(t.trace_id, format_us(t.start_us), (t.end_us - t.start_us) / 1000, t.span_count,
                     t.error_count, t.root_name, t.root_service, list(t.services))


class _Named(msgspec.Struct):
    name: str | None = msgspec.field(default=None, name="span.name")


_named = msgspec.json.Decoder(_Named)


def span_name(span: Event) -> str | None:
    """The span's own name, which the OTLP mappers keep in ``attributes["span.name"]`` (the event's
    ``method`` is derived: the MCP method, ``POST /route``, …); the method for spans stored without it."""
    if not span.attributes:
        return span.method
    try:
        return _named.decode(span.attributes).name or span.method
    except msgspec.DecodeError:  # (a ValidationError too: a span.name that is not text)
        return span.method


def build_tree(trace_id: str, spans: list[Event]) -> TraceTree:
    start = min(s.timestamp for s in spans)  # type: ignore[type-var]
    end = max(s.timestamp + int((s.duration_ms or 0) * 1000) for s in spans)  # type: ignore[operator]
    nodes: dict[Any, SpanNode] = {}
    for s in sorted(spans, key=lambda s: s.timestamp):  # type: ignore[arg-type,return-value]
        nodes[s.span_id] = SpanNode(s.span_id, s.parent_span_id, span_name(s), s.method, s.source,
                                    format_us(s.timestamp),  # type: ignore[arg-type]
                                    (s.timestamp - start) / 1000, s.duration_ms, s.status, s.status_code,  # type: ignore[operator]
                                    s.attributes, [])
    roots = []
    for node in nodes.values():
        parent = nodes.get(node.parent_span_id) if node.parent_span_id else None
        (parent.children if parent is not None and parent is not node else roots).append(node)
    return TraceTree(trace_id, format_us(start), (end - start) / 1000, len(spans),
                     sum(1 for s in spans if s.status == "error"), roots)


def routes(readers: Readers) -> list[Route]:
    async def list_traces(request: Request, p: TracesParams) -> Response:
        found = await readers.of(request).traces(
            event_filter(p), service=p.service, min_duration_ms=p.min_duration_ms,
            errors=None if p.status is None else p.status == "error", limit=p.limit)
        return Response(encode_json(TracesPage([summary_view(t) for t in found])), 200, JSON)

    async def get_trace(request: Request, p: TraceParams) -> Response:
        trace_id = p.trace_id.lower()
        result = await readers.of(request).query_events(QuerySpec(
            tenant_filter(p.tenant_id, trace_id=trace_id, event_type="span"), limit=MAX_SPANS, with_total=False))
        if not result.events:
            raise NotFound(f"no trace {trace_id!r}", code="trace_not_found", details={"trace_id": trace_id})
        return Response(encode_json(build_tree(trace_id, result.events)), 200, JSON)

    return [
        Route("GET", "/v1/traces", list_traces, "Trace summaries: root span, service, start, duration, spans, errors",
              tags=("traces",), query=TracesParams,
              responses={200: ("Traces", {"application/json": TracesPage}), **error_responses(400, 401, 403)}),
        Route("GET", "/v1/traces/{trace_id}", get_trace, "One trace as a span tree with timings", tags=("traces",),
              query=TraceParams,
              responses={200: ("The trace", {"application/json": TraceTree}), **error_responses(400, 401, 403, 404)}),
    ]
