"""Telemetron's API (CONTRACTS.md 1.3): ``POST /ingest``, ``GET /stats``, ``GET /stats/{source_id}``.

Bodies and content types as upstream (axum): 202 ``Success`` (text), validator refusals 400
``{"error": "Disallowed source_id: N"}``, JSON syntax 400 / wrong types 422 / no JSON content type 415
(text). Telemetron clients send no credential: with ``telemetron.tenant`` set they write and read
that tenant; otherwise these routes need a credential like any other. Stats come from storage, so
they survive restarts, and count only the events received here (``source_protocol=telemetron``).
"""
from __future__ import annotations

import time
from typing import Annotated, Any, Awaitable, Callable

import msgspec

from tea.auth.gate import Gate
from tea.auth.principal import READ, WRITE, Principal
from tea.errors import ClientError, StorageUnavailable
from tea.http import Param, Request, Response, Route, text_response
from tea.http.body import decode
from tea.http.response import JSON, encode_json
from tea.pipeline.ingest import Ingestor
from tea.query.readers import Readers
from tea.settings import Settings
from tea.telemetry import Telemetry
from tea.timeutil import format_us
from tea.types import Agg, AggregateSpec, Decoded, Event, EventFilter, WireDateTime


U64_MAX = 2**64 - 1


class TelemetronEvent(msgspec.Struct, rename="camel"):
    source_id: Annotated[int, msgspec.Meta(ge=0, extra_json_schema={"maximum": U64_MAX})]  # u64 upstream
    type: Annotated[str, msgspec.Meta(min_length=1)]
    timestamp: WireDateTime
    data: Any = None


PROTOCOL = "telemetron"  # the events' source_protocol
TEXT = {"text/plain": {"type": "string"}}
REFUSED = {"application/json": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}}
STORAGE_DOWN = ("Storage unavailable ({error}); retry after Retry-After seconds", REFUSED)  # (the reads' own shape)
_decoder = msgspec.json.Decoder(TelemetronEvent)
_syntax = msgspec.json.Decoder()


class TelemetronStats(msgspec.Struct):
    sources_count: int
    events_count: int


class SourceStats(msgspec.Struct):
    source_id: int
    total_events: int
    first_event: str
    last_event: str
    event_types: dict[str, int]


def error_json(status: int, message: str) -> Response:
    return Response(encode_json({"error": message}), status, JSON)


def to_event(e: TelemetronEvent) -> Event:
    attributes = e.data if isinstance(e.data, dict) else ({} if e.data is None else {"data": e.data})
    return Event(event_type=e.type[:256], timestamp=e.timestamp, source=str(e.source_id),
                 attributes=msgspec.Raw(msgspec.json.encode(attributes)))


def routes(settings: Settings, telemetry: Telemetry, gate: Gate, ingestor: Ingestor, readers: Readers) -> list[Route]:
    open_tenant = settings.telemetron.tenant
    t = telemetry

    def counted(endpoint: str, handler: Callable[[Request], Awaitable[Response]]):  # type: ignore[no-untyped-def]
        async def wrapped(request: Request) -> Response:
            started = time.perf_counter()
            t.child(t.telemetron_http_requests, endpoint).inc()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except StorageUnavailable as exc:  # Telemetron's error shape, Retry-After kept
                status = exc.status
                return Response(encode_json({"error": exc.message}), exc.status, JSON, exc.headers)
            except ClientError as exc:
                status = exc.status
                raise
            finally:
                t.child(t.telemetron_http_duration, endpoint, f"{status // 100}xx").observe(
                    time.perf_counter() - started)
        return wrapped

    async def principal(request: Request, scope: str) -> Principal:
        has_credential = request.header("authorization") or request.header("x-api-key")
        if open_tenant and not has_credential:
            request.state["principal"] = Principal(tenant_id=open_tenant, scopes=frozenset({READ, WRITE}),
                                                   method="telemetron_open")
            await gate.settle(request, scope)
        else:
            await gate.admit(request, scope)
        return request.state["principal"]

    async def ingest(request: Request) -> Response:
        who = await principal(request, WRITE)
        if request.media_type != "application/json":
            return text_response("Expected request with `Content-Type: application/json`", 415)
        body = await request.body(settings.max_body_bytes)
        try:
            event = decode(_decoder, body)
        except msgspec.ValidationError as exc:
            try:
                _syntax.decode(body)
            except (msgspec.DecodeError, RecursionError):
                return text_response(f"Failed to parse the request body as JSON: {exc}", 400)
            return text_response(f"Failed to deserialize the JSON body into the target type: {exc}", 422)
        except (msgspec.DecodeError, RecursionError) as exc:
            return text_response(f"Failed to parse the request body as JSON: {exc}", 400)
        if event.source_id > U64_MAX:  # (msgspec reads any integer; axum's u64 stops here)
            return text_response("Failed to deserialize the JSON body into the target type: sourceId: invalid "
                                 f"value: integer `{event.source_id}`, expected u64", 422)
        outcome = await ingestor.submit(Decoded([to_event(event)], None, [], 1), PROTOCOL, who)
        if not outcome.accepted:
            return error_json(400, outcome.errors[0].message)
        return text_response("Success", 202)

    async def telemetron_rows(request: Request, spec: AggregateSpec) -> list[tuple[Any, ...]]:
        """Rows of ``spec`` grouped by ``source_protocol`` first: only events that came in through
        ``POST /ingest`` count, as in Telemetron (its stats saw nothing else). Returned without that column."""
        grouped = AggregateSpec(spec.filter, spec.aggs, None, ("source_protocol", *spec.group_by))
        rows = await readers.of(request).aggregate(grouped)
        return [(r[0], *r[2:]) for r in rows if r[1] == PROTOCOL]

    async def stats(request: Request) -> Response:
        await principal(request, READ)
        rows = await telemetron_rows(request, AggregateSpec(EventFilter(), (Agg("count"),), None, ("source",)))
        sources = [r for r in rows if r[1] is not None]
        return Response(encode_json({"sources_count": len(sources), "events_count": sum(r[2] for r in sources)}),
                        200, JSON)

    async def source_stats(request: Request) -> Response:
        await principal(request, READ)
        raw = request.path_params["source_id"]
        if not (raw.isascii() and raw.isdigit() and int(raw) <= U64_MAX):  # (axum's Path<u64>; NUL included)
            return text_response(f"Invalid URL: Cannot parse `{raw}` to a `u64`", 400)
        spec = AggregateSpec(EventFilter(source=raw), (Agg("count"), Agg("min", "timestamp"), Agg("max", "timestamp")),
                             None, ("event_type",))
        rows = await telemetron_rows(request, spec)
        if not rows:
            return error_json(404, f"Source id {raw} not found")
        body = {"source_id": int(raw), "total_events": sum(r[2] for r in rows),
                "first_event": format_us(min(r[3] for r in rows)), "last_event": format_us(max(r[4] for r in rows)),
                "event_types": {r[1]: r[2] for r in sorted(rows, key=lambda r: r[1])}}
        return Response(encode_json(body), 200, JSON)

    # (these routes admit the caller themselves: without a credential they may write and read telemetron.tenant)
    return [
        Route("POST", "/ingest", counted("/ingest", ingest), "Telemetron: record one event", tags=("telemetron",),
              request_body={"application/json": TelemetronEvent},
              responses={202: ("Success (text)", TEXT),
                         400: ("Refused by a validator ({error}), or not JSON (axum's text)", {**REFUSED, **TEXT}),
                         415: ("Not application/json (axum's text)", TEXT),
                         422: ("JSON of the wrong types (axum's text)", TEXT)},
              scope=WRITE, admits_itself=True),
        Route("GET", "/stats", counted("/stats", stats), "Telemetron: sources and events", tags=("telemetron",),
              responses={200: ("Counts", {"application/json": TelemetronStats}), 503: STORAGE_DOWN}, scope=READ,
              admits_itself=True),
        Route("GET", "/stats/{source_id}", counted("/stats/{source_id}", source_stats), "Telemetron: one source",
              tags=("telemetron",),
              params=(Param("source_id", "numeric source id", {"type": "integer", "minimum": 0, "maximum": U64_MAX},
                            location="path", required=True),),
              responses={200: ("Source stats", {"application/json": SourceStats}),
                         400: ("Not a u64 (axum's text)", TEXT),
                         404: ("Unknown source", REFUSED), 503: STORAGE_DOWN}, scope=READ, admits_itself=True),
    ]
