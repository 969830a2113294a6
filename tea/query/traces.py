"""``GET /v1/traces`` (summaries) and ``GET /v1/traces/{trace_id}`` (the span tree with timings)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from tea.errors import BadRequest, NotFound
from tea.http import Param, Request, Response, Route
from tea.http.response import JSON, encode_json
from tea.http.schemas import error_responses
from tea.query.spec import check_params, int_param, text_param, time_param
from tea.timeutil import format_us
from tea.types import Event, EventFilter, QuerySpec, TraceSummary

if TYPE_CHECKING:
    from tea.app import TeaApp

MAX_SPANS = 10000


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


def routes(app: "TeaApp") -> list[Route]:
    async def list_traces(request: Request) -> Response:
        check_params(request, {"service", "min_duration_ms", "status", "start_time", "end_time", "limit", "tenant_id"})
        status = request.param("status")
        if status not in (None, "error", "ok"):
            raise BadRequest("parameter `status` must be error or ok", code="invalid_parameter",
                             details={"parameter": "status"})
        raw = request.param("min_duration_ms") or "0"
        try:
            min_duration = float(raw)
        except ValueError:
            raise BadRequest("parameter `min_duration_ms` must be a number", code="invalid_parameter",
                             details={"parameter": "min_duration_ms"}) from None
        tenant = text_param(request, "tenant_id")
        f = EventFilter(tenant_ids=(tenant,) if tenant else None, start_us=time_param(request, "start_time"),
                        end_us=time_param(request, "end_time"))
        found = await app.reader(request).traces(
            f, service=text_param(request, "service"), min_duration_ms=min_duration,
            errors=None if status is None else status == "error", limit=int_param(request, "limit", 20, 1, 1000))
        return Response(encode_json(TracesPage([summary_view(t) for t in found])), 200, JSON)

    async def get_trace(request: Request) -> Response:
        trace_id = request.path_params["trace_id"].lower()
        result = await app.reader(request).query_events(QuerySpec(
            EventFilter(trace_id=trace_id, event_type="span"), limit=MAX_SPANS, with_total=False))
        if not result.events:
            raise NotFound(f"no trace {trace_id!r}", code="trace_not_found", details={"trace_id": trace_id})
        return Response(encode_json(build_tree(trace_id, result.events)), 200, JSON)

    return [
        Route("GET", "/v1/traces", list_traces, "Trace summaries: root span, service, start, duration, spans, errors",
              tags=("traces",), params=(Param("service", "traces with a span of this service"),
                                        Param("min_duration_ms", "at least this long"),
                                        Param("status", "error or ok"), Param("start_time", "from"),
                                        Param("end_time", "until"), Param("tenant_id", "admins: one tenant"),
                                        Param("limit", "1 to 1000 (default 20)")),
              responses={200: ("Traces", {"application/json": TracesPage}), **error_responses(400, 401, 403)}),
        Route("GET", "/v1/traces/{trace_id}", get_trace, "One trace as a span tree with timings", tags=("traces",),
              params=(Param("trace_id", "32 hex characters", location="path", required=True),),
              responses={200: ("The trace", {"application/json": TraceTree}), **error_responses(401, 403, 404)}),
    ]
