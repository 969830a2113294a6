"""``/v1/registry``: the seed's unified registry of teams, agents, MCP servers and n8n workflows."""
from __future__ import annotations

from typing import Callable

from tea.auth.gate import principal_of, write_tenant
from tea.auth.principal import READ, WRITE
from tea.comms import views
from tea.comms.registry import ENTITY_TYPES, Registry, check_text, check_type, render
from tea.errors import BadRequest, NotFound
from tea.http import Request, Response, Route
from tea.http.body import json_object
from tea.http.params import choice, text, whole
from tea.http.response import JSON, empty_response, encode_json
from tea.http.schemas import error_responses
from tea.query.readers import Readers
from tea.query.spec import Tenant
from tea.settings import Settings
from tea.types import EventFilter

ENTITY_FILTERS = ("entity_type", "current_state", "health_status", "department", "parent_entity_id", "namespace")


class EntitiesParams(Tenant):
    entity_type: text("only entities of this type") | None = None  # type: ignore[valid-type]
    current_state: text("only entities in this state") | None = None  # type: ignore[valid-type]
    health_status: text("only entities of this health") | None = None  # type: ignore[valid-type]
    department: text("only entities of this department") | None = None  # type: ignore[valid-type]
    parent_entity_id: text("only children of this entity") | None = None  # type: ignore[valid-type]
    namespace: text("only entities of this namespace") | None = None  # type: ignore[valid-type]


class EntityRef(Tenant, kw_only=True):
    PATH = frozenset({"entity_type", "entity_id"})
    entity_type: choice(f"one of {', '.join(ENTITY_TYPES)}", ENTITY_TYPES)  # type: ignore[valid-type]
    entity_id: text("the entity's id")  # type: ignore[valid-type]


class TransitionsParams(Tenant):
    entity_id: text("one entity") | None = None  # type: ignore[valid-type]
    entity_type: text("one type") | None = None  # type: ignore[valid-type]
    limit: whole("1 to 10000 (default 100)", 1, 10000) = 100  # type: ignore[valid-type]


class AuditParams(TransitionsParams):
    action: text("registered, updated, deregistered") | None = None  # type: ignore[valid-type]


def routes(settings: Settings, clock: Callable[[], int], readers: Readers, registry: Registry) -> list[Route]:
    def reads(request: Request) -> Registry:
        """The registry as this request may read it (scoped storage: the caller's tenant only)."""
        return Registry(readers.of(request), clock)

    def tenant_of(request: Request, asked: str | None) -> str:
        return write_tenant(principal_of(request), asked, settings.default_tenant)

    def missing(p: EntityRef) -> NotFound:
        return NotFound(f"no {p.entity_type} {p.entity_id!r} in the registry", code="entity_not_found")

    async def entity_response(tenant: str, p: EntityRef) -> Response:
        entity = await registry.get(tenant, p.entity_id, p.entity_type)
        return Response(encode_json(render(entity)), 200, JSON)  # type: ignore[arg-type]

    async def register(request: Request, p: Tenant) -> Response:
        body = json_object(await request.body(settings.max_body_bytes))
        tenant = tenant_of(request, body.pop("tenant_id", None) or p.tenant_id)
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
            tenant, entity_id, entity_type, name, by, body.get("metadata"),  # type: ignore[arg-type]
            body.get("capabilities"),
            body.get("endpoint_url"), body.get("parent_entity_id"),
            **{k: body.get(k) for k in ("display_name", "registration_source", "namespace", "deployment_type",
                                        "tags", "version", "department")})
        return Response(encode_json(render(entity)), 201 if created else 200, JSON)

    async def list_entities(request: Request, p: EntitiesParams) -> Response:
        wanted = {k: getattr(p, k) for k in ENTITY_FILTERS if getattr(p, k) is not None}
        found = [e for e in await reads(request).entities((p.tenant_id,) if p.tenant_id else None)
                 if all(e.get(k) == v for k, v in wanted.items())]
        found.sort(key=lambda e: (e["tenant_id"], e["entity_type"], e["entity_id"]))
        return Response(encode_json({"entities": [render(e) for e in found]}), 200, JSON)

    async def get_entity(request: Request, p: EntityRef) -> Response:
        entity = await reads(request).get(tenant_of(request, p.tenant_id), p.entity_id, p.entity_type)
        if entity is None:
            raise missing(p)
        return Response(encode_json(render(entity)), 200, JSON)

    async def delete_entity(request: Request, p: EntityRef) -> Response:
        principal = principal_of(request)
        if not await registry.delete(tenant_of(request, p.tenant_id), p.entity_id, p.entity_type,
                                     principal.user_id or principal.token_id or "api"):
            raise missing(p)
        return empty_response(204)

    async def set_state(request: Request, p: EntityRef) -> Response:
        body = json_object(await request.body(settings.max_body_bytes))
        state = check_text("current_state", body.get("state"), "state", required=True)
        health = check_text("health_status", body.get("health_status"))
        principal = principal_of(request)
        by = check_text("registered_by", body.get("updated_by")) or principal.user_id or principal.token_id or "system"
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise BadRequest("`reason` must be a string", code="invalid_field", details={"field": "reason"})
        where = tenant_of(request, p.tenant_id)
        if not await registry.update_entity_state(where, p.entity_id, p.entity_type, state,  # type: ignore[arg-type]
                                                  health, by, reason):
            raise missing(p)
        return await entity_response(where, p)

    async def activity(request: Request, p: EntityRef) -> Response:
        raw = await request.body(settings.max_body_bytes)
        body = json_object(raw) if raw.strip() else {}
        is_error = body.get("is_error", False)
        if not isinstance(is_error, bool):
            raise BadRequest("`is_error` must be true or false", code="invalid_field", details={"field": "is_error"})
        where = tenant_of(request, p.tenant_id)
        if await registry.get(where, p.entity_id, p.entity_type) is None:
            raise missing(p)
        await registry.record_entity_activity(where, p.entity_id, p.entity_type, is_error)
        return await entity_response(where, p)

    async def entity_state(request: Request, p: Tenant) -> Response:
        entities = await reads(request).entities((p.tenant_id,) if p.tenant_id else None)
        return Response(encode_json({"view": "system_entity_state",
                                     "rows": registry.entity_state(entities, clock())}), 200, JSON)

    async def hierarchy(request: Request, p: Tenant) -> Response:
        entities = await reads(request).entities((tenant_of(request, p.tenant_id),))
        return Response(encode_json({"view": "entity_hierarchy", "rows": registry.hierarchy(entities)}), 200, JSON)

    async def gaps(request: Request, p: Tenant) -> Response:
        where = tenant_of(request, p.tenant_id)
        reader = readers.of(request)
        entities = await Registry(reader, clock).entities((where,))
        seen = await views.endpoints(reader, EventFilter(tenant_ids=(where,)))
        return Response(encode_json({"rows": registry.gaps(entities, seen, clock())}), 200, JSON)

    def log_handler(which: str):  # type: ignore[no-untyped-def]
        async def handler(request: Request, p: TransitionsParams) -> Response:
            names = ("entity_id", "entity_type") + (("action",) if which == "audit" else ())
            filters = {k: getattr(p, k) for k in names if getattr(p, k) is not None}
            fetch = reads(request).audit if which == "audit" else reads(request).transitions
            rows = await fetch((p.tenant_id,) if p.tenant_id else None, filters, p.limit)
            return Response(encode_json({"rows": rows}), 200, JSON)
        return handler

    rows_ok = {200: ("Rows", {"application/json": {"type": "object"}})}
    entity_ok = {200: ("The entity", {"application/json": {"type": "object"}})}
    return [
        Route("GET", "/v1/registry", list_entities, "Registry entities", tags=("registry",), query=EntitiesParams,
              responses={200: ("Entities", {"application/json": {"type": "object"}}),
                         **error_responses(400, 401, 403)}, scope=READ, consistency="derived"),
        Route("POST", "/v1/registry", register, "Register an entity (upsert on entity_id + entity_type)",
              tags=("registry",), query=Tenant, request_body={"application/json": {"type": "object"}},
              responses={201: ("Registered", {"application/json": {"type": "object"}}),
                         200: ("Updated", {"application/json": {"type": "object"}}),
                         **error_responses(400, 401, 403)}, scope=WRITE),
        Route("GET", "/v1/registry/state", entity_state, "The seed's system_entity_state view", tags=("registry",),
              query=Tenant, responses={**rows_ok, **error_responses(400, 401, 403)}, scope=READ, consistency="derived"),
        Route("GET", "/v1/registry/hierarchy", hierarchy, "The seed's entity_hierarchy view", tags=("registry",),
              query=Tenant, responses={**rows_ok, **error_responses(400, 401, 403)}, scope=READ, consistency="derived"),
        Route("GET", "/v1/registry/gaps", gaps, "check_registration_gaps(): missing teams / MCP servers, stale entries",
              tags=("registry",), query=Tenant, responses={**rows_ok, **error_responses(400, 401, 403)},
              scope=READ, consistency="derived"),
        Route("GET", "/v1/registry/transitions", log_handler("transitions"), "registry_state_transitions, newest first",
              tags=("registry",), query=TransitionsParams, responses={**rows_ok, **error_responses(400, 401, 403)},
              scope=READ, consistency="derived"),
        Route("GET", "/v1/registry/audit", log_handler("audit"), "registration_audit, newest first", tags=("registry",),
              query=AuditParams, responses={**rows_ok, **error_responses(400, 401, 403)}, scope=READ,
              consistency="derived"),
        Route("GET", "/v1/registry/{entity_type}/{entity_id}", get_entity, "One entity", tags=("registry",),
              query=EntityRef, responses={**entity_ok, **error_responses(400, 401, 403, 404)}, scope=READ,
              consistency="derived"),
        Route("DELETE", "/v1/registry/{entity_type}/{entity_id}", delete_entity, "Deregister an entity",
              tags=("registry",), query=EntityRef,
              responses={204: ("Deregistered", {}), **error_responses(400, 401, 403, 404)}, scope=WRITE),
        Route("POST", "/v1/registry/{entity_type}/{entity_id}/state", set_state,
              "update_entity_state: {state, health_status?, updated_by?, reason?}", tags=("registry",),
              query=EntityRef, request_body={"application/json": {"type": "object"}},
              responses={**entity_ok, **error_responses(400, 401, 403, 404)}, scope=WRITE),
        Route("POST", "/v1/registry/{entity_type}/{entity_id}/activity", activity,
              "record_entity_activity: {is_error?}", tags=("registry",), query=EntityRef,
              request_body={"application/json": {"type": "object"}},
              responses={**entity_ok, **error_responses(400, 401, 403, 404)}, scope=WRITE),
    ]
