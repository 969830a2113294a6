"""Admin routes: per-tenant retention (``/v1/retention``)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import msgspec

from tea.auth.principal import ADMIN
from tea.errors import BadRequest
from tea.http import Param, Request, Response, Route
from tea.http.response import JSON, encode_json
from tea.http.schemas import error_responses
from tea.query.spec import check_params

if TYPE_CHECKING:
    from tea.app import TeaApp


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


_decoder = msgspec.json.Decoder(RetentionIn)


def routes(app: "TeaApp") -> list[Route]:
    job = app.retention

    async def current() -> RetentionView:
        api = await app.storage.retention_overrides()
        return RetentionView(job.hours, {**job.tenant_hours, **api}, dict(job.tenant_hours), api,
                             job.last_run_at, job.purged_total)

    async def get_retention(request: Request) -> Response:
        check_params(request, set())
        return Response(encode_json(await current()), 200, JSON)

    async def put_retention(request: Request) -> Response:
        body = await request.body(64 * 1024)
        try:
            hours = _decoder.decode(body).hours
        except msgspec.DecodeError as exc:
            raise BadRequest(f"body must be {{\"hours\": <whole number >= 0>}}: {exc}", code="invalid_body",
                             details={"field": "hours"}) from None
        tenant = request.path_params["tenant_id"]
        await app.storage.set_retention_override(tenant, hours)
        _audit(request, "retention_set", tenant, hours=str(hours))
        return Response(encode_json(await current()), 200, JSON)

    async def delete_retention(request: Request) -> Response:
        tenant = request.path_params["tenant_id"]
        await app.storage.set_retention_override(tenant, None)
        _audit(request, "retention_deleted", tenant)
        return Response(encode_json(await current()), 200, JSON)

    def _audit(request: Request, action: str, tenant: str, **details: str) -> None:
        principal = request.state.get("principal")
        actor = (principal.user_id or principal.token_id) if principal else None
        app.audit.record(action, actor=actor, tenant_id=tenant, remote_addr=request.client, **details)

    tenant = Param("tenant_id", "the tenant", location="path", required=True)
    view = {200: ("Effective retention", {"application/json": RetentionView})}
    return [
        Route("GET", "/v1/retention", get_retention, "Effective retention: global and per tenant",
              tags=("admin",), responses=view, scope=ADMIN),
        Route("PUT", "/v1/retention/{tenant_id}", put_retention,
              "Set a tenant's retention in hours (0 keeps forever); overrides the settings", tags=("admin",),
              params=(tenant,), request_body={"application/json": RetentionIn},
              responses={**view, **error_responses(400, 401, 403)}, scope=ADMIN),
        Route("DELETE", "/v1/retention/{tenant_id}", delete_retention,
              "Remove a tenant's API override (the settings or the global retention apply again)",
              tags=("admin",), params=(tenant,), responses=view, scope=ADMIN),
    ]
