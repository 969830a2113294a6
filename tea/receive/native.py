"""Native ingestion: ``POST /v1/events`` (object, array, {"events": [...]}, or NDJSON)."""
from __future__ import annotations

from typing import Annotated

import msgspec

from tea.errors import BadRequest, UnsupportedMediaType
from tea.http import Request, Response, Route
from tea.auth.principal import WRITE
from tea.http.response import JSON, empty_response, encode_json
from tea.http.schemas import IngestResponse, batch_of, error_responses
from tea.pipeline.ingest import Ingestor, Outcome
from tea.receive.decode import JSON_TYPES, NDJSON_TYPES, decode_events, prepare
from tea.settings import Settings
from tea.types import Event


class EventBatch(msgspec.Struct, forbid_unknown_fields=True):
    """``{"events": [...]}``"""

    events: Annotated[list[Event], msgspec.Meta(min_length=1)]


def require_event_media_type(media_type: str) -> None:
    """415 before the body is read, when the Content-Type can never decode."""
    if media_type in JSON_TYPES or media_type in NDJSON_TYPES or media_type.endswith("+json"):
        return
    raise UnsupportedMediaType(
        f"unsupported Content-Type {media_type!r}; send application/json or application/x-ndjson")


def outcome_response(outcome: Outcome, noun: str = "events") -> Response:
    """The native answer to an ingest: 204 after DNT, 400 when nothing was accepted, else 200 (or 207 when
    some items were refused, listed with their index)."""
    if outcome.do_not_track:
        return empty_response(204)
    if not outcome.accepted:
        raise BadRequest(f"all {outcome.total} {noun} were rejected", code=f"invalid_{noun}",
                         details={"accepted": 0, "rejected": len(outcome.errors), "errors": outcome.errors})
    result = IngestResponse(len(outcome.accepted), len(outcome.errors),
                            [e.event_id for e in outcome.accepted], outcome.errors)  # type: ignore[misc]
    return Response(encode_json(result), 207 if outcome.errors else 200, JSON)


def routes(settings: Settings, ingestor: Ingestor) -> list[Route]:
    prepare(settings.max_batch_events)

    async def post_events(request: Request) -> Response:
        media_type = request.media_type
        require_event_media_type(media_type)
        body = await request.body(settings.max_body_bytes)
        decoded = decode_events(body, media_type, settings.max_batch_events)
        outcome = await ingestor.submit(decoded, "native", request.state.get("principal"),
                                        request.header("dnt") == "1")
        return outcome_response(outcome)

    return [Route(
        "POST", "/v1/events", post_events,
        "Record events: one object, an array, {\"events\": [...]}, or NDJSON; gzip accepted",
        tags=("events",),
        request_body={"application/json": Event | batch_of(Event, settings.max_batch_events) | EventBatch,
                      "application/x-ndjson": Event},
        responses={200: ("All events accepted", {"application/json": IngestResponse}),
                   207: ("Some events accepted; the others are listed in `errors`",
                         {"application/json": IngestResponse}),
                   204: ("DNT: 1 — validated, nothing stored", {}),
                   **error_responses(400, 401, 403, 413, 415, 429, 503)}, scope=WRITE)]
