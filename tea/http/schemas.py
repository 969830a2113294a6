"""Shapes shared by many routes (for responses and the OpenAPI document)."""
from __future__ import annotations

from typing import Annotated, Any

import msgspec

from tea.types import ItemError


class ErrorBody(msgspec.Struct):
    """The one error shape: a stable code, a sentence for humans, details (``{}`` when there are none)."""

    error: str
    message: str
    details: dict[str, Any] = {}


class IngestResponse(msgspec.Struct, omit_defaults=True):
    """200 when every event was accepted, 207 when some were refused (listed in ``errors``)."""

    accepted: int
    rejected: int
    event_ids: list[str]
    errors: list[ItemError] = []


class EventView(msgspec.Struct):
    """A stored event as the API returns it; times are RFC 3339 UTC."""

    event_id: str
    tenant_id: str
    timestamp: str
    received_at: str
    event_type: str
    source: str | None
    source_protocol: str | None
    user_id: str | None
    session_id: str | None
    organization: str | None
    method: str | None
    target: str | None
    protocol: str | None
    status: str | None
    status_code: int | None
    duration_ms: float | None
    request_size: int | None
    response_size: int | None
    tokens_used: int | None
    cost: float | None
    error_type: str | None
    error_message: str | None
    trace_id: str | None
    span_id: str | None
    parent_span_id: str | None
    correlation_id: str | None
    tags: list[str]
    attributes: msgspec.Raw
    tool: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


class EventsPage(msgspec.Struct):
    events: list[EventView]
    total_count: int
    has_more: bool
    next_cursor: str | None


def error_responses(*statuses: int) -> dict[int, tuple[str, dict[str, Any]]]:
    text = {400: "Bad request (the body names the parameter or field)", 401: "Missing or invalid credentials",
            403: "The credential lacks the scope, or names another tenant", 404: "Not found",
            409: "Conflict with the resource's state", 429: "Rate limit or quota exceeded; retry after Retry-After seconds",
            413: "Body or batch too large", 415: "Unsupported Content-Type or Content-Encoding",
            503: "Durable buffer full or not ready; retry after Retry-After seconds"}
    return {s: (text.get(s, "Error"), {"application/json": ErrorBody}) for s in statuses}


def batch_of(item: Any, max_items: int) -> Any:
    """A request body's batch of ``item`` for the OpenAPI document: 1 to ``max_items`` of them."""
    return Annotated[list[item], msgspec.Meta(min_length=1, max_length=max_items)]
