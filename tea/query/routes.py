"""``GET /v1/events`` and ``GET /v1/events/{event_id}``."""
from __future__ import annotations

from typing import TYPE_CHECKING

from tea.errors import NotFound
from tea.http import Param, Request, Response, Route
from tea.http.response import JSON, encode_json
from tea.http.schemas import EventsPage, EventView, error_responses
from tea.query.spec import (FILTER_FIELDS, FILTER_PARAMS, MAX_LIMIT, PAGE_PARAMS, check_params, cursor_param,
                            encode_cursor, event_filter, int_param, text_param)
from tea.timeutil import format_us
from tea.types import Event, EventFilter, QuerySpec

if TYPE_CHECKING:
    from tea.app import TeaApp

_LIST_PARAMS = {*FILTER_FIELDS, "start_time", "end_time", "limit", "cursor"}


def view(event: Event) -> EventView:
    return EventView(
        event.event_id, event.tenant_id, format_us(event.timestamp), format_us(event.received_at),  # type: ignore[arg-type]
        event.event_type, event.source, event.source_protocol, event.user_id, event.session_id,
        event.organization, event.method, event.target, event.protocol, event.status, event.status_code,
        event.duration_ms, event.request_size, event.response_size, event.tokens_used, event.cost,
        event.error_type, event.error_message, event.trace_id, event.span_id, event.parent_span_id,
        event.correlation_id, list(event.tags), event.attributes, event.tool, event.model, event.input_tokens,
        event.output_tokens)


def routes(app: "TeaApp") -> list[Route]:
    async def list_events(request: Request) -> Response:
        check_params(request, _LIST_PARAMS)
        spec = QuerySpec(event_filter(request), int_param(request, "limit", 100, 1, MAX_LIMIT),
                         cursor_param(request))
        result = await app.reader(request).query_events(spec)
        page = EventsPage([view(e) for e in result.events], result.total_count or 0, result.has_more,
                          encode_cursor(result.next_cursor))
        return Response(encode_json(page), 200, JSON)

    async def get_event(request: Request) -> Response:
        check_params(request, {"tenant_id"})
        event_id = request.path_params["event_id"]
        tenant = text_param(request, "tenant_id")
        spec = QuerySpec(EventFilter(tenant_ids=(tenant,) if tenant else None, event_id=event_id), limit=1,
                         with_total=False)
        result = await app.reader(request).query_events(spec)
        if not result.events:
            raise NotFound(f"no event with event_id {event_id!r}", code="event_not_found",
                           details={"event_id": event_id})
        return Response(encode_json(view(result.events[0])), 200, JSON)

    return [
        Route("GET", "/v1/events", list_events,
              "Read events, newest first, with filters and cursor pagination", tags=("events",),
              params=FILTER_PARAMS + PAGE_PARAMS,
              responses={200: ("A page of events", {"application/json": EventsPage}), **error_responses(400)}),
        Route("GET", "/v1/events/{event_id}", get_event, "Read one event by its id", tags=("events",),
              params=(Param("event_id", "the event's id", location="path", required=True),
                      Param("tenant_id", "the event's tenant, when ids repeat across tenants")),
              responses={200: ("The event", {"application/json": EventView}), **error_responses(400, 404)}),
    ]
