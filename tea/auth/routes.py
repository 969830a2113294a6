"""Admin routes: API tokens (``/v1/tokens``) and the audit log (``/v1/audit``)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import msgspec

from tea.auth.principal import ADMIN
from tea.auth.tokens import IssuedToken
from tea.errors import BadRequest
from tea.http import Param, Request, Response, Route
from tea.http.response import JSON, encode_json
from tea.http.schemas import error_responses
from tea.query.spec import check_params, int_param, text_param, time_param
from tea.timeutil import format_us
from tea.types import AuditRecord, TokenRecord

if TYPE_CHECKING:
    from tea.app import TeaApp

Short = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class TokenIn(msgspec.Struct, forbid_unknown_fields=True):
    tenant_id: Short
    tier: str = "free"
    scopes: list[str] | None = None
    org_id: Short | None = None
    app_id: Short | None = None


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


def routes(app: "TeaApp") -> list[Route]:
    def actor(request: Request) -> str | None:
        principal = request.state.get("principal")
        return (principal.user_id or principal.token_id) if principal else None

    def audit(request: Request, action: str, record: TokenRecord) -> None:
        app.audit.record(action, actor=actor(request), tenant_id=record.tenant_id, remote_addr=request.client,
                         token_id=record.token_id)

    async def create(request: Request) -> Response:
        try:
            body = _token_in.decode(await request.body(64 * 1024))
        except msgspec.DecodeError as exc:
            raise BadRequest(f"invalid token request: {exc}", code="invalid_body") from None
        token = await app.tokens.create(body.tenant_id, body.tier, body.scopes, body.org_id, body.app_id)
        audit(request, "token_created", token.record)
        return Response(encode_json(issued(token)), 201, JSON)

    async def list_tokens(request: Request) -> Response:
        check_params(request, {"tenant_id"})
        records = await app.tokens.list(text_param(request, "tenant_id"))
        return Response(encode_json(TokenList([token_view(r) for r in records])), 200, JSON)

    async def get_token(request: Request) -> Response:
        return Response(encode_json(token_view(await app.tokens.get(request.path_params["token_id"]))), 200, JSON)

    async def revoke(request: Request) -> Response:
        record = await app.tokens.revoke(request.path_params["token_id"])
        audit(request, "token_revoked", record)
        return Response(encode_json(token_view(record)), 200, JSON)

    async def rotate(request: Request) -> Response:
        token = await app.tokens.rotate(request.path_params["token_id"])
        audit(request, "token_rotated", token.record)
        return Response(encode_json(issued(token)), 200, JSON)

    async def audit_log(request: Request) -> Response:
        check_params(request, {"action", "tenant_id", "start_time", "end_time", "limit"})
        await app.audit.flush()  # what was recorded a moment ago is visible now
        rows = await app.storage.query_audit(action=text_param(request, "action"),
                                             tenant_id=text_param(request, "tenant_id"),
                                             start_us=time_param(request, "start_time"),
                                             end_us=time_param(request, "end_time"),
                                             limit=int_param(request, "limit", 100, 1, 10000))
        return Response(encode_json(AuditPage([audit_entry(r) for r in rows])), 200, JSON)

    token_id = Param("token_id", "the token's id (tok_…)", location="path", required=True)
    errors = error_responses(400, 401, 403, 404)
    return [
        Route("POST", "/v1/tokens", create, "Create an API token; its value and signing secret are shown once",
              tags=("admin",), request_body={"application/json": TokenIn},
              responses={201: ("The new token", {"application/json": TokenIssued}), **errors}, scope=ADMIN),
        Route("GET", "/v1/tokens", list_tokens, "List API tokens (never their values or secrets)", tags=("admin",),
              params=(Param("tenant_id", "only this tenant's tokens"),),
              responses={200: ("Tokens", {"application/json": TokenList}), **errors}, scope=ADMIN),
        Route("GET", "/v1/tokens/{token_id}", get_token, "One API token", tags=("admin",), params=(token_id,),
              responses={200: ("The token", {"application/json": TokenView}), **errors}, scope=ADMIN),
        Route("DELETE", "/v1/tokens/{token_id}", revoke, "Revoke an API token", tags=("admin",), params=(token_id,),
              responses={200: ("The revoked token", {"application/json": TokenView}), **errors}, scope=ADMIN),
        Route("POST", "/v1/tokens/{token_id}/rotate", rotate,
              "New value and signing secret for a token (the old value stops working)", tags=("admin",),
              params=(token_id,), responses={200: ("The rotated token", {"application/json": TokenIssued}), **errors},
              scope=ADMIN),
        Route("GET", "/v1/audit", audit_log, "The audit log, newest first", tags=("admin",),
              params=(Param("action", "auth_failure, token_created, token_revoked, token_rotated, admin_read, "
                                      "retention_set, retention_deleted"),
                      Param("tenant_id", "only this tenant"), Param("start_time", "from"), Param("end_time", "until"),
                      Param("limit", "1 to 10000 (default 100)", {"type": "integer", "minimum": 1, "maximum": 10000})),
              responses={200: ("Entries", {"application/json": AuditPage}), **errors}, scope=ADMIN),
    ]
