"""``/v1/alerts``: rules (``/v1/alerts/rules``), open alerts (``/v1/alerts/active``) and history."""
from __future__ import annotations

from typing import Any, Callable

from tea.alerts.evaluate import HISTORY, STATES, Evaluator, render
from tea.alerts.rules import RuleStore, parse_rule, rule_bodies
from tea.auth.audit import AuditLog
from tea.auth.gate import principal_of, write_tenant
from tea.auth.principal import READ, WRITE
from tea.errors import BadRequest, Conflict, NotFound
from tea.http import Request, Response, Route
from tea.http.body import json_object, pop_text
from tea.http.params import choice, text, whole
from tea.http.response import JSON, empty_response, encode_json
from tea.http.schemas import ErrorBody, error_responses
from tea.query.readers import Readers
from tea.query.spec import Tenant, Window
from tea.settings import Settings
from tea.timeutil import format_us

ALERT_STATES = ("pending", "firing", "resolved")


class RuleRef(Tenant, kw_only=True):
    PATH = frozenset({"rule_id"})
    rule_id: text("the rule's id")  # type: ignore[valid-type]


class AlertRef(Tenant, kw_only=True):
    PATH = frozenset({"alert_id"})
    alert_id: text("the open alert's alert_id")  # type: ignore[valid-type]


class HistoryParams(Window):
    state: choice("pending, firing or resolved", ALERT_STATES) | None = None  # type: ignore[valid-type]
    rule_id: text("one rule") | None = None  # type: ignore[valid-type]
    limit: whole("1 to 10000 (default 100)", 1, 10000) = 100  # type: ignore[valid-type]


def _rule(rule: dict[str, Any]) -> dict[str, Any]:
    out = dict(rule)
    if isinstance(out.get("created_at"), int):
        out["created_at"] = format_us(out["created_at"])
    return out


def routes(settings: Settings, clock: Callable[[], int], readers: Readers, alerts: Evaluator,
           audit: AuditLog) -> list[Route]:
    store = alerts.rules  # writes

    def tenants(p: Tenant | Window) -> tuple[str, ...] | None:
        return (p.tenant_id,) if p.tenant_id else None

    def rule_reader(request: Request) -> RuleStore:
        """The rules as this request may read them (scoped storage: the caller's tenant only)."""
        return RuleStore(readers.of(request), store.globals, clock)

    async def create_rule(request: Request, p: Tenant) -> Response:
        body = json_object(await request.body(settings.max_body_bytes))
        tenant = write_tenant(principal_of(request), pop_text(body, "tenant_id") or p.tenant_id,
                              settings.default_tenant)
        rule = await store.create(tenant, parse_rule(body))
        return Response(encode_json(_rule(rule)), 201, JSON)

    async def list_rules(request: Request, p: Tenant) -> Response:
        api = sorted(await rule_reader(request).api_rules(tenants(p)), key=lambda r: (r["tenant_id"], r["id"]))
        rules = [_rule(r) for r in (*store.globals, *api)]
        return Response(encode_json({"rules": rules}), 200, JSON)

    async def find(request: Request, p: RuleRef) -> list[dict[str, Any]]:
        found = await rule_reader(request).find(tenants(p), p.rule_id)
        if not found:
            raise NotFound(f"no alert rule {p.rule_id!r}", code="rule_not_found")
        return found

    async def get_rule(request: Request, p: RuleRef) -> Response:
        return Response(encode_json(_rule((await find(request, p))[0])), 200, JSON)

    async def delete_rule(request: Request, p: RuleRef) -> Response:
        found = await find(request, p)
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

    async def history(request: Request, p: HistoryParams) -> Response:
        filters = {k: v for k in ("state", "rule_id") if (v := getattr(p, k)) is not None}
        rows = await readers.of(request).query_records(
            HISTORY, tenant_ids=tenants(p), filters=filters, start_us=p.start_time, end_us=p.end_time, limit=p.limit)
        alerts = [render({**body, "tenant_id": tenant, "at": at}) for tenant, at, body in rows]
        return Response(encode_json({"alerts": alerts}), 200, JSON)

    async def active(request: Request, p: Tenant) -> Response:
        docs = await readers.of(request).list_documents(STATES, tenants(p))
        alerts = sorted((render({**doc, "tenant_id": tenant}) for tenant, _, doc in docs),
                        key=lambda a: (a["tenant_id"], a["rule_id"], a["group"]))
        return Response(encode_json({"alerts": alerts}), 200, JSON)

    async def acknowledge(request: Request, p: AlertRef) -> Response:
        raw = await request.body(settings.max_body_bytes)
        body = json_object(raw) if raw.strip() else {}
        note = body.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > 1024):
            raise BadRequest("`note` must be a string of at most 1024 characters", code="invalid_field",
                             details={"field": "note"})
        docs = await readers.of(request).list_documents(STATES, tenants(p))
        found = [(tenant, key) for tenant, key, doc in docs if doc.get("alert_id") == p.alert_id]
        if not found:
            raise NotFound(f"no open alert {p.alert_id!r}", code="alert_not_found", details={"alert_id": p.alert_id})
        principal = principal_of(request)
        by = principal.user_id or principal.token_id or principal.method
        alert = await alerts.acknowledge(*found[0], p.alert_id, by, note)
        if alert is None:
            raise NotFound(f"alert {p.alert_id!r} resolved meanwhile", code="alert_not_found",
                           details={"alert_id": p.alert_id})
        audit.record("alert_acknowledged", actor=by, tenant_id=found[0][0], remote_addr=request.client,
                     alert_id=p.alert_id, rule_id=alert["rule_id"])
        return Response(encode_json(render({**alert, "tenant_id": found[0][0]})), 200, JSON)

    rule_ok = {"application/json": {"type": "object"}}
    conflict = {409: ("The id is taken, or a default/settings rule (not deletable)", {"application/json": ErrorBody})}
    return [
        Route("POST", "/v1/alerts/rules", create_rule,
              "Create an alert rule: {name, kind, params, severity?, for_s?, enabled?, id?}", tags=("alerts",),
              query=Tenant, request_body={"application/json": rule_bodies()},
              responses={201: ("The rule", rule_ok), **error_responses(400, 401, 403), **conflict}, scope=WRITE),
        Route("GET", "/v1/alerts/rules", list_rules, "Alert rules: defaults, settings rules and the tenant's own",
              tags=("alerts",), query=Tenant,
              responses={200: ("{rules}", rule_ok), **error_responses(400, 401, 403)}, scope=READ),
        Route("GET", "/v1/alerts/rules/{rule_id}", get_rule, "One alert rule", tags=("alerts",), query=RuleRef,
              responses={200: ("The rule", rule_ok), **error_responses(400, 401, 403, 404)}, scope=READ),
        Route("DELETE", "/v1/alerts/rules/{rule_id}", delete_rule, "Delete an API alert rule", tags=("alerts",),
              query=RuleRef, responses={204: ("Deleted", {}), **error_responses(400, 401, 403, 404), **conflict},
              scope=WRITE),
        Route("GET", "/v1/alerts", history, "Alert history (pending, firing, resolved transitions), newest first",
              tags=("alerts",), query=HistoryParams,
              responses={200: ("{alerts}", rule_ok), **error_responses(400, 401, 403)}, scope=READ),
        Route("GET", "/v1/alerts/active", active, "Open alerts (pending or firing)", tags=("alerts",),
              query=Tenant, responses={200: ("{alerts}", rule_ok), **error_responses(400, 401, 403)},
              scope=READ),
        Route("POST", "/v1/alerts/{alert_id}/acknowledge", acknowledge,
              "Acknowledge an open alert ({note?}): it stays open; who and when are kept, also in its history row "
              "when it resolves", tags=("alerts",), query=AlertRef,
              request_body={"application/json": {"type": "object", "properties": {"note": {"type": "string"}}}},
              responses={200: ("The alert", rule_ok), **error_responses(400, 401, 403, 404)}, scope=WRITE),
    ]
