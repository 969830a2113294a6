"""telemetry-kit's signed batch ingestion, ``POST /v1/ingest/{org_id}/{app_id}`` (CONTRACTS.md 1.2).

The checks run in upstream's order with its status codes and bodies: signature headers (401),
UTF-8 body (400), bearer token (401), HMAC (401), timestamp (400 / 403 outside ±600 s), nonce (409),
rate limit (429), token not bound to the path's org (or bound to another app) (403), JSON / empty /
> 1 000 events / ``X-Batch-Size`` mismatch (400), ``DNT: 1`` (204), then per-event checks
(``unsupported_schema``, ``invalid_schema``, ``duplicate``, and TEA's own refusals such as
``clock_skew``) answered 200 / 207 / 400.

Upstream's per-event ``database_error`` cannot happen here: TEA acknowledges once the accepted events
are in the durable buffer, one append for the whole request, and never calls storage on the request
path. When the buffer refuses (full, or shutting down) the whole request is answered 503 with
``Retry-After`` — a status the SDK retries — and nothing of it is acknowledged. Every 429 (the request
rate, and TEA's event rate and monthly quota) answers in upstream's shape.
"""
from __future__ import annotations

import re
import time
from http import HTTPStatus
from typing import Annotated, Any, Literal

import msgspec

from tea.auth import signing
from tea.auth.chain import AuthChain, credential_kind
from tea.auth.gate import Gate
from tea.auth.keys import same
from tea.auth.limits import Limiter
from tea.auth.principal import WRITE as EVENTS_WRITE
from tea.auth.tokens import TokenService
from tea.errors import BadRequest, ClientError, Conflict, Forbidden, RateLimited, Unauthorized, Unavailable
from tea.http import Param, Request, Response, Route
from tea.http.body import decode
from tea.http.response import JSON, empty_response, encode_json
from tea.pipeline.ingest import Ingestor
from tea.pipeline.recent import RecentIds
from tea.query.readers import Readers
from tea.query.scope import ScopedStorage
from tea.settings import Settings
from tea.telemetry import Telemetry
from tea.timeutil import datetime_to_us
from tea.types import Decoded, Event, WireDateTime

MAX_EVENTS = 1000
_USIZE = re.compile(r"\+?[0-9]+")
_RECENT = 100_000  # event ids acknowledged here lately (not yet in storage), per node


def checked(schema: dict[str, Any]) -> Any:
    """A text field upstream checks per event (``event_problem``), as the OpenAPI document describes it."""
    return Annotated[str, msgspec.Meta(extra_json_schema=schema)]


class Service(msgspec.Struct):
    name: checked({"minLength": 1})
    version: checked({"minLength": 1})
    language: str
    language_version: str | None = None


class Environment(msgspec.Struct):
    os: str
    os_version: str | None = None
    arch: str | None = None
    ci: bool | None = None
    shell: str | None = None


class EventBody(msgspec.Struct):
    type: str
    data: Any
    category: str | None = None


class Metadata(msgspec.Struct):
    sdk_version: str
    transmission_timestamp: str
    batch_size: int
    retry_count: int


class TkEvent(msgspec.Struct):
    schema_version: checked({"pattern": "^1\\."})
    event_id: str
    timestamp: WireDateTime
    service: Service
    user_id: checked({"pattern": "^client_"})
    environment: Environment
    event: EventBody
    metadata: Metadata
    session_id: str | None = None


class TkBatch(msgspec.Struct):
    events: Annotated[list[TkEvent], msgspec.Meta(extra_json_schema={"minItems": 1, "maxItems": MAX_EVENTS})]


class TkError(msgspec.Struct):
    event_id: str
    error: str
    message: str


class TkReply(msgspec.Struct):
    """What upstream answers a batch: success (200) or partial (207)."""

    status: Literal["success", "partial"]
    accepted: int
    rejected: int
    message: str | None = None
    errors: list[TkError] | None = None


class TkRefusal(msgspec.Struct):
    """Upstream's error shape (``ErrorResponse {error, message, details?, retry_after?}``)."""

    error: str
    message: str
    errors: list[TkError] | None = None
    retry_after: int | None = None


TK_OK = {"application/json": TkReply}
TK_ERROR = {"application/json": TkRefusal}


_batch = msgspec.json.Decoder(TkBatch)


def reply(status: int, message: str, error: str | None = None, headers: dict[str, str] | None = None) -> Response:
    body = {"error": error or HTTPStatus(status).phrase, "message": message}
    return Response(encode_json(body), status, JSON, headers)


def too_many(exc: RateLimited) -> Response:
    """Upstream's 429, whichever TEA limit refused: its body, ``X-RateLimit-Remaining: 0``, ``Retry-After``."""
    retry_after = exc.details["retry_after"]
    headers = {**(exc.headers or {}), "x-ratelimit-remaining": "0", "retry-after": str(retry_after)}
    body = {"error": "rate_limit_exceeded", "message": "Rate limit exceeded for this token", "retry_after": retry_after}
    return Response(encode_json(body), 429, JSON, headers)


def bound_to(principal: Any, org_id: str, app_id: str) -> bool:
    """Upstream binds every token to one org and app; a TEA token must name the path's org (and, when it
    names an app, the path's app). Tokens created without an org are refused here."""
    return principal.org_id == org_id and (principal.app_id is None or principal.app_id == app_id)


def declared_batch_size(header: str | None) -> int | None:
    """``X-Batch-Size`` as upstream reads it (Rust ``parse::<usize>().ok()``): ignored unless a number."""
    if header is None or not _USIZE.fullmatch(header):
        return None
    value = int(header)
    return value if value < 2 ** 64 else None


def event_problem(e: TkEvent) -> tuple[str, str] | None:
    """Upstream's per-event checks, in its order, with its messages."""
    if not e.schema_version.startswith("1."):
        return "unsupported_schema", f"Unsupported schema version: {e.schema_version}"
    if not e.service.name:
        return "invalid_schema", "Missing required field: service.name"
    if not e.service.version:
        return "invalid_schema", "Missing required field: service.version"
    if not e.user_id.startswith("client_"):
        return "invalid_schema", "User ID must start with 'client_'"
    return None


def to_event(e: TkEvent, org_id: str, app_id: str) -> Event:
    attributes = {"category": e.event.category, "data": e.event.data, "schema_version": e.schema_version,
                  "service": {"version": e.service.version, "language": e.service.language,
                              "language_version": e.service.language_version},
                  "environment": msgspec.to_builtins(e.environment), "metadata": msgspec.to_builtins(e.metadata),
                  "org_id": org_id, "app_id": app_id}
    return Event(event_type=e.event.type[:256] or "unknown", event_id=e.event_id, timestamp=e.timestamp,
                 source=e.service.name, user_id=e.user_id, session_id=e.session_id, organization=org_id,
                 attributes=msgspec.Raw(msgspec.json.encode(attributes)))


def routes(settings: Settings, tokens: TokenService, auth: AuthChain, gate: Gate, limiter: Limiter,
           telemetry: Telemetry, ingestor: Ingestor, readers: Readers) -> list[Route]:
    recent = RecentIds(_RECENT)

    async def ingest(request: Request) -> Response:
        headers = request.headers
        if auth.dev_mode:
            development = await _development(request)
            if development is not None:
                return development
        for name in ("X-Signature", "X-Timestamp", "X-Nonce"):
            if name.lower() not in headers and not (name == "X-Nonce" and settings.auth.two_part_signatures):
                return reply(401, f"Missing {name} header")
        body = await request.body(settings.max_body_bytes)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return reply(400, "Invalid UTF-8 in body")
        authorization = headers.get("authorization", "")
        if not authorization.startswith("Bearer "):
            return reply(401, "Missing or invalid Authorization header")
        request.state["auth_method"] = "hmac"

        def refused(error: type[ClientError], status: int, message: str) -> Response:
            gate.failed(request, error(message))  # audited (with the token id once known) and counted
            return reply(status, message)

        active = await tokens.lookup(authorization[7:].strip())
        if active is None:
            return refused(Unauthorized, 401, "Invalid token")
        request.state.update(auth_token_id=active.record.token_id, auth_tenant=active.record.tenant_id)
        timestamp, nonce = headers["x-timestamp"], headers.get("x-nonce")
        if not same(signing.sign(active.secret, timestamp, nonce, body), headers["x-signature"]):
            return refused(Unauthorized, 401, "Invalid HMAC signature")
        try:
            stamp = int(timestamp)
        except ValueError:
            return refused(BadRequest, 400, "Invalid timestamp format")
        if abs(time.time() - stamp) > settings.auth.signature_window_s:
            return refused(Forbidden, 403, "Timestamp outside acceptable window")
        try:
            if nonce is not None and not await auth.claim_nonce(nonce):
                return refused(Conflict, 409, "Duplicate nonce detected")
            telemetry.child(telemetry.auth, "hmac", "success").inc()
            principal = active.principal("hmac")
            limit_headers = await limiter.request(principal)
        except RateLimited as exc:
            return too_many(exc)
        except Unavailable as exc:
            return reply(503, exc.message, headers=exc.headers)
        request.state["limit_headers"] = limit_headers
        org_id, app_id = request.path_params["org_id"], request.path_params["app_id"]
        if not bound_to(principal, org_id, app_id):
            return reply(403, "Token does not match org_id/app_id")
        if not principal.can(EVENTS_WRITE):  # a read-only token signs no writes (TEA scopes; upstream has none)
            return reply(403, f"Token lacks the {EVENTS_WRITE} scope")
        return await _batch_body(request, body, principal, org_id, app_id)

    async def _development(request: Request) -> Response | None:
        """Development mode: a request whose token TEA does not know (or that has none) is stored as the
        development principal's, unsigned and unbound to an org — None when the token is TEA's own (then
        every check runs as usual)."""
        authorization = request.headers.get("authorization", "")
        token = authorization[7:].strip() if authorization.startswith("Bearer ") else ""
        if token and await tokens.lookup(token) is not None:
            return None
        principal = auth.development(credential_kind(request.headers), "no API token of this TEA")
        telemetry.child(telemetry.auth, principal.method, "success").inc()
        body = await request.body(settings.max_body_bytes)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return reply(400, "Invalid UTF-8 in body")
        org_id, app_id = request.path_params["org_id"], request.path_params["app_id"]
        return await _batch_body(request, body, principal, org_id, app_id)

    async def _batch_body(request: Request, body: bytes, principal: Any, org_id: str, app_id: str) -> Response:
        try:
            batch = decode(_batch, body)
        except (msgspec.DecodeError, RecursionError) as exc:
            return reply(400, f"Invalid JSON: {exc}")
        if not batch.events:
            return reply(400, "Batch must contain at least one event")
        if len(batch.events) > MAX_EVENTS:
            return reply(400, f"Batch size exceeds maximum of {MAX_EVENTS} events")
        declared = declared_batch_size(request.header("x-batch-size"))
        if declared is not None and declared != len(batch.events):
            return reply(400, "X-Batch-Size header does not match actual batch size")
        if request.header("dnt") == "1":
            telemetry.child(telemetry.do_not_track, "telemetry_kit").inc()
            return empty_response(204)
        request.state["principal"] = principal  # (its reader reads this token's tenant only)
        return await _store(readers.of(request), batch.events, principal, org_id, app_id)

    async def _store(reader: ScopedStorage, events: list[TkEvent], principal: Any, org_id: str,
                     app_id: str) -> Response:
        tenant = principal.tenant_id or settings.default_tenant  # (no tenant: the development principal)
        errors: list[TkError] = []
        duplicates = 0
        candidates: list[tuple[TkEvent, int]] = []  # (an event, its time in µs)
        for e in events:
            problem = event_problem(e)
            if problem is not None:
                errors.append(TkError(e.event_id, *problem))
            else:
                candidates.append((e, datetime_to_us(e.timestamp)))
        seen = await _already_stored(reader, tenant, candidates)
        fresh: list[tuple[TkEvent, tuple[str, int | None]]] = []  # (an event, its _key)
        for e, at in candidates:
            key = _key(e.event_id, at)
            if key in seen or (tenant, key) in recent:
                duplicates += 1
                if settings.telemetry_kit.duplicates == "reject":
                    errors.append(TkError(e.event_id, "duplicate",
                                          f"Event already ingested (duplicate event_id: {e.event_id})"))
                continue
            seen.add(key)
            fresh.append((e, key))
        if fresh:
            try:
                outcome = await ingestor.submit(
                    Decoded([to_event(e, org_id, app_id) for e, _ in fresh], None, [], len(fresh)), "telemetry_kit",
                    principal)
            except ClientError as exc:
                return _refused(exc)
            by_position = {err.index: err for err in outcome.errors}
            for position, (e, key) in enumerate(fresh):
                if position in by_position:
                    refusal = by_position[position]  # a TEA check (clock skew, tenant, a validator plugin)
                    errors.append(TkError(e.event_id, refusal.error, refusal.message))
                else:
                    recent.add(tenant, (key,))
        return _answer(len(events), errors, duplicates)

    def _key(event_id: str, at: int) -> tuple[str, int | None]:
        """What makes two of a tenant's events one, by storage's own rule (tea.storage.dedup): with
        ``storage.dedup_match=same_time`` (an event here always carries its time) its id and time, so a lookup
        reads the stored events of the events' own times only; with ``window``, its id (within the window)."""
        return event_id, at if settings.storage.dedup_same_time else None

    async def _already_stored(reader: ScopedStorage, tenant: str,
                              candidates: list[tuple[TkEvent, int]]) -> set[tuple[str, int | None]]:
        """The ``_key`` of each of the ``(event, time µs)`` storage holds already."""
        if not candidates:
            return set()
        stamps = [at for _, at in candidates]
        reach = 0 if settings.storage.dedup_same_time else settings.storage.dedup_window_us
        stored = await reader.existing_event_keys(tenant, list({e.event_id for e, _ in candidates}),
                                                  min(stamps) - reach, max(stamps) + reach)
        return {_key(event_id, at) for event_id, at in stored}

    def _refused(exc: ClientError) -> Response:
        if isinstance(exc, RateLimited):  # TEA's event rate or monthly quota: upstream's 429 shape
            return too_many(exc)
        return reply(exc.status, exc.message, headers=exc.headers)  # 503: the durable buffer refused

    def _answer(total: int, errors: list[TkError], duplicates: int) -> Response:
        accepted = total - len(errors)
        if not errors:
            return Response(encode_json({"status": "success", "accepted": accepted, "rejected": 0,
                                         "message": "All events ingested successfully"}), 200, JSON)
        if accepted == 0:
            return Response(encode_json({"error": "bad_request", "message": "All events rejected",
                                         "errors": errors}), 400, JSON)
        return Response(encode_json({"status": "partial", "accepted": accepted, "rejected": len(errors),
                                     "errors": errors}), 207, JSON)

    return [Route("POST", "/v1/ingest/{org_id}/{app_id}", ingest,
                  "telemetry-kit: HMAC-signed batch ingestion (its exact contract)", tags=("telemetry-kit",),
                  params=(Param("org_id", "organisation id", location="path", required=True),
                          Param("app_id", "application id", location="path", required=True)),
                  request_body={"application/json": TkBatch},
                  responses={200: ("All accepted: {status: success, accepted, rejected, message}", TK_OK),
                             207: ("Some accepted: {status: partial, accepted, rejected, errors}", TK_OK),
                             204: ("DNT: 1", {}),
                             400: ("Bad request, or all rejected: {error, message, errors?}", TK_ERROR),
                             401: ("Missing signature headers, unknown token, bad signature", TK_ERROR),
                             403: ("Timestamp outside the window, or the token is not this org/app's", TK_ERROR),
                             409: ("Nonce replay", TK_ERROR),
                             429: ("Rate limit: {error, message, retry_after}", TK_ERROR)},
                  scope=EVENTS_WRITE, admits_itself=True, errors=TK_ERROR)]

