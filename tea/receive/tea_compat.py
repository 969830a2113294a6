"""The seed TEA's own contract (CONTRACTS.md 1.1): ``POST /events`` in both shapes, ``GET /events``.

* README shape: ``{"event_type", "tenant_id", "user_id", "metadata": {...}}`` →
  ``{"event_id", "status": "accepted", "timestamp"}``.
* FTL gateway shape: ``{"event": MetricEvent}`` → the MCP tool reply
  ``{"content": [{"type": "text", "text": "Event recorded"}]}`` (errors add ``"isError": true``).
"""
from __future__ import annotations

from typing import Annotated, Any

import msgspec

from tea.errors import BadRequest, ClientError
from tea.http import Request, Response, Route
from tea.auth.principal import WRITE
from tea.http.response import JSON, empty_response, encode_json
from tea.http.body import check_utf8, decode
from tea.http.params import whole
from tea.pipeline.ingest import Ingestor
from tea.query.readers import Readers
from tea.query.spec import CursorText, SeedFilters, decode_cursor, event_filter
from tea.receive.decode import decode_json, error_field, iso_timestamp
from tea.settings import Settings
from tea.timeutil import MAX_US, format_us
from tea.types import COLUMNS, Count, Decoded, Event, Ident, QuerySpec, Short, Tag, TenantName, WireTime

# metadata keys lifted into promoted columns; everything else in metadata goes to attributes
PROMOTED = frozenset(COLUMNS) - {"event_id", "tenant_id", "timestamp", "received_at", "event_type", "user_id",
                                 "session_id", "source_protocol", "tags", "attributes"}


class TeaEventIn(msgspec.Struct):
    """The seed README's event body."""

    event_type: Ident
    timestamp: WireTime = None
    event_id: Ident | None = None
    tenant_id: TenantName | None = None
    user_id: Short | None = None
    session_id: Short | None = None
    metadata: dict[str, Any] = {}
    tags: list[Tag] = []


class TeaAccepted(msgspec.Struct):
    event_id: str
    status: str
    timestamp: str


class MetricEvent(msgspec.Struct):
    """What the FTL MCP gateway sends (components/mcp-gateway invocation_tracker.rs)."""

    timestamp: Annotated[int, msgspec.Meta(ge=0, le=MAX_US // 1000, description="Unix milliseconds")]
    tool_name: Short
    component_name: Short
    duration_ms: float
    success: bool
    request_size: Count | None = None
    metadata: dict[str, str] = {}


class GatewayBody(msgspec.Struct):
    event: MetricEvent


class ToolText(msgspec.Struct):
    type: str
    text: str


class ToolReply(msgspec.Struct, omit_defaults=True):
    content: list[ToolText]
    isError: bool = False


class TeaEventView(msgspec.Struct):
    event_id: str
    timestamp: str
    event_type: str
    tenant_id: str
    user_id: str | None
    session_id: str | None
    metadata: dict[str, Any]
    tags: list[str]


class TeaEventsPage(msgspec.Struct):
    events: list[TeaEventView]
    total_count: int
    has_more: bool


class SeedEventsParams(SeedFilters):
    limit: whole("page size, 1 to 10000 (default 100)", 1, 10000) = 100  # type: ignore[valid-type]
    cursor: CursorText | None = None  # type: ignore[valid-type]


_probe = msgspec.json.Decoder(dict[str, msgspec.Raw])
_readme = msgspec.json.Decoder(TeaEventIn)
_gateway = msgspec.json.Decoder(GatewayBody)
_event = msgspec.json.Decoder(Event)
_any = msgspec.json.Decoder()


def decode_readme(body: bytes) -> TeaEventIn:
    """The README body; a timestamp in an ISO 8601 form beyond RFC 3339 (``2024-01-15``) is read on a retry."""
    try:
        return decode(_readme, body)
    except msgspec.ValidationError as exc:
        rewritten = iso_timestamp(body) if error_field(exc) == "timestamp" else None
        if rewritten is None:
            raise
        return decode(_readme, rewritten)


def tool_reply(text: str, status: int = 200, error: bool = False, headers: dict[str, str] | None = None) -> Response:
    return Response(encode_json(ToolReply([ToolText("text", text)], error)), status, JSON, headers)


def from_readme(body: TeaEventIn, extra: dict[str, Any]) -> Event:
    """Canonical event from the README body. Promoted columns may come from ``metadata`` or, leniently,
    from the top level; everything else (and a top-level ``attributes`` object) goes to attributes."""
    fields: dict[str, Any] = {"event_type": body.event_type, "event_id": body.event_id,
                              "tenant_id": body.tenant_id, "user_id": body.user_id,
                              "session_id": body.session_id, "tags": body.tags}
    attributes: dict[str, Any] = {}
    top_attributes = extra.pop("attributes", {})
    if not isinstance(top_attributes, dict):
        raise BadRequest("invalid event: attributes must be a JSON object", code="invalid_event",
                         details={"field": "attributes"})
    attributes.update(top_attributes)
    for key, value in [*extra.items(), *body.metadata.items()]:
        (fields if key in PROMOTED and value is not None else attributes)[key] = value
    if fields.get("status") is None:
        failed = fields.get("error_type") or (isinstance(fields.get("status_code"), int) and fields["status_code"] >= 400)
        fields["status"] = "error" if failed else "ok"
    fields["attributes"] = attributes
    try:
        event = _event.decode(msgspec.json.encode({k: v for k, v in fields.items() if v is not None}))
    except msgspec.ValidationError as exc:
        text = str(exc).replace("`$.", "`metadata.")
        raise BadRequest(f"invalid event: {text}", code="invalid_event") from None
    event.timestamp = body.timestamp
    return event


def from_gateway(metric: MetricEvent) -> Event:
    meta = dict(metric.metadata)
    tenant = meta.pop("tenant_id", None) or None
    user = meta.pop("user_id", None) or None
    attributes = {"tool_name": metric.tool_name, "component_name": metric.component_name,
                  "success": metric.success, **meta}
    return Event(event_type="tool_invocation", tenant_id=tenant, user_id=user, timestamp=metric.timestamp,
                 source="mcp-gateway", method=metric.tool_name, tool=metric.tool_name, target=metric.component_name,
                 protocol="mcp",
                 status="ok" if metric.success else "error", duration_ms=max(0.0, metric.duration_ms),
                 request_size=metric.request_size, attributes=msgspec.Raw(msgspec.json.encode(attributes)))


def tea_view(event: Event) -> TeaEventView:
    metadata: dict[str, Any] = {}
    for name in PROMOTED:
        value = getattr(event, name)
        if value is not None:
            metadata[name] = int(value) if isinstance(value, float) and value.is_integer() else value
    attributes = _any.decode(event.attributes)
    if isinstance(attributes, dict):
        metadata.update(attributes)
    return TeaEventView(event.event_id, format_us(event.timestamp), event.event_type,  # type: ignore[arg-type]
                        event.tenant_id, event.user_id, event.session_id, metadata, list(event.tags))  # type: ignore[arg-type]


def routes(settings: Settings, ingestor: Ingestor, readers: Readers) -> list[Route]:
    async def post_event(request: Request) -> Response:
        body = await request.body(settings.max_body_bytes)
        check_utf8(body)
        keys = decode_json(_probe, body)
        if "event" in keys and "event_type" not in keys:
            return await _gateway_event(request, body)
        try:
            readme = decode_readme(body)
            extra = {k: _any.decode(v) for k, v in keys.items() if k not in TeaEventIn.__struct_fields__}
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise BadRequest(f"invalid event: {exc}", code="invalid_event") from None
        outcome = await ingestor.submit(Decoded([from_readme(readme, extra)], None, [], 1), "tea",
                                        request.state.get("principal"), request.header("dnt") == "1")
        if outcome.do_not_track:
            return empty_response(204)
        if not outcome.accepted:
            error = outcome.errors[0]
            raise BadRequest(error.message, code=error.error, details={"field": error.field})
        event = outcome.accepted[0]
        return Response(encode_json(TeaAccepted(event.event_id, "accepted", format_us(event.timestamp))),  # type: ignore[arg-type]
                        200, JSON)

    async def _gateway_event(request: Request, body: bytes) -> Response:
        try:
            metric = decode(_gateway, body).event
        except (msgspec.DecodeError, RecursionError) as exc:
            return tool_reply(f"Invalid request body: {exc}", 400, True)
        try:
            outcome = await ingestor.submit(Decoded([from_gateway(metric)], None, [], 1), "ftl_gateway",
                                            request.state.get("principal"), request.header("dnt") == "1")
        except ClientError as exc:
            return tool_reply(exc.message, exc.status, True, exc.headers)
        if outcome.do_not_track:
            return empty_response(204)
        if not outcome.accepted:
            return tool_reply(f"Invalid request body: {outcome.errors[0].message}", 400, True)
        return tool_reply("Event recorded")

    async def list_events(request: Request, p: SeedEventsParams) -> Response:
        spec = QuerySpec(event_filter(p), p.limit, decode_cursor(p.cursor))
        result = await readers.of(request).query_events(spec)
        page = TeaEventsPage([tea_view(e) for e in result.events], result.total_count or 0, result.has_more)
        return Response(encode_json(page), 200, JSON)

    tools_list = encode_json([{"name": "events", "description": "Receive metric event from gateway",
                               "inputSchema": msgspec.json.schema(GatewayBody)}])

    async def list_tools(request: Request) -> Response:
        return Response(tools_list, 200, JSON)

    return [
        Route("POST", "/events", post_event,
              "TEA compatibility: record one event (README shape) or an FTL gateway MetricEvent",
              tags=("tea-compat",),
              request_body={"application/json": TeaEventIn | GatewayBody},
              responses={200: ("Accepted: {event_id,status,timestamp} for the README shape, the MCP tool reply "
                               "for the gateway shape", {"application/json": TeaAccepted | ToolReply}),
                         204: ("DNT: 1 — validated, nothing stored", {}),
                         # the gateway shape's refusals are MCP tool replies with isError, as the seed's
                         **{status: (text, {"application/json": ToolReply}) for status, text in (
                             (400, "Refused (the gateway shape: an MCP tool reply with isError)"),
                             (429, "Rate limit or quota exceeded"), (503, "Durable buffer full"))}},
              scope=WRITE),
        Route("GET", "/events", list_events, "TEA compatibility: read events in the seed's shape",
              tags=("tea-compat",), query=SeedEventsParams,
              responses={200: ("Events", {"application/json": TeaEventsPage})}),
        Route("GET", "/", list_tools, "FTL tool component: the tools this component serves",
              tags=("tea-compat",), responses={200: ("Tool metadata", {"application/json": list[dict[str, Any]]})},
              scope=None),
    ]
