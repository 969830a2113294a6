"""``/v1/alerts``: rules (``/v1/alerts/rules``), open alerts (``/v1/alerts/active``) and history."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tea.alerts.evaluate import HISTORY, STATES, render
from tea.alerts.rules import RuleBody, RuleStore, parse_rule
from tea.auth.principal import READ, WRITE
from tea.comms.routes import json_object, write_tenant
from tea.query.scope import principal_of, request_filter
from tea.errors import BadRequest, Conflict, NotFound
from tea.http import Param, Request, Response, Route
from tea.http.response import JSON, empty_response, encode_json
from tea.http.schemas import ErrorBody, error_responses
from tea.query.spec import check_params, int_param, text_param, time_param
from tea.timeutil import format_us

if TYPE_CHECKING:
    from tea.app import TeaApp

ALERT_STATES = ("pending", "firing", "resolved")


def _rule(rule: dict[str, Any]) -> dict[str, Any]:
    out = dict(rule)
    if isinstance(out.get("created_at"), int):
        out["created_at"] = format_us(out["created_at"])
    return out


def routes(app: "TeaApp") -> list[Route]:
    store = app.alerts.rules  # writes

    def tenants(request: Request) -> tuple[str, ...] | None:
        return request_filter(request).tenant_ids

    def rule_reader(request: Request) -> RuleStore:
        """The rules as this request may read them (scoped storage: the caller's tenant only)."""
        return RuleStore(app.reader(request), store.globals, app.clock)

    async def create_rule(request: Request) -> Response:
        check_params(request, {"tenant_id"})
        body = json_object(await request.body(app.settings.max_body_bytes))
        tenant = write_tenant(app, request, body.pop("tenant_id", None))
        rule = await store.create(tenant, parse_rule(body))
        return Response(encode_json(_rule(rule)), 201, JSON)

    async def list_rules(request: Request) -> Response:
        check_params(request, {"tenant_id"})
        api = sorted(await rule_reader(request).api_rules(tenants(request)), key=lambda r: (r["tenant_id"], r["id"]))
        rules = [_rule(r) for r in (*store.globals, *api)]
        return Response(encode_json({"rules": rules}), 200, JSON)

    async def find(request: Request) -> list[dict[str, Any]]:
        check_params(request, {"tenant_id"})
        rule_id = request.path_params["rule_id"]
        found = await rule_reader(request).find(tenants(request), rule_id)
        if not found:
            raise NotFound(f"no alert rule {rule_id!r}", code="rule_not_found")
        return found

    async def get_rule(request: Request) -> Response:
        return Response(encode_json(_rule((await find(request))[0])), 200, JSON)

    async def delete_rule(request: Request) -> Response:
        found = await find(request)
        rule = found[0]
        if rule["source"] != "api":
            raise Conflict(f"{rule['id']!r} is a {rule['source']} rule and cannot be deleted; turn the defaults off "
                           "with alerts.default_rules=false, settings rules by removing them from alerts.rules",
                           code="rule_not_deletable", details={"rule_id": rule["id"], "source": rule["source"]})
        if len(found) > 1:
            raise BadRequest(f"rule {rule['id']!r} exists in several tenants; name one with tenant_id",
                             code="ambiguous_rule", details={"parameter": "tenant_id"})
        await store.delete(rule["tenant_id"], rule["id"])  # its open alerts resolve at the next evaluation
        return empty_response(204)

    async def history(request: Request) -> Response:
        check_params(request, {"tenant_id", "state", "rule_id", "start_time", "end_time", "limit"})
        filters = {k: v for k in ("state", "rule_id") if (v := text_param(request, k)) is not None}
        if filters.get("state") not in (None, *ALERT_STATES):
            raise BadRequest(f"parameter `state` must be one of {', '.join(ALERT_STATES)}", code="invalid_parameter",
                             details={"parameter": "state"})
        rows = await app.reader(request).query_records(
            HISTORY, tenant_ids=tenants(request), filters=filters, start_us=time_param(request, "start_time"),
            end_us=time_param(request, "end_time"), limit=int_param(request, "limit", 100, 1, 10000))
        alerts = [render({**body, "tenant_id": tenant, "at": at}) for tenant, at, body in rows]
        return Response(encode_json({"alerts": alerts}), 200, JSON)

    async def active(request: Request) -> Response:
        check_params(request, {"tenant_id"})
        docs = await app.reader(request).list_documents(STATES, tenants(request))
        alerts = sorted((render({**doc, "tenant_id": tenant}) for tenant, _, doc in docs),
                        key=lambda a: (a["tenant_id"], a["rule_id"], a["group"]))
        return Response(encode_json({"alerts": alerts}), 200, JSON)

    async def acknowledge(request: Request) -> Response:
        check_params(request, {"tenant_id"})
        raw = await request.body(app.settings.max_body_bytes)
        body = json_object(raw) if raw.strip() else {}
        note = body.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > 1024):
            raise BadRequest("`note` must be a string of at most 1024 characters", code="invalid_field",
                             details={"field": "note"})
        alert_id = request.path_params["alert_id"]
        docs = await app.reader(request).list_documents(STATES, tenants(request))
        found = [(tenant, key) for tenant, key, doc in docs if doc.get("alert_id") == alert_id]
        if not found:
            raise NotFound(f"no open alert {alert_id!r}", code="alert_not_found", details={"alert_id": alert_id})
        principal = principal_of(request)
        by = principal.user_id or principal.token_id or principal.method
        alert = await app.alerts.acknowledge(*found[0], alert_id, by, note)
        if alert is None:
            raise NotFound(f"alert {alert_id!r} resolved meanwhile", code="alert_not_found",
                           details={"alert_id": alert_id})
        app.audit.record("alert_acknowledged", actor=by, tenant_id=found[0][0], remote_addr=request.client,
                         alert_id=alert_id, rule_id=alert["rule_id"])
        return Response(encode_json(render({**alert, "tenant_id": found[0][0]})), 200, JSON)

    tenant_param = (Param("tenant_id", "admins: one tenant"),)
    rule_param = (Param("rule_id", "the rule's id", location="path", required=True),)
    rule_ok = {"application/json": {"type": "object"}}
    conflict = {409: ("The id is taken, or a default/settings rule (not deletable)", {"application/json": ErrorBody})}
    return [
        Route("POST", "/v1/alerts/rules", create_rule,
              "Create an alert rule: {name, kind, params, severity?, for_s?, enabled?, id?}", tags=("alerts",),
              params=tenant_param, request_body={"application/json": RuleBody},
              responses={201: ("The rule", rule_ok), **error_responses(400, 401, 403), **conflict}, scope=WRITE),
        Route("GET", "/v1/alerts/rules", list_rules, "Alert rules: defaults, settings rules and the tenant's own",
              tags=("alerts",), params=tenant_param,
              responses={200: ("{rules}", rule_ok), **error_responses(400, 401, 403)}, scope=READ),
        Route("GET", "/v1/alerts/rules/{rule_id}", get_rule, "One alert rule", tags=("alerts",),
              params=rule_param + tenant_param,
              responses={200: ("The rule", rule_ok), **error_responses(400, 401, 403, 404)}, scope=READ),
        Route("DELETE", "/v1/alerts/rules/{rule_id}", delete_rule, "Delete an API alert rule", tags=("alerts",),
              params=rule_param + tenant_param,
              responses={204: ("Deleted", {}), **error_responses(400, 401, 403, 404), **conflict}, scope=WRITE),
        Route("GET", "/v1/alerts", history, "Alert history (pending, firing, resolved transitions), newest first",
              tags=("alerts",), params=(Param("state", "pending, firing or resolved"), Param("rule_id", "one rule"),
                                        Param("start_time", "from (inclusive)"), Param("end_time", "until"),
                                        Param("limit", "1 to 10000 (default 100)")) + tenant_param,
              responses={200: ("{alerts}", rule_ok), **error_responses(400, 401, 403)}, scope=READ),
        Route("GET", "/v1/alerts/active", active, "Open alerts (pending or firing)", tags=("alerts",),
              params=tenant_param, responses={200: ("{alerts}", rule_ok), **error_responses(400, 401, 403)},
              scope=READ),
        Route("POST", "/v1/alerts/{alert_id}/acknowledge", acknowledge,
              "Acknowledge an open alert ({note?}): it stays open; who and when are kept, also in its history row "
              "when it resolves", tags=("alerts",),
              params=(Param("alert_id", "the open alert's alert_id", location="path", required=True),) + tenant_param,
              request_body={"application/json": {"type": "object", "properties": {"note": {"type": "string"}}}},
              responses={200: ("The alert", rule_ok), **error_responses(400, 401, 403, 404)}, scope=WRITE),
    ]
