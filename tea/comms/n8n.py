"""``POST /v1/webhooks/n8n``: n8n workflow events kept in the registry, as the seed's webhook handler does."""
from __future__ import annotations

from typing import Any, Literal

import msgspec

from tea.auth.gate import principal_of, write_tenant
from tea.auth.principal import WRITE
from tea.comms.registry import Registry
from tea.http import Request, Response, Route
from tea.http.body import json_object
from tea.http.response import JSON, encode_json
from tea.query.spec import Tenant
from tea.settings import Settings


class WebhookParams(Tenant, forbid_unknown_fields=False):
    """(n8n may add parameters of its own to a webhook URL: they are ignored.)"""


KINDS = ("workflow.created", "workflow.updated", "workflow.deleted", "workflow.executed")
# what the handler reads; anything else in the body (and any type of name, nodes, tags, execution) is ignored
WEBHOOK_BODY = {"type": "object", "required": ["event", "workflow"], "properties": {
    "event": {"enum": list(KINDS)},
    "workflow": {"type": "object", "required": ["id"], "properties": {
        "id": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]}, "name": {}, "nodes": {},
        "tags": {}, "settings": {}}},
    "execution": {"description": "{status, error}: a failed execution marks the workflow degraded"}}}


class WebhookReply(msgspec.Struct, omit_defaults=True):
    """The seed handler's ``{status, action}``; a refusal adds TEA's ``error`` code and ``message``."""

    status: Literal["success", "error"]
    action: str | None
    workflow_id: str | None = None
    error: str | None = None
    message: str | None = None


def routes(settings: Settings, registry: Registry) -> list[Route]:
    async def n8n(request: Request, p: WebhookParams) -> Response:
        body = json_object(await request.body(settings.max_body_bytes))
        tenant = write_tenant(principal_of(request), p.tenant_id, settings.default_tenant)
        result, status = await n8n_event(registry, tenant, body)
        return Response(encode_json(result), status, JSON)

    return [Route("POST", "/v1/webhooks/n8n", n8n, "n8n workflow events: workflow.created|updated|deleted|executed",
                  tags=("registry",), query=WebhookParams, request_body={"application/json": WEBHOOK_BODY},
                  responses={200: ("{status, action, workflow_id}", {"application/json": WebhookReply}),
                             400: ("Not a workflow event: {status: error, action: null, error, message}",
                                   {"application/json": WebhookReply}),
                             404: ("workflow.deleted for a workflow not registered", {"application/json": WebhookReply})},
                  scope=WRITE)]


def _refused(message: str) -> tuple[dict[str, Any], int]:
    return {"status": "error", "action": None, "error": "invalid_webhook", "message": message, "details": {}}, 400


async def n8n_event(registry: Registry, tenant: str, event: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The seed's ``N8NWebhookHandler.handle_workflow_event``: created/updated register the workflow
    (capabilities from its node types), deleted → state ``deleted`` with health ``none``, executed →
    activity, and a failed execution → health ``degraded`` (a successful one → ``healthy``)."""
    kind = event.get("event")
    workflow = event.get("workflow")
    workflow_id = workflow.get("id") if isinstance(workflow, dict) else None
    if not isinstance(workflow_id, (str, int)) or isinstance(workflow_id, bool) or workflow_id == "":
        return _refused("`workflow.id` (a string or a number) is required")
    workflow_id = str(workflow_id)
    name = workflow.get("name") if isinstance(workflow.get("name"), str) and workflow.get("name") else workflow_id
    if kind in ("workflow.created", "workflow.updated"):
        nodes = workflow.get("nodes") if isinstance(workflow.get("nodes"), list) else []
        capabilities = sorted({str(n["type"]) for n in nodes if isinstance(n, dict) and n.get("type")})
        given_tags = workflow.get("tags")
        tags = [str(t.get("name", t)) if isinstance(t, dict) else str(t) for t in given_tags] \
            if isinstance(given_tags, list) else []
        metadata = {"nodes": len(nodes), "settings": workflow.get("settings") or {},
                    "webhook_event": kind}
        _, created = await registry.register(tenant, workflow_id, "n8n_workflow", name, "n8n", metadata,
                                             capabilities, registration_source="n8n", deployment_type="n8n",
                                             tags=tags or None)
        return {"status": "success", "action": "registered" if created else "updated", "workflow_id": workflow_id}, 200
    if kind == "workflow.deleted":
        found = await registry.update_entity_state(tenant, workflow_id, "n8n_workflow", "deleted", "none", "n8n",
                                                   "workflow deleted in n8n")
        return {"status": "success" if found else "error", "action": "deleted" if found else "not_found",
                "workflow_id": workflow_id}, 200 if found else 404
    if kind == "workflow.executed":
        execution = event.get("execution") if isinstance(event.get("execution"), dict) else {}
        failed = execution.get("status") in ("error", "failed", "crashed") or bool(execution.get("error"))
        entity = await registry.get(tenant, workflow_id, "n8n_workflow")
        if entity is None:
            entity, _ = await registry.register(tenant, workflow_id, "n8n_workflow", name, "n8n", {},
                                                registration_source="n8n", deployment_type="n8n")
        state = entity["current_state"] if entity["current_state"] != "registered" else "active"
        reason = f"execution failed: {execution.get('error')}" if failed else "execution succeeded"
        await registry.update_entity_state(tenant, workflow_id, "n8n_workflow", state,
                                           "degraded" if failed else "healthy", "n8n", reason[:1000])
        await registry.record_entity_activity(tenant, workflow_id, "n8n_workflow", failed)
        return {"status": "success", "action": "execution_failed" if failed else "execution_recorded",
                "workflow_id": workflow_id}, 200
    return _refused("`event` must be workflow.created, workflow.updated, workflow.deleted or workflow.executed")
