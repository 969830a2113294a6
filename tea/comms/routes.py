"""``/v1/communications``: communication records (MCP / A2A / n8n telemetry) and the seed's views of them."""
from __future__ import annotations

from typing import Any, Callable

import msgspec

from tea.auth.principal import READ, WRITE
from tea.comms import views
from tea.comms.records import EVENT_TYPE, Communication, decode_items, split_body, to_event, to_row
from tea.errors import BadRequest, TooLarge, UnsupportedMediaType
from tea.http import Request, Response, Route
from tea.http.body import check_utf8
from tea.http.params import text, whole
from tea.http.response import JSON, encode_json
from tea.http.schemas import IngestResponse, batch_of, error_responses
from tea.pipeline.ingest import Ingestor, Outcome
from tea.query.readers import Readers
from tea.query.scope import tenant_filter
from tea.query.spec import CursorText, Tenant, Window, decode_cursor, encode_cursor, event_filter
from tea.receive.native import outcome_response
from tea.settings import Settings
from tea.types import Decoded, ItemError, QuerySpec

VIEW_NAMES = {"health": "system_health_overview", "patterns": "communication_patterns",
              "top-pairs": "top_communication_pairs", "realtime": "communication_metrics_realtime",
              "matrix": "communication_matrix"}
# GET /v1/communications filter → canonical column
COMM_FILTERS = {"protocol": "protocol", "source_id": "source", "target_id": "target", "operation": "method",
                "status": "status", "correlation_id": "correlation_id"}
_ok = {"success": "ok"}


def _eq(name: str) -> Any:
    return text(f"only rows whose {name} equals this")


class CommunicationsParams(Window):
    protocol: _eq("protocol") | None = None  # type: ignore[valid-type]
    source_id: _eq("source_id") | None = None  # type: ignore[valid-type]
    target_id: _eq("target_id") | None = None  # type: ignore[valid-type]
    operation: _eq("operation") | None = None  # type: ignore[valid-type]
    status: _eq("status") | None = None  # type: ignore[valid-type]
    correlation_id: _eq("correlation_id") | None = None  # type: ignore[valid-type]
    limit: whole("page size, 1 to 10000 (default 100)", 1, 10000) = 100  # type: ignore[valid-type]
    cursor: CursorText | None = None  # type: ignore[valid-type]


async def ingest_communications(ingestor: Ingestor, max_batch_events: int, request: Request, body: bytes,
                                source_protocol: str = "elf") -> tuple[Outcome, dict[int, Communication]]:
    """Decode one communication or an array, per-item errors with index and field, through the one ingestion
    path. Returns the ingest outcome and the decoded items (by request index)."""
    if not body.strip():
        raise BadRequest("request body is empty", code="empty_body")
    check_utf8(body)
    try:
        items = split_body(body, max_batch_events)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BadRequest(f"invalid JSON: {exc}", code="invalid_json") from None
    if not items:
        raise BadRequest("the batch holds no communications", code="empty_batch")
    if len(items) > max_batch_events:
        raise TooLarge(f"batch holds more than {max_batch_events} communications (max_batch_events)",
                       code="too_many_events", details={"max_batch_events": max_batch_events})
    good, indexes, problems = decode_items(items)
    errors = [ItemError(p["index"], p["error"], p["message"], None, p.get("field")) for p in problems]
    decoded = Decoded([to_event(c) for c in good], indexes, errors, len(items))
    outcome = await ingestor.submit(decoded, source_protocol, request.state.get("principal"),
                                    request.header("dnt") == "1")
    return outcome, dict(zip(indexes, good))


def routes(settings: Settings, clock: Callable[[], int], readers: Readers, ingestor: Ingestor) -> list[Route]:
    async def post_communications(request: Request) -> Response:
        if request.media_type != "application/json" and not request.media_type.endswith("+json"):
            raise UnsupportedMediaType(f"unsupported Content-Type {request.media_type!r}; send application/json")
        outcome, _ = await ingest_communications(ingestor, settings.max_batch_events, request,
                                                 await request.body(settings.max_body_bytes))
        return outcome_response(outcome, "communications")

    async def list_communications(request: Request, p: CommunicationsParams) -> Response:
        fields: dict[str, Any] = {}
        for name, column in COMM_FILTERS.items():
            value = getattr(p, name)
            if value is not None:
                fields[column] = _ok.get(value, value) if name == "status" else value
        f = event_filter(p, event_type=EVENT_TYPE, **fields)
        result = await readers.of(request).query_events(QuerySpec(f, p.limit, decode_cursor(p.cursor)))
        body = {"communications": [to_row(e, with_tenant=True) for e in result.events],
                "total_count": result.total_count, "has_more": result.has_more,
                "next_cursor": encode_cursor(result.next_cursor)}
        return Response(encode_json(body), 200, JSON)

    def view_handler(name: str):  # type: ignore[no-untyped-def]
        compute = views.VIEWS[name]

        async def handler(request: Request, p: Tenant | Window) -> Response:
            f = event_filter(p) if isinstance(p, Window) else tenant_filter(p.tenant_id)
            rows = await compute(readers.of(request), f, clock())
            return Response(encode_json({"view": VIEW_NAMES[name], "rows": rows}), 200, JSON)
        return handler

    rows_ok = {200: ("Rows", {"application/json": {"type": "object"}})}
    out = [
        Route("POST", "/v1/communications", post_communications,
              "Record MCP / A2A / n8n communications: one communication_telemetry row or an array",
              tags=("communications",), request_body={"application/json": Communication | batch_of(Communication, settings.max_batch_events)},
              responses={200: ("All accepted", {"application/json": IngestResponse}),
                         207: ("Some accepted; the others in `errors`", {"application/json": IngestResponse}),
                         204: ("DNT: 1 — validated, nothing stored", {}),
                         **error_responses(400, 401, 403, 413, 415, 429, 503)}, scope=WRITE),
        Route("GET", "/v1/communications", list_communications, "Communication rows, newest first",
              tags=("communications",), query=CommunicationsParams,
              responses={**rows_ok, **error_responses(400, 401, 403)}, scope=READ),
    ]
    for name, view in VIEW_NAMES.items():
        out.append(Route("GET", f"/v1/communications/{name}", view_handler(name), f"The seed's {view} view",
                         tags=("communications",), query=Window if name == "matrix" else Tenant,
                         responses={**rows_ok, **error_responses(400, 401, 403)}, scope=READ))
    return out
