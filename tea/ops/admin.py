"""Admin routes: per-tenant retention (``/v1/retention``)."""
from __future__ import annotations

from typing import Annotated

import msgspec

from tea.auth.audit import AuditLog
from tea.auth.principal import ADMIN
from tea.errors import BadRequest
from tea.http import Request, Response, Route
from tea.http.body import decode
from tea.http.params import Params, text
from tea.http.response import JSON, encode_json
from tea.http.schemas import error_responses
from tea.ops.retention import RetentionJob
from tea.query.readers import Readers


class RetentionIn(msgspec.Struct, forbid_unknown_fields=True):
    hours: Annotated[int, msgspec.Meta(ge=0, le=10**6)]


class RetentionView(msgspec.Struct):
    """Effective retention: the global hours and every tenant override with where it comes from."""

    retention_hours: int
    tenants: dict[str, int]
    from_settings: dict[str, int]
    from_api: dict[str, int]
    last_run_at: float | None
    purged_total: int


class NoParams(Params):
    pass


class TenantRef(Params):
    PATH = frozenset({"tenant_id"})
    tenant_id: text("the tenant")  # type: ignore[valid-type]


_decoder = msgspec.json.Decoder(RetentionIn)


def routes(retention: RetentionJob, readers: Readers, audit: AuditLog) -> list[Route]:
    job = retention

    async def current(request: Request) -> RetentionView:
        api = await readers.of(request, audited=False).retention_overrides()
        return RetentionView(job.hours, {**job.tenant_hours, **api}, dict(job.tenant_hours), api,
                             job.last_run_at, job.purged_total)

    async def get_retention(request: Request, p: NoParams) -> Response:
        return Response(encode_json(await current(request)), 200, JSON)

    async def put_retention(request: Request, p: TenantRef) -> Response:
        body = await request.body(64 * 1024)
        try:
            hours = decode(_decoder, body).hours
        except msgspec.DecodeError as exc:
            raise BadRequest(f"body must be {{\"hours\": <whole number >= 0>}}: {exc}", code="invalid_body",
                             details={"field": "hours"}) from None
        await job.set_override(p.tenant_id, hours)
        _audit(request, "retention_set", p.tenant_id, hours=str(hours))
        return Response(encode_json(await current(request)), 200, JSON)

    async def delete_retention(request: Request, p: TenantRef) -> Response:
        await job.set_override(p.tenant_id, None)
        _audit(request, "retention_deleted", p.tenant_id)
        return Response(encode_json(await current(request)), 200, JSON)

    def _audit(request: Request, action: str, tenant: str, **details: str) -> None:
        principal = request.state.get("principal")
        actor = (principal.user_id or principal.token_id) if principal else None
        audit.record(action, actor=actor, tenant_id=tenant, remote_addr=request.client, **details)

    view = {200: ("Effective retention", {"application/json": RetentionView})}
    return [
        Route("GET", "/v1/retention", get_retention, "Effective retention: global and per tenant",
              tags=("admin",), query=NoParams, responses={**view, **error_responses(400)}, scope=ADMIN),
        Route("PUT", "/v1/retention/{tenant_id}", put_retention,
              "Set a tenant's retention in hours (0 keeps forever); overrides the settings", tags=("admin",),
              query=TenantRef, request_body={"application/json": RetentionIn},
              responses={**view, **error_responses(400, 401, 403)}, scope=ADMIN),
        Route("DELETE", "/v1/retention/{tenant_id}", delete_retention,
              "Remove a tenant's API override (the settings or the global retention apply again)",
              tags=("admin",), query=TenantRef, responses={**view, **error_responses(400)}, scope=ADMIN),
    ]
