"""PostgREST-compatible ``/rest/v1``: the unmodified ElfAutomations client (supabase-py) writes here.

* ``POST /rest/v1/communication_telemetry`` — one row or an array; all-or-nothing, as one SQL INSERT:
  a bad row answers 400 in PostgREST's error shape (``code`` the SQLSTATE PostgreSQL would give,
  ``details`` naming the row index and column) and nothing is stored. ``Prefer: return=representation``
  → 201 with the stored rows, ``return=minimal`` (or none) → 201 empty, ``return=headers-only`` → 201
  with ``Location``. The ``columns`` parameter supabase-py adds to array inserts is honoured. A
  client-given ``id`` already recorded is 409 ``23505`` (``Prefer: resolution=ignore-duplicates``
  skips it; ``merge-duplicates`` would change an event: 42501).
* ``POST``/``PATCH``/``DELETE /rest/v1/{table}`` for the registry's tables, upserts included, and
  PostgreSQL's refusal (42501) of changes to append-only tables and views: ``tea.comms.pgwrite``.
* ``POST /rest/v1/rpc/{function}`` — the seed's SQL functions with their ``p_*`` named arguments and
  return values; a function whose argument set does not match answers 404 ``PGRST202`` (as PostgREST
  does when no function has that name and those arguments). VOID functions answer 204, as PostgREST
  ≥ 11 does (supabase-py reads it as ``data == []``). ``GET`` works for ``check_registration_gaps``.
* ``GET /rest/v1/{relation}`` — the tables and views with PostgREST's basic query language:
  ``col=[not.]op.value`` (eq neq gt gte lt lte like ilike in is), ``select``, ``order``, ``limit``,
  ``offset`` (``tea.comms.pgquery``); ``Content-Range`` on every answer, the total with ``Prefer: count=exact``; ``Accept:
  application/vnd.pgrst.object+json`` for a single row. Views are filtered in Python (they are small);
  ``communication_telemetry`` pushes equality and time filters down to storage and reads at most
  ``MAX_ROWS`` rows (newest first) per request — the default order is ``timestamp.desc``.

Authentication is TEA's (``apikey`` and/or ``Authorization: Bearer`` with a TEA token or JWT); every
read runs on the request's scoped reader (``Readers.of``), every write names the caller's tenant.
``tenant_id=eq.X`` selects a tenant for admins (and dev mode). Errors — TEA's own too (401, 403,
413, 429, 503) — use PostgREST's shape ``{code, details, hint, message}``.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable

import msgspec

from tea.auth.gate import Gate
from tea.auth.principal import READ, WRITE
from tea.comms import pgregistry, pgwrite, views
from tea.comms.pgcontext import PgRest
from tea.comms.pgquery import (RESERVED, PgError, Query, coerce, apply, as_pg, checked_path, content_range,
                               parse_query, prefer, rows_response)
from tea.comms.pgschema import column_list
from tea.comms.records import COLUMNS, EVENT_TYPE, Communication, decode_items, split_body, to_event, to_row
from tea.comms.registry import ENTITY_COLUMNS, ENTITY_TYPES, LIMITS, Registry, render
from tea.errors import ClientError
from tea.http import Param, Request, Response, Route
from tea.http.response import JSON, encode_json
from tea.pipeline.ingest import Ingestor, Outcome
from tea.query.readers import Readers
from tea.settings import Settings
from tea.types import Decoded, Event, EventFilter, QuerySpec


MAX_ROWS = 10_000  # rows one GET reads from storage (and returns) at most
SOURCE_PROTOCOL = "postgrest"
TABLE = "communication_telemetry"


# ---------------------------------------------------------------- row validation (INSERT semantics)
_SQL_TYPES = {"duration_ms": "integer", "payload_size_bytes": "integer", "tokens_used": "integer",
              "estimated_cost": "numeric", "id": "uuid", "metadata": "json", "capabilities_required": "text[]",
              "timestamp": "timestamp with time zone", "created_at": "timestamp with time zone"}


def row_error(problem: dict[str, Any], relation: str = TABLE) -> PgError:
    """The SQLSTATE PostgreSQL would give for a row ``decode_items`` refused; details name row and column."""
    column, text, index = problem.get("field"), problem["message"], problem["index"]
    where = f"row {index}" + (f", column {column}" if column else "") + f": {text}"
    if problem["error"] == "invalid_json" or column is None:
        return PgError(400, "PGRST102", "Empty or invalid json", where)
    if "unknown field" in text:
        return PgError(400, "PGRST204", f"Could not find the '{column}' column of '{relation}' in the schema cache",
                       where)
    if "missing required field" in text or "got `null`" in text:
        return PgError(400, "23502", f'null value in column "{column}" of relation "{relation}" violates '
                                     "not-null constraint", where)
    if "Invalid enum value" in text or "length >=" in text or re.search(r"`int` [<>]=", text):
        return PgError(400, "23514", f'new row for relation "{relation}" violates check constraint '
                                     f'"{relation}_{column}_check"', where)
    if "length <=" in text:
        limit = re.search(r"<= (\d+)", text)
        return PgError(400, "22001", f"value too long for type character varying({limit.group(1) if limit else ''})",
                       where)
    if column in ("timestamp", "created_at"):
        return PgError(400, "22007", "invalid input syntax for type timestamp with time zone", where)
    return PgError(400, "22P02", f"invalid input syntax for type {_SQL_TYPES.get(column, 'character varying')}",
                   where)


def project(items: list[msgspec.Raw], columns: str | None) -> list[msgspec.Raw]:
    """PostgREST's ``columns=``: only those keys of each object are inserted (missing ones are NULL)."""
    if not columns:
        return items
    names = column_list(columns, TABLE, COLUMNS)
    out = []
    for index, raw in enumerate(items):
        value = msgspec.json.decode(raw)
        if not isinstance(value, dict):
            raise PgError(400, "PGRST102", "Empty or invalid json", f"row {index} is not a JSON object")
        out.append(msgspec.Raw(msgspec.json.encode({k: value[k] for k in names if k in value})))
    return out


async def insert(pg: PgRest, request: Request, items: list[msgspec.Raw], resolution: str | None = None) -> Outcome:
    """All rows or none: decode every row, run the normaliser's checks (time window, validators) on a
    copy, refuse (or, with ``ignore-duplicates``, skip) ids already recorded, and only then hand the
    rows to the one ingestion path."""
    if len(items) > pg.settings.max_batch_events:
        raise PgError(413, "54000", f"more than {pg.settings.max_batch_events} rows in one insert "
                                    f"(max_batch_events)")
    good, indexes, problems = decode_items(items)  # type: ignore[arg-type]
    if problems:
        raise row_error(problems[0])
    principal = request.state.get("principal")
    tenant = pg.write_tenant(request)
    only = principal.tenant_id if principal is not None and not principal.is_admin else None
    normaliser = pg.ingestor.normaliser
    dropped = normaliser.dropped  # a dry run: its drop count is not a drop
    checked, refused, _, _ = normaliser([to_event(c) for c in good], indexes, SOURCE_PROTOCOL, tenant, only)
    normaliser.dropped = dropped
    if refused:
        e = refused[0]
        raise PgError(400, "23514", f'new row for relation "{TABLE}" violates check constraint '
                                    f'"{TABLE}_{e.field or "row"}_check"',
                      f"row {e.index}" + (f", column {e.field}" if e.field else "") + f": {e.message}")
    keep = await pgwrite.fresh_events(pg, request, tenant, checked, [c.id is not None for c in good], resolution)
    if not keep:
        return Outcome([], [], len(items))
    decoded = Decoded([to_event(good[i]) for i in keep], [indexes[i] for i in keep], [], len(items))
    outcome = await pg.ingestor.submit(decoded, SOURCE_PROTOCOL, principal, request.header("dnt") == "1",
                                        tenant_id=tenant)
    pgwrite.remember(pg, tenant, outcome.accepted)
    return outcome


def telemetry_row(e: Event) -> dict[str, Any]:
    return to_row(e, with_tenant=True)


# ---------------------------------------------------------------- relations
TELEMETRY_COLUMNS = (*COLUMNS, "tenant_id")
REGISTRY_COLUMNS = (*ENTITY_COLUMNS, "tenant_id")
TRANSITION_COLUMNS = ("id", "entity_id", "entity_type", "from_state", "to_state", "health_status",
                      "transition_reason", "transitioned_by", "transitioned_at", "metadata", "tenant_id")
AUDIT_COLUMNS = ("id", "entity_id", "entity_type", "action", "action_by", "action_at", "details", "success",
                 "error_message", "tenant_id")
VIEW_COLUMNS = {
    "system_health_overview": ("protocol", "active_sources", "active_targets", "total_requests_5min",
                               "avg_duration_ms", "errors_5min", "error_rate"),
    "communication_patterns": ("source_id", "source_type", "target_id", "target_type", "protocol", "total_calls",
                               "avg_duration_ms", "min_duration_ms", "max_duration_ms", "error_count",
                               "active_days", "last_communication"),
    "top_communication_pairs": ("source", "target", "protocol", "call_count", "avg_duration_ms", "total_tokens",
                                "total_cost"),
    "communication_metrics_realtime": ("minute", "protocol", "source_id", "source_type", "target_id",
                                       "target_type", "request_count", "avg_duration_ms", "p95_duration_ms",
                                       "error_count", "error_rate"),
    "system_entity_state": ("entity_type", "current_state", "health_status", "count", "active_last_5min",
                            "healthy_count", "unhealthy_count"),
    "entity_hierarchy": ("entity_id", "entity_name", "entity_type", "parent_entity_id", "department",
                         "current_state", "health_status", "level", "path"),
}
COMM_VIEWS = {"system_health_overview": views.health, "communication_patterns": views.patterns,
              "top_communication_pairs": views.top_pairs, "communication_metrics_realtime": views.realtime}
COLUMNS_OF = {TABLE: TELEMETRY_COLUMNS, "unified_registry": REGISTRY_COLUMNS,
              "registry_state_transitions": TRANSITION_COLUMNS, "registration_audit": AUDIT_COLUMNS, **VIEW_COLUMNS}
TIME_COLUMNS = frozenset({"timestamp", "created_at", "last_communication", "minute", "registered_at",
                          "state_updated_at", "last_health_check", "last_updated", "last_activity",
                          "transitioned_at", "action_at"})
# communication_telemetry equality filters storage runs itself: column → EventFilter field
PUSHDOWN = {"protocol": "protocol", "source_id": "source", "target_id": "target", "operation": "method",
            "status": "status", "correlation_id": "correlation_id", "id": "event_id"}


def tenant_filter(request: Request, q: Query) -> EventFilter:
    """The tenants ``tenant_id=eq.X`` / ``in.(...)`` name (None: no such condition); the reader narrows
    them to the caller's and answers 403 for another's tenant."""
    asked: tuple[str, ...] | None = None
    for c in q.conditions:
        if c.column == "tenant_id" and not c.negate and c.op in ("eq", "in"):
            wanted = (c.value,) if c.op == "eq" else tuple(c.value)
            asked = wanted if asked is None else tuple(t for t in asked if t in wanted)
    return EventFilter(tenant_ids=asked)


def one_tenant(pg: PgRest, request: Request, q: Query) -> str:
    f = tenant_filter(request, q)
    return pg.write_tenant(request, f.tenant_ids[0] if f.tenant_ids else None)


def pushdown(q: Query, f: EventFilter) -> tuple[EventFilter, bool]:
    """Equality and time filters storage can run; True when it runs every condition (Python needn't)."""
    fields: dict[str, Any] = {"event_type": EVENT_TYPE}
    complete = True
    for c in q.conditions:
        if c.column == "tenant_id" and c.op in ("eq", "in") and not c.negate:
            continue
        if c.op == "eq" and not c.negate and c.column in PUSHDOWN and PUSHDOWN[c.column] not in fields:
            fields[PUSHDOWN[c.column]] = "ok" if c.value == "success" and c.column == "status" else c.value
            continue
        if c.column == "timestamp" and c.op in ("gt", "gte", "lt", "lte") and not c.negate:
            us = coerce(None, c.value, c.column, True)
            if c.op in ("gt", "gte"):
                start = us + (c.op == "gt")
                fields["start_us"] = max(start, fields.get("start_us", start))
            else:
                end = us + (c.op == "lte")
                fields["end_us"] = min(end, fields.get("end_us", end))
            complete = False  # (storage and Python agree; kept in Python for sub-µs text)
            continue
        complete = False
    return replace(f, **fields), complete


async def relation_rows(pg: PgRest, request: Request, relation: str,
                        q: Query) -> tuple[list[dict[str, Any]], int | None, bool]:
    """The rows a GET reads before filtering in Python: (rows, total if storage counted it, truncated)."""
    reader = pg.readers.of(request)
    registry = Registry(reader, pg.clock)
    f = tenant_filter(request, q)
    if relation == TABLE:
        f, complete = pushdown(q, f)
        in_order = not q.order or q.order[0][:2] == ("timestamp", True)
        wanted = q.offset + q.limit if complete and in_order and q.limit is not None else MAX_ROWS
        result = await reader.query_events(QuerySpec(f, min(wanted, MAX_ROWS), with_total=True))
        rows = [telemetry_row(e) for e in result.events]
        return rows, result.total_count if complete else None, result.has_more and wanted >= MAX_ROWS
    if relation in COMM_VIEWS:
        return await COMM_VIEWS[relation](reader, f, pg.clock()), None, False
    if relation == "system_entity_state":
        return registry.entity_state(await registry.entities(f.tenant_ids), pg.clock()), None, False
    if relation == "entity_hierarchy":
        return registry.hierarchy(await registry.entities((one_tenant(pg, request, q),))), None, False
    if relation == "unified_registry":
        return [render(e) for e in await registry.entities(f.tenant_ids)], None, False
    equal = {c.column: c.value for c in q.conditions
             if c.op == "eq" and not c.negate and c.column in ("entity_id", "entity_type", "action")}
    fetch = registry.transitions if relation == "registry_state_transitions" else registry.audit
    rows = await fetch(f.tenant_ids, equal, MAX_ROWS + 1)
    return rows[:MAX_ROWS], None, len(rows) > MAX_ROWS



# ---------------------------------------------------------------- functions
@dataclass(frozen=True)
class Arg:
    name: str
    kind: str  # text, int, bool, json, text[]
    required: bool = True
    default: Any = None
    column: str | None = None  # a NOT NULL column it fills (NULL → 23502)


def _text_limit(name: str, value: str) -> None:
    limit = LIMITS.get(name.removeprefix("p_").replace("new_state", "current_state").replace("updated_by",
                                                                                              "registered_by"))
    if limit is not None and len(value) > limit:
        raise PgError(400, "22001", f"value too long for type character varying({limit})", f"argument {name}")


def check_arg(arg: Arg, value: Any) -> Any:
    if value is None:
        if arg.column:
            raise PgError(400, "23502", f'null value in column "{arg.column}" violates not-null constraint',
                          f"argument {arg.name} is null")
        return None
    bad = PgError(400, "22P02", f"invalid input syntax for type {arg.kind}: {msgspec.json.encode(value).decode()}",
                  f"argument {arg.name}")
    if arg.kind == "text":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise bad
        _text_limit(arg.name, value)
    elif arg.kind == "int":
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad
    elif arg.kind == "bool":
        if isinstance(value, str) and value.lower() in ("true", "false", "t", "f"):
            value = value.lower() in ("true", "t")
        if not isinstance(value, bool):
            raise bad
    elif arg.kind == "json" and not isinstance(value, dict):
        raise bad
    elif arg.kind == "text[]" and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        raise PgError(400, "22P02", "malformed array literal", f"argument {arg.name} must be an array of strings")
    return value


def _t(name: str, column: str | None = None, required: bool = True, default: Any = None, kind: str = "text") -> Arg:
    return Arg(name, kind, required, default, column)


SIGNATURES: dict[str, tuple[Arg, ...]] = {
    "register_entity": (_t("p_entity_id", "entity_id"), _t("p_entity_type", "entity_type"),
                        _t("p_entity_name", "entity_name"), _t("p_registered_by", "registered_by"),
                        _t("p_metadata", None, False, None, "json"), _t("p_capabilities", None, False, None, "text[]"),
                        _t("p_endpoint_url", None, False), _t("p_parent_entity_id", None, False)),
    "update_entity_state": (_t("p_entity_id"), _t("p_entity_type"), _t("p_new_state", "current_state"),
                            _t("p_health_status", None, False), _t("p_updated_by", "transitioned_by", False, "system"),
                            _t("p_reason", None, False)),
    "record_entity_activity": (_t("p_entity_id"), _t("p_entity_type"),
                               _t("p_is_error", None, False, False, "bool")),
    "record_telemetry": (_t("p_protocol"), _t("p_source_id"), _t("p_source_type"), _t("p_target_id"),
                         _t("p_target_type"), _t("p_operation"), _t("p_status"),
                         _t("p_duration_ms", None, False, None, "int"), _t("p_metadata", None, False, None, "json")),
    "record_a2a_telemetry": (_t("p_source_team"), _t("p_target_team"), _t("p_task_description"), _t("p_status"),
                             _t("p_duration_ms", kind="int"), _t("p_correlation_id", None, False)),
    "record_mcp_telemetry": (_t("p_source_id"), _t("p_mcp_name"), _t("p_tool_name"), _t("p_status"),
                             _t("p_duration_ms", kind="int"), _t("p_tokens_used", None, False, None, "int"),
                             _t("p_correlation_id", None, False)),
    "check_registration_gaps": (),
}
READ_ONLY = {"check_registration_gaps"}
GAP_COLUMNS = ("gap_type", "entity_identifier", "details")


def bind(function: str, given: dict[str, Any]) -> dict[str, Any]:
    """The arguments by name, checked; PGRST202 (404) when no function has this name and argument set."""
    signature = SIGNATURES.get(function)
    names = {a.name for a in signature} if signature is not None else set()
    missing = [a.name for a in signature or () if a.required and a.name not in given]
    if signature is None or missing or set(given) - names:
        listed = ", ".join(sorted(given))
        hint = (f"Perhaps you meant to call the function public.{function}("
                f"{', '.join(a.name for a in signature)})" if signature is not None else None)
        raise PgError(404, "PGRST202", f"Could not find the function public.{function}({listed}) in the schema cache",
                      f"Searched for the function public.{function} with parameters {listed or '(none)'} or with a "
                      "single unnamed json/jsonb parameter, but no matches were found in the schema cache.", hint)
    out = {a.name: check_arg(a, given[a.name]) if a.name in given else a.default for a in signature}
    if "p_entity_type" in out and out["p_entity_type"] not in ENTITY_TYPES:
        raise PgError(400, "23514", 'new row for relation "unified_registry" violates check constraint '
                                    '"unified_registry_entity_type_check"',
                      f"argument p_entity_type: {out['p_entity_type']!r} is not one of {', '.join(ENTITY_TYPES)}")
    return out


def rpc_row(function: str, a: dict[str, Any]) -> dict[str, Any]:
    """The communication_telemetry row a record_* function inserts."""
    if function == "record_telemetry":
        return {"id": str(uuid.uuid4()), "protocol": a["p_protocol"], "source_id": a["p_source_id"],
                "source_type": a["p_source_type"], "target_id": a["p_target_id"], "target_type": a["p_target_type"],
                "operation": a["p_operation"], "status": a["p_status"], "duration_ms": a["p_duration_ms"],
                "metadata": a["p_metadata"] if a["p_metadata"] is not None else {}}
    if function == "record_a2a_telemetry":
        return {"protocol": "a2a", "source_id": a["p_source_team"], "source_type": "team",
                "target_id": a["p_target_team"], "target_type": "team", "operation": "send_task",
                "task_description": a["p_task_description"], "status": a["p_status"],
                "duration_ms": a["p_duration_ms"], "correlation_id": a["p_correlation_id"]}
    return {"protocol": "mcp", "source_id": a["p_source_id"], "source_type": "team", "target_id": a["p_mcp_name"],
            "target_type": "mcp", "operation": "tool_call", "tool_name": a["p_tool_name"], "status": a["p_status"],
            "duration_ms": a["p_duration_ms"], "tokens_used": a["p_tokens_used"],
            "correlation_id": a["p_correlation_id"]}


# ---------------------------------------------------------------- routes
def guarded(pg: PgRest, scope: str,
            handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Authenticate here rather than in the router, so that even a 401 comes in PostgREST's shape."""
    async def run(request: Request) -> Response:
        try:
            await pg.gate.admit(request, scope)
            return await handler(request)
        except ClientError as exc:
            raise as_pg(exc) from None
    return run


PG_ERROR = {"type": "object", "properties": {"code": {"type": "string"}, "details": {},
                                             "hint": {"type": ["string", "null"]}, "message": {"type": "string"}}}


def pg_errors(*statuses: int) -> dict[int, tuple[str, dict[str, Any]]]:
    return {s: ("PostgREST error {code, details, hint, message}", {"application/json": PG_ERROR}) for s in statuses}


def routes(settings: Settings, clock: Callable[[], int], readers: Readers, registry: Registry, ingestor: Ingestor,
           gate: Gate) -> list[Route]:
    pg = PgRest(settings, clock, readers, registry, ingestor, gate)

    async def post_table(request: Request) -> Response:
        relation = known(request)
        if request.media_type not in ("", "application/json") and not request.media_type.endswith("+json"):
            raise PgError(415, "PGRST107", f"Content-Type not acceptable: {request.media_type}")
        if relation != TABLE:
            return await post_other(request, relation)
        prefs = pgwrite.Preferences.of(request)
        pgwrite.conflict_target(request, TABLE, TELEMETRY_COLUMNS)
        if prefs.resolution == "merge-duplicates":
            raise pgwrite.denied(TABLE)
        body = await request.body(pg.settings.max_body_bytes)
        try:
            items = split_body(body, pg.settings.max_batch_events) if body.strip() else None
        except (msgspec.DecodeError, RecursionError) as exc:
            raise PgError(400, "PGRST102", "Empty or invalid json", str(exc)) from None
        if items is None:
            raise PgError(400, "PGRST102", "Empty or invalid json", "the body is empty")
        q = parse_query(request.query, TABLE, TELEMETRY_COLUMNS, skip=frozenset(request.query))
        items = project(items, request.param("columns"))
        outcome = await insert(pg, request, items, prefs.resolution) if items else Outcome([], [], 0)
        rows = [telemetry_row(e) for e in outcome.accepted]
        response = pgwrite.answer(request, prefs, rows, q, "insert", TIME_COLUMNS)
        if prefs.returning == "headers-only" and len(rows) == 1:
            response.headers["location"] = f"/{TABLE}?id=eq.{rows[0]['id']}"  # type: ignore[index]
        return response

    async def post_other(request: Request, relation: str) -> Response:
        """An insert (or upsert) into a registry table; the views take none."""
        if relation not in pgregistry.RECORD_KINDS and relation != pgregistry.REGISTRY:
            raise pgwrite.denied(relation, VIEW_COLUMNS)
        prefs = pgwrite.Preferences.of(request)
        columns = COLUMNS_OF[relation]
        target = pgwrite.conflict_target(request, relation, columns)
        q = parse_query(request.query, relation, columns, skip=frozenset(request.query))
        objects = pgwrite.json_objects(await request.body(pg.settings.max_body_bytes), pg.settings.max_batch_events)
        objects = pgwrite.only_columns(objects, request.param("columns"), relation, columns)
        if relation != pgregistry.REGISTRY:
            rows = await pgregistry.append(pg, request, relation, objects, prefs.resolution)
            return pgwrite.answer(request, prefs, rows, q, "insert", TIME_COLUMNS)
        rows, inserted = await pgregistry.upsert(pg, request, objects, target, prefs.resolution)
        status = 200 if inserted == 0 and prefs.resolution == "merge-duplicates" else 201
        return pgwrite.answer(request, prefs, rows, q, "insert", TIME_COLUMNS, status)

    async def change_table(request: Request) -> Response:
        """PATCH and DELETE: the registry's entities; every other relation refuses (42501)."""
        relation = known(request)
        verb = "UPDATE" if request.method == "PATCH" else "DELETE"
        q = pgwrite.filters(request, relation, COLUMNS_OF[relation], verb)
        given = pgwrite.json_objects(await request.body(pg.settings.max_body_bytes), 1, one=True)[0] \
            if verb == "UPDATE" else {}
        if relation != pgregistry.REGISTRY:
            raise pgwrite.denied(relation, VIEW_COLUMNS)
        tenants = tenant_filter(request, q).tenant_ids
        rows = await pgregistry.update(pg, request, q, given, tenants, TIME_COLUMNS) if verb == "UPDATE" else \
            await pgregistry.delete(pg, request, q, tenants, TIME_COLUMNS)
        return pgwrite.answer(request, pgwrite.Preferences.of(request), rows, q, verb.lower(), TIME_COLUMNS)

    async def not_served(request: Request) -> Response:
        if request.path.startswith("/rest/v1/rpc/"):
            raise PgError(405, "PGRST101", f"Cannot use the {request.method} method on RPC")
        known(request)
        raise PgError(400, "PGRST127", "Feature not implemented",
                      "PUT (an upsert of one row by its primary key) is not served by TEA",
                      "POST the row with Prefer: resolution=merge-duplicates")

    def known(request: Request) -> str:
        relation = checked_path(request, "relation")
        if relation not in COLUMNS_OF:
            raise unknown_relation(relation)
        return relation

    async def get_table(request: Request) -> Response:
        relation = checked_path(request, "relation")
        columns = COLUMNS_OF.get(relation)
        if columns is None:
            raise unknown_relation(relation)
        q = parse_query(request.query, relation, columns)
        if q.limit is not None and q.limit > MAX_ROWS:
            q = replace(q, limit=MAX_ROWS)
        rows, total, truncated = await relation_rows(pg, request, relation, q)
        if total is not None:  # storage ran every filter: page the rows it gave
            page, _ = apply(rows, replace(q, conditions=(), offset=0, limit=None), TIME_COLUMNS)
            page = page[q.offset:q.offset + q.limit] if q.limit is not None else page[q.offset:]
        else:
            page, total = apply(rows, q, TIME_COLUMNS)
        if q.limit is None and len(page) > MAX_ROWS:
            page = page[:MAX_ROWS]
        headers = {"content-range": content_range(q.offset, len(page), total if "count" in prefer(request) else None)}
        if truncated:
            headers["x-tea-truncated"] = f"read the newest {MAX_ROWS} rows only"
        return rows_response(request, page, 200, headers)

    async def call(request: Request) -> Response:
        function = checked_path(request, "function")
        if request.method == "GET":
            q_args = {k: v[-1] for k, v in request.query.items()
                      if k not in RESERVED and any(a.name == k for a in SIGNATURES.get(function, ()))}
            given: dict[str, Any] = q_args
            if function in SIGNATURES and function not in READ_ONLY:
                raise PgError(405, "25006", f"cannot execute {function} in a read-only transaction",
                              "call it with POST")
        else:
            body = await request.body(pg.settings.max_body_bytes)
            try:
                given = msgspec.json.decode(body) if body.strip() else {}
            except (msgspec.DecodeError, RecursionError) as exc:
                raise PgError(400, "PGRST102", "Empty or invalid json", str(exc)) from None
            if not isinstance(given, dict):
                raise PgError(400, "PGRST102", "Empty or invalid json", "the arguments must be a JSON object")
        a = bind(function, given)
        if function == "check_registration_gaps":
            q = parse_query(request.query, function, GAP_COLUMNS, skip=frozenset(given))
            tenant = one_tenant(pg, request, q)
            reader = pg.readers.of(request)
            entities = await Registry(reader, pg.clock).entities((tenant,))
            seen = await views.endpoints(reader, EventFilter(tenant_ids=(tenant,)))
            rows, total = apply(registry.gaps(entities, seen, pg.clock()), q, TIME_COLUMNS)
            return rows_response(request, rows, 200, {"content-range": content_range(q.offset, len(rows), None)})
        tenant = pg.write_tenant(request)
        if function == "register_entity":
            entity_id = await registry.register_entity(tenant, *(a[x.name] for x in SIGNATURES[function]))
            return Response(encode_json(entity_id), 200, JSON)
        if function == "update_entity_state":
            found = await registry.update_entity_state(tenant, *(a[x.name] for x in SIGNATURES[function]))
            return Response(encode_json(found), 200, JSON)
        if function == "record_entity_activity":
            await registry.record_entity_activity(tenant, a["p_entity_id"], a["p_entity_type"],
                                                  bool(a["p_is_error"]))
            return Response(b"", 204, None)
        row = rpc_row(function, a)
        await insert(pg, request, [msgspec.Raw(msgspec.json.encode(row))])
        if function == "record_telemetry":
            return Response(encode_json(row["id"]), 200, JSON)
        return Response(b"", 204, None)

    relation_param = Param("relation", f"{TABLE}, a view of the seed or a registry table", location="path",
                           required=True)
    function_param = Param("function", ", ".join(SIGNATURES), location="path", required=True)
    query_params = (Param("select", "columns, comma-separated (* = all)"),
                    Param("order", "col.asc|desc[.nullsfirst|nullslast], comma-separated"),
                    Param("limit", f"rows (at most {MAX_ROWS})", {"type": "integer", "minimum": 0}),
                    Param("offset", "rows to skip", {"type": "integer", "minimum": 0}))
    rows_ok = {"application/json": {"type": "array", "items": {"type": "object"}}}
    return [
        Route("POST", "/rest/v1/{relation}", guarded(pg, WRITE, post_table),
              "PostgREST insert (or upsert, Prefer: resolution=…) of one row or an array, all or nothing",
              tags=("postgrest",),
              params=(relation_param, Param("columns", "only these keys of each object are inserted"),
                      Param("select", "columns of the returned rows")),
              request_body={"application/json": Communication | list[Communication]},
              responses={201: ("Inserted (rows with Prefer: return=representation)", rows_ok),
                         200: ("A merge-duplicates upsert that inserted nothing", rows_ok),
                         **pg_errors(400, 401, 403, 404, 409, 413, 415, 429, 503)}, scope=None),
        *(Route(method, "/rest/v1/{relation}", guarded(pg, WRITE, change_table),
                f"PostgREST {'update' if method == 'PATCH' else 'delete'} of the rows the filters select "
                "(unified_registry; 42501 elsewhere)", tags=("postgrest",), params=(relation_param, *query_params),
                request_body={"application/json": {"type": "object"}} if method == "PATCH" else None,
                responses={200: ("The rows (Prefer: return=representation)", rows_ok), 204: ("Done", {}),
                           **pg_errors(400, 401, 403, 404, 409, 429)}, scope=None) for method in ("PATCH", "DELETE")),
        *(Route(method, path, guarded(pg, WRITE, not_served), "Not served by TEA (PostgREST's error)",
                tags=("postgrest",), include_in_schema=False, scope=None)
          for method, path in (("PUT", "/rest/v1/{relation}"), ("PATCH", "/rest/v1/rpc/{function}"),
                               ("PUT", "/rest/v1/rpc/{function}"), ("DELETE", "/rest/v1/rpc/{function}"))),
        Route("GET", "/rest/v1/{relation}", guarded(pg, READ, get_table),
              "PostgREST read of a table or view with col=op.value filters", tags=("postgrest",),
              params=(relation_param, *query_params),
              responses={200: ("Rows (Content-Range header)", rows_ok), **pg_errors(400, 401, 403, 404, 406)},
              scope=None, consistency="derived"),
        Route("POST", "/rest/v1/rpc/{function}", guarded(pg, WRITE, call),
              "PostgREST call of the seed's SQL functions with p_* named arguments", tags=("postgrest",),
              params=(function_param,), request_body={"application/json": {"type": "object"}},
              responses={200: ("The function's value", {"application/json": {}}),
                         204: ("VOID function done", {}), **pg_errors(400, 401, 403, 404, 413, 429, 503)},
              scope=None),
        Route("GET", "/rest/v1/rpc/{function}", guarded(pg, READ, call),
              "PostgREST call of a read-only function (check_registration_gaps)", tags=("postgrest",),
              params=(function_param, *query_params),
              responses={200: ("The function's rows", rows_ok), **pg_errors(400, 401, 403, 404, 405)}, scope=None,
              consistency="derived"),
    ]


def unknown_relation(relation: str) -> PgError:
    return PgError(404, "PGRST205", f"Could not find the table 'public.{relation}' in the schema cache",
                   None, f"TEA serves {', '.join(COLUMNS_OF)}")
