"""The dead-letter queue: ``GET /v1/dlq`` lists, ``POST /v1/dlq/{id}/replay`` runs a batch again."""
from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from tea.auth.principal import ADMIN
from tea.http import Param, Request, Response, Route
from tea.http.response import JSON, encode_json
from tea.http.schemas import error_responses
from tea.query.spec import check_params, int_param
from tea.timeutil import format_us

if TYPE_CHECKING:
    from tea.app import TeaApp


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


def routes(app: "TeaApp") -> list[Route]:
    async def list_entries(request: Request) -> Response:
        check_params(request, {"limit", "include_replayed"})
        app.audit_admin_read(request)  # dead letters hold events of every tenant
        entries = await app.storage.list_dead_letters(limit=int_param(request, "limit", 100, 1, 10000),
                                                      include_replayed=request.param("include_replayed") == "true")
        views = [DeadLetterView(d.id, format_us(d.at), d.stage, d.error, d.attempts, d.event_count,
                                format_us(d.replayed_at) if d.replayed_at else None) for d in entries]
        return Response(encode_json(DeadLetterPage(views)), 200, JSON)

    async def replay(request: Request) -> Response:
        result = await app.processors.replay(request.path_params["entry_id"])
        return Response(encode_json(ReplayResult(**result)), 200 if result["replayed"] else 502, JSON)

    return [
        Route("GET", "/v1/dlq", list_entries, "Batches processors gave up on", tags=("admin",),
              params=(Param("limit", "1 to 10000 (default 100)"), Param("include_replayed", "true to list all")),
              responses={200: ("Entries", {"application/json": DeadLetterPage}), **error_responses(401, 403)},
              scope=ADMIN),
        Route("POST", "/v1/dlq/{entry_id}/replay", replay, "Run a dead letter's batch through its processor again",
              tags=("admin",), params=(Param("entry_id", "the entry", location="path", required=True),),
              responses={200: ("Replayed", {"application/json": ReplayResult}),
                         502: ("The processor failed again; the entry stays", {"application/json": ReplayResult}),
                         **error_responses(401, 403, 404)}, scope=ADMIN),
    ]
