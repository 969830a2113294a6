"""``GET /v1/events`` and ``GET /v1/events/{event_id}``."""
from __future__ import annotations

from tea.errors import NotFound
from tea.http import Request, Response, Route
from tea.http.params import Params, text
from tea.http.response import JSON, encode_json
from tea.http.schemas import EventsPage, EventView, error_responses
from tea.query.readers import Readers
from tea.query.scope import tenant_filter
from tea.query.spec import CursorText, Filters, Limit, TenantId, decode_cursor, encode_cursor, event_filter
from tea.timeutil import format_us
from tea.types import Event, QuerySpec

class ListEvents(Filters):
    limit: Limit = 100  # type: ignore[valid-type]
    cursor: CursorText | None = None  # type: ignore[valid-type]

class OneEvent(Params):
    PATH = frozenset({"event_id"})
    event_id: text("the event's id", 256)  # type: ignore[valid-type]
    tenant_id: TenantId | None = None  # type: ignore[valid-type]

def view(event: Event) -> EventView:
    return EventView(
        event.event_id, event.tenant_id, format_us(event.timestamp), format_us(event.received_at),  # type: ignore[arg-type]
        event.event_type, event.source, event.source_protocol, event.user_id, event.session_id,
        event.organization, event.method, event.target, event.protocol, event.status, event.status_code,
        event.duration_ms, event.request_size, event.response_size, event.tokens_used, event.cost,
        event.error_type, event.error_message, event.trace_id, event.span_id, event.parent_span_id,
        event.correlation_id, list(event.tags), event.attributes, event.tool, event.model, event.input_tokens,
        event.output_tokens)

def routes(readers: Readers) -> list[Route]:
    async def list_events(request: Request, p: ListEvents) -> Response:
        spec = QuerySpec(event_filter(p), p.limit, decode_cursor(p.cursor))
        result = await readers.of(request).query_events(spec)
        page = EventsPage([view(e) for e in result.events], result.total_count or 0, result.has_more,
                          encode_cursor(result.next_cursor))
        return Response(encode_json(page), 200, JSON)

    async def get_event(request: Request, p: OneEvent) -> Response:
        spec = QuerySpec(tenant_filter(p.tenant_id, event_id=p.event_id), limit=1, with_total=False)
        result = await readers.of(request).query_events(spec)
        if not result.events:
            raise NotFound(f"no event with event_id {p.event_id!r}", code="event_not_found",
                           details={"event_id": p.event_id})
        return Response(encode_json(view(result.events[0])), 200, JSON)

    return [
        Route("GET", "/v1/events", list_events,
              "Read events, newest first, with filters and cursor pagination", tags=("events",), query=ListEvents,
              responses={200: ("A page of events", {"application/json": EventsPage}), **error_responses(400)}),
        Route("GET", "/v1/events/{event_id}", get_event, "Read one event by its id", tags=("events",),
              query=OneEvent,
              responses={200: ("The event", {"application/json": EventView}), **error_responses(400, 404)}),
    ]
