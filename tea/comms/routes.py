"""``/v1/communications`` (records and the seed's views), ``/v1/registry`` and ``/v1/webhooks/n8n``."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from tea.auth.principal import READ, WRITE
from tea.comms import views
from tea.comms.records import EVENT_TYPE, Communication, decode_items, split_body, to_event, to_row
from tea.comms.registry import (ENTITY_TYPES, Registry, check_text, check_type, render)
from tea.errors import BadRequest, Forbidden, NotFound, TooLarge, UnsupportedMediaType
from tea.http import Param, Request, Response, Route
from tea.http.response import JSON, empty_response, encode_json
from tea.http.schemas import IngestResponse, error_responses
from tea.pipeline.normalise import ItemError
from tea.query.scope import principal_of, request_filter
from tea.query.spec import (PAGE_PARAMS, check_params, cursor_param, encode_cursor, int_param, text_param,
                            time_param)
from tea.receive.decode import Decoded, check_utf8
from tea.receive.native import outcome_response
from tea.types import EventFilter, QuerySpec

if TYPE_CHECKING:
    from tea.app import TeaApp

VIEW_NAMES = {"health": "system_health_overview", "patterns": "communication_patterns",
              "top-pairs": "top_communication_pairs", "realtime": "communication_metrics_realtime",
              "matrix": "communication_matrix"}
# GET /v1/communications filter → canonical column
COMM_FILTERS = {"protocol": "protocol", "source_id": "source", "target_id": "target", "operation": "method",
                "status": "status", "correlation_id": "correlation_id"}
_ok = {"success": "ok"}
_json_object = msgspec.json.Decoder(dict[str, Any])


def json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise BadRequest("request body is empty", code="empty_body")
    check_utf8(body)
    try:
        return _json_object.decode(body)
    except msgspec.ValidationError:
        raise BadRequest("body must be a JSON object", code="invalid_json") from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BadRequest(f"invalid JSON: {exc}", code="invalid_json") from None


def write_tenant(app: "TeaApp", request: Request, asked: str | None = None) -> str:
    """The tenant a registry write (or a single-tenant read) acts on: the caller's own; admins and dev mode
    name one with ``tenant_id`` (else the default tenant)."""
    principal = principal_of(request)
    asked = asked or request.param("tenant_id")
    if principal.tenant_id and not principal.is_admin:
        if asked and asked != principal.tenant_id:
            raise Forbidden(f"this credential cannot act on tenant {asked!r}", code="forbidden_tenant",
                            details={"tenant_id": asked})
        return principal.tenant_id
    return asked or app.settings.default_tenant


async def ingest_communications(app: "TeaApp", request: Request, body: bytes, source_protocol: str = "elf"):  # type: ignore[no-untyped-def]
    """Decode one communication or an array, per-item errors with index and field, through the one ingestion
    path. Returns the ingest outcome and the decoded items (by request index)."""
    if not body.strip():
        raise BadRequest("request body is empty", code="empty_body")
    check_utf8(body)
    try:
        items = split_body(body, app.settings.max_batch_events)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BadRequest(f"invalid JSON: {exc}", code="invalid_json") from None
    if not items:
        raise BadRequest("the batch holds no communications", code="empty_batch")
    if len(items) > app.settings.max_batch_events:
        raise TooLarge(f"batch holds more than {app.settings.max_batch_events} communications (max_batch_events)",
                       code="too_many_events", details={"max_batch_events": app.settings.max_batch_events})
    good, indexes, problems = decode_items(items)
    errors = [ItemError(p["index"], p["error"], p["message"], None, p.get("field")) for p in problems]
    decoded = Decoded([to_event(c) for c in good], indexes, errors, len(items))
    outcome = await app.ingestor.submit(decoded, source_protocol, request.state.get("principal"),
                                        request.header("dnt") == "1")
    return outcome, dict(zip(indexes, good))


def routes(app: "TeaApp") -> list[Route]:
    registry: Registry = app.registry  # writes

    def reads(request: Request) -> Registry:
        """The registry as this request may read it (scoped storage: the caller's tenant only)."""
        return Registry(app.reader(request), app.clock)

    # ------------------------------------------------------------ communications
    async def post_communications(request: Request) -> Response:
        if request.media_type != "application/json" and not request.media_type.endswith("+json"):
            raise UnsupportedMediaType(f"unsupported Content-Type {request.media_type!r}; send application/json")
        outcome, _ = await ingest_communications(app, request, await request.body(app.settings.max_body_bytes))
        return outcome_response(outcome, "communications")

    async def list_communications(request: Request) -> Response:
        check_params(request, {*COMM_FILTERS, "tenant_id", "start_time", "end_time", "limit", "cursor"})
        fields: dict[str, Any] = {}
        for name, column in COMM_FILTERS.items():
            value = text_param(request, name)
            if value is not None:
                fields[column] = _ok.get(value, value) if name == "status" else value
        f = request_filter(request, event_type=EVENT_TYPE, start_us=time_param(request, "start_time"),
                        end_us=time_param(request, "end_time"), **fields)
        result = await app.reader(request).query_events(QuerySpec(f, int_param(request, "limit", 100, 1, 10000),
                                                                  cursor_param(request)))
        body = {"communications": [to_row(e, with_tenant=True) for e in result.events],
                "total_count": result.total_count, "has_more": result.has_more,
                "next_cursor": encode_cursor(result.next_cursor)}
        return Response(encode_json(body), 200, JSON)

    def view_handler(name: str):  # type: ignore[no-untyped-def]
        compute = views.VIEWS[name]

        async def handler(request: Request) -> Response:
            allowed = {"tenant_id"} | ({"start_time", "end_time"} if name == "matrix" else set())
            check_params(request, allowed)
            f = request_filter(request, start_us=time_param(request, "start_time") if name == "matrix" else None,
                            end_us=time_param(request, "end_time") if name == "matrix" else None)
            rows = await compute(app.reader(request), f, app.clock())
            return Response(encode_json({"view": VIEW_NAMES[name], "rows": rows}), 200, JSON)
        return handler

    # ------------------------------------------------------------ registry
    def entity_key(request: Request) -> tuple[str, str]:
        entity_type = check_type(request.path_params["entity_type"], "entity_type")
        return request.path_params["entity_id"], entity_type

    async def register(request: Request) -> Response:
        body = json_object(await request.body(app.settings.max_body_bytes))
        tenant = write_tenant(app, request, body.pop("tenant_id", None))
        known = {"entity_id", "entity_type", "entity_name", "registered_by", "metadata", "capabilities",
                 "endpoint_url", "parent_entity_id", "display_name", "registration_source", "namespace",
                 "deployment_type", "tags", "version", "department"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise BadRequest(f"unknown field `{unknown[0]}`; accepted: {', '.join(sorted(known))}",
                             code="invalid_field", details={"field": unknown[0]})
        entity_id = check_text("entity_id", body.get("entity_id"), required=True)
        entity_type = check_type(body.get("entity_type"), "entity_type")
        name = check_text("entity_name", body.get("entity_name"), required=True)
        principal = principal_of(request)
        by = check_text("registered_by", body.get("registered_by")) or principal.user_id or principal.token_id or "api"
        for field in ("endpoint_url", "parent_entity_id", "display_name", "registration_source", "namespace",
                      "deployment_type", "version", "department"):
            check_text(field, body.get(field))
        for field in ("capabilities", "tags"):
            value = body.get(field)
            if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                raise BadRequest(f"`{field}` must be a list of strings", code="invalid_field", details={"field": field})
        if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
            raise BadRequest("`metadata` must be an object", code="invalid_field", details={"field": "metadata"})
        entity, created = await registry.register(
            tenant, entity_id, entity_type, name, by, body.get("metadata"), body.get("capabilities"),  # type: ignore[arg-type]
            body.get("endpoint_url"), body.get("parent_entity_id"),
            **{k: body.get(k) for k in ("display_name", "registration_source", "namespace", "deployment_type",
                                        "tags", "version", "department")})
        return Response(encode_json(render(entity)), 201 if created else 200, JSON)

    async def list_entities(request: Request) -> Response:
        filters = ("entity_type", "current_state", "health_status", "department", "parent_entity_id", "namespace")
        check_params(request, {*filters, "tenant_id"})
        wanted = {k: text_param(request, k) for k in filters if text_param(request, k) is not None}
        found = [e for e in await reads(request).entities(request_filter(request).tenant_ids)
                 if all(e.get(k) == v for k, v in wanted.items())]
        found.sort(key=lambda e: (e["tenant_id"], e["entity_type"], e["entity_id"]))
        return Response(encode_json({"entities": [render(e) for e in found]}), 200, JSON)

    async def get_entity(request: Request) -> Response:
        entity_id, entity_type = entity_key(request)
        entity = await reads(request).get(write_tenant(app, request), entity_id, entity_type)
        if entity is None:
            raise NotFound(f"no {entity_type} {entity_id!r} in the registry", code="entity_not_found")
        return Response(encode_json(render(entity)), 200, JSON)

    async def delete_entity(request: Request) -> Response:
        entity_id, entity_type = entity_key(request)
        principal = principal_of(request)
        if not await registry.delete(write_tenant(app, request), entity_id, entity_type,
                                     principal.user_id or principal.token_id or "api"):
            raise NotFound(f"no {entity_type} {entity_id!r} in the registry", code="entity_not_found")
        return empty_response(204)

    async def set_state(request: Request) -> Response:
        entity_id, entity_type = entity_key(request)
        body = json_object(await request.body(app.settings.max_body_bytes))
        state = check_text("current_state", body.get("state"), "state", required=True)
        health = check_text("health_status", body.get("health_status"))
        principal = principal_of(request)
        by = check_text("registered_by", body.get("updated_by")) or principal.user_id or principal.token_id or "system"
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise BadRequest("`reason` must be a string", code="invalid_field", details={"field": "reason"})
        tenant = write_tenant(app, request)
        if not await registry.update_entity_state(tenant, entity_id, entity_type, state, health, by, reason):  # type: ignore[arg-type]
            raise NotFound(f"no {entity_type} {entity_id!r} in the registry", code="entity_not_found")
        return Response(encode_json(render(await registry.get(tenant, entity_id, entity_type))), 200, JSON)  # type: ignore[arg-type]

    async def activity(request: Request) -> Response:
        entity_id, entity_type = entity_key(request)
        raw = await request.body(app.settings.max_body_bytes)
        body = json_object(raw) if raw.strip() else {}
        is_error = body.get("is_error", False)
        if not isinstance(is_error, bool):
            raise BadRequest("`is_error` must be true or false", code="invalid_field", details={"field": "is_error"})
        tenant = write_tenant(app, request)
        if await registry.get(tenant, entity_id, entity_type) is None:
            raise NotFound(f"no {entity_type} {entity_id!r} in the registry", code="entity_not_found")
        await registry.record_entity_activity(tenant, entity_id, entity_type, is_error)
        return Response(encode_json(render(await registry.get(tenant, entity_id, entity_type))), 200, JSON)  # type: ignore[arg-type]

    async def entity_state(request: Request) -> Response:
        check_params(request, {"tenant_id"})
        entities = await reads(request).entities(request_filter(request).tenant_ids)
        return Response(encode_json({"view": "system_entity_state",
                                     "rows": registry.entity_state(entities, app.clock())}), 200, JSON)

    async def hierarchy(request: Request) -> Response:
        check_params(request, {"tenant_id"})
        tenant = write_tenant(app, request)
        entities = await reads(request).entities((tenant,))
        return Response(encode_json({"view": "entity_hierarchy", "rows": registry.hierarchy(entities)}), 200, JSON)

    async def gaps(request: Request) -> Response:
        check_params(request, {"tenant_id"})
        tenant = write_tenant(app, request)
        reader = app.reader(request)
        entities = await Registry(reader, app.clock).entities((tenant,))
        seen = await views.endpoints(reader, EventFilter(tenant_ids=(tenant,)))
        return Response(encode_json({"rows": registry.gaps(entities, seen, app.clock())}), 200, JSON)

    def log_handler(which: str):  # type: ignore[no-untyped-def]
        async def handler(request: Request) -> Response:
            names = ("entity_id", "entity_type") + (("action",) if which == "audit" else ())
            check_params(request, {*names, "tenant_id", "limit"})
            filters = {k: text_param(request, k) for k in names if text_param(request, k) is not None}
            fetch = reads(request).audit if which == "audit" else reads(request).transitions
            rows = await fetch(request_filter(request).tenant_ids, filters,  # type: ignore[arg-type]
                               int_param(request, "limit", 100, 1, 10000))
            return Response(encode_json({"rows": rows}), 200, JSON)
        return handler

    # ------------------------------------------------------------ n8n
    async def n8n(request: Request) -> Response:
        body = json_object(await request.body(app.settings.max_body_bytes))
        result, status = await n8n_event(app, write_tenant(app, request), body)
        return Response(encode_json(result), status, JSON)

    rows_ok = {200: ("Rows", {"application/json": {"type": "object"}})}
    entity_params = (Param("entity_type", f"one of {', '.join(ENTITY_TYPES)}", location="path", required=True),
                     Param("entity_id", "the entity's id", location="path", required=True))
    tenant_param = (Param("tenant_id", "admins: one tenant"),)
    out = [
        Route("POST", "/v1/communications", post_communications,
              "Record MCP / A2A / n8n communications: one communication_telemetry row or an array",
              tags=("communications",), request_body={"application/json": Communication | list[Communication]},
              responses={200: ("All accepted", {"application/json": IngestResponse}),
                         207: ("Some accepted; the others in `errors`", {"application/json": IngestResponse}),
                         204: ("DNT: 1 — validated, nothing stored", {}),
                         **error_responses(400, 401, 403, 413, 415, 429, 503)}, scope=WRITE),
        Route("GET", "/v1/communications", list_communications, "Communication rows, newest first",
              tags=("communications",),
              params=tuple(Param(k, f"only rows whose {k} equals this") for k in COMM_FILTERS) + tenant_param + (
                  Param("start_time", "from (inclusive)"), Param("end_time", "until (exclusive)")) + PAGE_PARAMS,
              responses={**rows_ok, **error_responses(400, 401, 403)}, scope=READ),
    ]
    for name, view in VIEW_NAMES.items():
        params = tenant_param + ((Param("start_time", "from (default: 1 h ago)"), Param("end_time", "until"))
                                 if name == "matrix" else ())
        out.append(Route("GET", f"/v1/communications/{name}", view_handler(name), f"The seed's {view} view",
                         tags=("communications",), params=params, responses={**rows_ok, **error_responses(400, 401, 403)},
                         scope=READ))
    out += [
        Route("GET", "/v1/registry", list_entities, "Registry entities", tags=("registry",),
              params=tuple(Param(k, f"only entities with this {k}") for k in (
                  "entity_type", "current_state", "health_status", "department", "parent_entity_id", "namespace"))
              + tenant_param, responses={200: ("Entities", {"application/json": {"type": "object"}}),
                                         **error_responses(400, 401, 403)}, scope=READ),
        Route("POST", "/v1/registry", register, "Register an entity (upsert on entity_id + entity_type)",
              tags=("registry",), request_body={"application/json": {"type": "object"}},
              responses={201: ("Registered", {"application/json": {"type": "object"}}),
                         200: ("Updated", {"application/json": {"type": "object"}}),
                         **error_responses(400, 401, 403)}, scope=WRITE),
        Route("GET", "/v1/registry/state", entity_state, "The seed's system_entity_state view", tags=("registry",),
              params=tenant_param, responses={**rows_ok, **error_responses(401, 403)}, scope=READ),
        Route("GET", "/v1/registry/hierarchy", hierarchy, "The seed's entity_hierarchy view", tags=("registry",),
              params=tenant_param, responses={**rows_ok, **error_responses(401, 403)}, scope=READ),
        Route("GET", "/v1/registry/gaps", gaps, "check_registration_gaps(): missing teams / MCP servers, stale entries",
              tags=("registry",), params=tenant_param, responses={**rows_ok, **error_responses(401, 403)}, scope=READ),
        Route("GET", "/v1/registry/transitions", log_handler("transitions"), "registry_state_transitions, newest first",
              tags=("registry",), params=(Param("entity_id", "one entity"), Param("entity_type", "one type"),
                                          Param("limit", "1 to 10000")) + tenant_param,
              responses={**rows_ok, **error_responses(400, 401, 403)}, scope=READ),
        Route("GET", "/v1/registry/audit", log_handler("audit"), "registration_audit, newest first", tags=("registry",),
              params=(Param("entity_id", "one entity"), Param("entity_type", "one type"),
                      Param("action", "registered, updated, deregistered"), Param("limit", "1 to 10000")) + tenant_param,
              responses={**rows_ok, **error_responses(400, 401, 403)}, scope=READ),
        Route("GET", "/v1/registry/{entity_type}/{entity_id}", get_entity, "One entity", tags=("registry",),
              params=entity_params + tenant_param,
              responses={200: ("The entity", {"application/json": {"type": "object"}}),
                         **error_responses(400, 401, 403, 404)}, scope=READ),
        Route("DELETE", "/v1/registry/{entity_type}/{entity_id}", delete_entity, "Deregister an entity",
              tags=("registry",), params=entity_params + tenant_param,
              responses={204: ("Deregistered", {}), **error_responses(400, 401, 403, 404)}, scope=WRITE),
        Route("POST", "/v1/registry/{entity_type}/{entity_id}/state", set_state,
              "update_entity_state: {state, health_status?, updated_by?, reason?}", tags=("registry",),
              params=entity_params + tenant_param, request_body={"application/json": {"type": "object"}},
              responses={200: ("The entity", {"application/json": {"type": "object"}}),
                         **error_responses(400, 401, 403, 404)}, scope=WRITE),
        Route("POST", "/v1/registry/{entity_type}/{entity_id}/activity", activity,
              "record_entity_activity: {is_error?}", tags=("registry",), params=entity_params + tenant_param,
              request_body={"application/json": {"type": "object"}},
              responses={200: ("The entity", {"application/json": {"type": "object"}}),
                         **error_responses(400, 401, 403, 404)}, scope=WRITE),
        Route("POST", "/v1/webhooks/n8n", n8n, "n8n workflow events: workflow.created|updated|deleted|executed",
              tags=("registry",), params=tenant_param, request_body={"application/json": {"type": "object"}},
              responses={200: ("{status, action}", {"application/json": {"type": "object"}}),
                         **error_responses(400, 401, 403)}, scope=WRITE),
    ]
    return out


async def n8n_event(app: "TeaApp", tenant: str, event: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The seed's ``N8NWebhookHandler.handle_workflow_event``: created/updated register the workflow
    (capabilities from its node types), deleted → state ``deleted`` with health ``none``, executed →
    activity, and a failed execution → health ``degraded`` (a successful one → ``healthy``)."""
    registry: Registry = app.registry
    kind = event.get("event")
    workflow = event.get("workflow")
    if not isinstance(workflow, dict) or not isinstance(workflow.get("id"), (str, int)) or workflow.get("id") == "":
        return {"status": "error", "action": None, "error": "`workflow.id` is required"}, 400
    workflow_id = str(workflow["id"])
    name = workflow.get("name") if isinstance(workflow.get("name"), str) and workflow.get("name") else workflow_id
    if kind in ("workflow.created", "workflow.updated"):
        nodes = workflow.get("nodes") if isinstance(workflow.get("nodes"), list) else []
        capabilities = sorted({str(n["type"]) for n in nodes if isinstance(n, dict) and n.get("type")})
        tags = [str(t.get("name", t)) if isinstance(t, dict) else str(t) for t in workflow.get("tags") or []
                if isinstance(workflow.get("tags"), list)]
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
    return {"status": "error", "action": None,
            "error": "`event` must be workflow.created, workflow.updated, workflow.deleted or workflow.executed"}, 400
