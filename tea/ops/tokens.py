"""Admin routes: API tokens (``/v1/tokens``) and the audit log (``/v1/audit``)."""
from __future__ import annotations

from typing import Annotated

import msgspec

from tea.auth.audit import AuditLog
from tea.auth.principal import ADMIN, SCOPES, TIERS
from tea.auth.tokens import _UUID, IssuedToken, TokenService
from tea.errors import BadRequest
from tea.http import Request, Response, Route
from tea.http.params import Params, text, time, whole
from tea.http.response import JSON, encode_json
from tea.http.schemas import error_responses
from tea.query.readers import Readers
from tea.timeutil import format_us
from tea.types import AuditRecord, TokenRecord

Short = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class TokensParams(Params):
    tenant_id: text("only this tenant's tokens") | None = None  # type: ignore[valid-type]


class TokenRef(Params):
    PATH = frozenset({"token_id"})
    token_id: text("the token's id (tok_…)")  # type: ignore[valid-type]


class AuditParams(Params):
    action: text("auth_failure, token_created, token_revoked, token_rotated, admin_read, retention_set, "
                 "retention_deleted") | None = None  # type: ignore[valid-type]
    tenant_id: text("only this tenant") | None = None  # type: ignore[valid-type]
    start_time: time("from") | None = None  # type: ignore[valid-type]
    end_time: time("until") | None = None  # type: ignore[valid-type]
    limit: whole("1 to 10000 (default 100)", 1, 10000) = 100  # type: ignore[valid-type]


def _doc(schema: dict[str, object]) -> msgspec.Meta:
    """What TokenService checks (with its own messages), for the OpenAPI document."""
    return msgspec.Meta(extra_json_schema=schema)


UUID_TEXT = _doc({"pattern": f"^{_UUID.pattern}$"})


class TokenIn(msgspec.Struct, forbid_unknown_fields=True):
    tenant_id: Annotated[Short, _doc({"minLength": 1, "maxLength": 256, "pattern": "^[^_]"})]
    tier: Annotated[str, _doc({"enum": list(TIERS)})] = "free"
    scopes: Annotated[list[Annotated[str, _doc({"enum": list(SCOPES)})]], _doc({"minItems": 1})] | None = None
    org_id: Annotated[Short, UUID_TEXT] | None = None
    app_id: Annotated[Short, UUID_TEXT] | None = None


class TokenView(msgspec.Struct):
    """A token as listed: never its value or secret."""

    token_id: str
    token_prefix: str
    tenant_id: str
    tier: str
    scopes: list[str]
    org_id: str | None
    app_id: str | None
    created_at: str
    revoked_at: str | None
    rotated_at: str | None


class TokenIssued(msgspec.Struct):
    """Shown once: keep ``token`` and ``secret`` now, TEA stores neither in clear."""

    token: str
    secret: str
    token_id: str
    tenant_id: str
    tier: str
    scopes: list[str]
    org_id: str | None
    app_id: str | None


class TokenList(msgspec.Struct):
    tokens: list[TokenView]


class AuditEntry(msgspec.Struct):
    at: str
    action: str
    actor: str | None
    tenant_id: str | None
    remote_addr: str | None
    success: bool
    reason: str | None
    details: dict[str, str]


class AuditPage(msgspec.Struct):
    entries: list[AuditEntry]


_token_in = msgspec.json.Decoder(TokenIn)


def token_view(r: TokenRecord) -> TokenView:
    return TokenView(r.token_id, r.token_prefix, r.tenant_id, r.tier, r.scopes, r.org_id, r.app_id,
                     format_us(r.created_at), format_us(r.revoked_at) if r.revoked_at else None,
                     format_us(r.rotated_at) if r.rotated_at else None)


def issued(t: IssuedToken) -> TokenIssued:
    r = t.record
    return TokenIssued(t.token, t.secret, r.token_id, r.tenant_id, r.tier, r.scopes, r.org_id, r.app_id)


def audit_entry(r: AuditRecord) -> AuditEntry:
    return AuditEntry(format_us(r.at), r.action, r.actor, r.tenant_id, r.remote_addr, r.success, r.reason, r.details)


def routes(tokens: TokenService, audit: AuditLog, readers: Readers) -> list[Route]:
    def actor(request: Request) -> str | None:
        principal = request.state.get("principal")
        return (principal.user_id or principal.token_id) if principal else None

    def record(request: Request, action: str, token: TokenRecord) -> None:
        audit.record(action, actor=actor(request), tenant_id=token.tenant_id, remote_addr=request.client,
                     token_id=token.token_id)

    async def create(request: Request) -> Response:
        try:
            body = _token_in.decode(await request.body(64 * 1024))
        except msgspec.DecodeError as exc:
            raise BadRequest(f"invalid token request: {exc}", code="invalid_body") from None
        token = await tokens.create(body.tenant_id, body.tier, body.scopes, body.org_id, body.app_id)
        record(request, "token_created", token.record)
        return Response(encode_json(issued(token)), 201, JSON)

    async def list_tokens(request: Request, p: TokensParams) -> Response:
        records = await tokens.list(p.tenant_id)
        return Response(encode_json(TokenList([token_view(r) for r in records])), 200, JSON)

    async def get_token(request: Request, p: TokenRef) -> Response:
        return Response(encode_json(token_view(await tokens.get(p.token_id))), 200, JSON)

    async def revoke(request: Request, p: TokenRef) -> Response:
        token = await tokens.revoke(p.token_id)
        record(request, "token_revoked", token)
        return Response(encode_json(token_view(token)), 200, JSON)

    async def rotate(request: Request, p: TokenRef) -> Response:
        token = await tokens.rotate(p.token_id)
        record(request, "token_rotated", token.record)
        return Response(encode_json(issued(token)), 200, JSON)

    async def audit_log(request: Request, p: AuditParams) -> Response:
        await audit.flush()  # what was recorded a moment ago is visible now
        reader = readers.of(request, audited=False)  # (the audit log is TEA's own record, not tenant data)
        rows = await reader.query_audit(action=p.action, tenant_id=p.tenant_id, start_us=p.start_time,
                                        end_us=p.end_time, limit=p.limit)
        return Response(encode_json(AuditPage([audit_entry(r) for r in rows])), 200, JSON)

    errors = error_responses(400, 401, 403, 404)
    return [
        Route("POST", "/v1/tokens", create, "Create an API token; its value and signing secret are shown once",
              tags=("admin",), request_body={"application/json": TokenIn},
              responses={201: ("The new token", {"application/json": TokenIssued}), **errors}, scope=ADMIN),
        Route("GET", "/v1/tokens", list_tokens, "List API tokens (never their values or secrets)", tags=("admin",),
              query=TokensParams, responses={200: ("Tokens", {"application/json": TokenList}), **errors}, scope=ADMIN),
        Route("GET", "/v1/tokens/{token_id}", get_token, "One API token", tags=("admin",), query=TokenRef,
              responses={200: ("The token", {"application/json": TokenView}), **errors}, scope=ADMIN),
        Route("DELETE", "/v1/tokens/{token_id}", revoke, "Revoke an API token (its record stays, with revoked_at)",
              tags=("admin",), query=TokenRef,
              responses={200: ("The revoked token", {"application/json": TokenView}), **errors}, scope=ADMIN),
        Route("POST", "/v1/tokens/{token_id}/rotate", rotate,
              "New value and signing secret for a token (the old value stops working)", tags=("admin",),
              query=TokenRef, responses={200: ("The rotated token", {"application/json": TokenIssued}), **errors,
                                         **error_responses(409)}, scope=ADMIN),
        Route("GET", "/v1/audit", audit_log, "The audit log, newest first", tags=("admin",), query=AuditParams,
              responses={200: ("Entries", {"application/json": AuditPage}), **errors}, scope=ADMIN),
    ]
