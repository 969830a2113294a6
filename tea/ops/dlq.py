"""The dead-letter queue: ``GET /v1/dlq`` lists, ``POST /v1/dlq/{id}/replay`` runs a batch again."""
from __future__ import annotations

from typing import Annotated

import msgspec

from tea.auth.principal import ADMIN
from tea.http import Request, Response, Route
from tea.http.params import Params, text, whole
from tea.http.response import JSON, encode_json
from tea.http.schemas import error_responses
from tea.pipeline.process import ProcessorRunner
from tea.query.readers import Readers
from tea.timeutil import format_us


class DeadLetterView(msgspec.Struct):
    id: str
    at: str
    stage: str
    error: str
    attempts: int
    event_count: int
    replayed_at: str | None


class DeadLetterPage(msgspec.Struct):
    entries: list[DeadLetterView]


class ReplayResult(msgspec.Struct):
    id: str
    stage: str
    events: int
    replayed: bool


class ListParams(Params):
    limit: whole("1 to 10000 (default 100)", 1, 10000) = 100  # type: ignore[valid-type]
    include_replayed: Annotated[bool, msgspec.Meta(description="true to list all")] = False


class EntryRef(Params):
    PATH = frozenset({"entry_id"})
    entry_id: text("the entry")  # type: ignore[valid-type]


def routes(readers: Readers, processors: ProcessorRunner) -> list[Route]:
    async def list_entries(request: Request, p: ListParams) -> Response:
        # dead letters hold events of every tenant: the reader answers admins only, and audits the read
        entries = await readers.of(request).list_dead_letters(limit=p.limit, include_replayed=p.include_replayed)
        views = [DeadLetterView(d.id, format_us(d.at), d.stage, d.error, d.attempts, d.event_count,
                                format_us(d.replayed_at) if d.replayed_at else None) for d in entries]
        return Response(encode_json(DeadLetterPage(views)), 200, JSON)

    async def replay(request: Request, p: EntryRef) -> Response:
        result = await processors.replay(p.entry_id)
        return Response(encode_json(ReplayResult(**result)), 200 if result["replayed"] else 502, JSON)

    return [
        Route("GET", "/v1/dlq", list_entries, "Batches processors gave up on", tags=("admin",), query=ListParams,
              responses={200: ("Entries", {"application/json": DeadLetterPage}), **error_responses(400, 401, 403)},
              scope=ADMIN),
        Route("POST", "/v1/dlq/{entry_id}/replay", replay, "Run a dead letter's batch through its processor again",
              tags=("admin",), query=EntryRef,
              responses={200: ("Replayed", {"application/json": ReplayResult}),
                         502: ("The processor failed again; the entry stays", {"application/json": ReplayResult}),
                         **error_responses(400, 401, 403, 404)}, scope=ADMIN),
    ]
