"""The unified registry (CONTRACTS.md 1.5.2): entities, their state transitions and a registration audit.

Entities are storage documents (kind ``registry``, key ``"{entity_type}/{entity_id}"``, one set per
tenant), transitions and audit rows are storage records; the seed's SQL functions are methods here
with the same arguments, effects and return values:

* ``register_entity`` upserts on (entity_id, entity_type): an update overwrites ``entity_name`` and
  ``metadata``, keeps ``capabilities``/``endpoint_url``/``parent_entity_id`` when not given, and
  writes an ``updated`` audit row; an insert starts in state ``registered`` with an audit row
  ``registered`` (``details`` = the metadata). Returns the entity's UUID.
* ``update_entity_state`` returns False for an unknown entity; otherwise sets the state, keeps the
  health when none is given (``last_health_check`` moves only when one is), and writes a transition.
* ``record_entity_activity`` moves ``last_activity`` and counts activity (and errors).

Writes of one process are serialised by a lock (read-modify-write of a document). Counts that come from
the durable log (``apply_logged_activity``) are exactly once: an entity's document also holds, per log,
the position of the last event it counted (``COUNTED``, never shown), written in the same document write
as the counts — an event at or before it is never counted again, whatever replays the log.
"""
from __future__ import annotations

import asyncio
import uuid
import weakref
from typing import Any, Callable, Iterable

from tea.errors import BadRequest
from tea.timeutil import format_us, now_us

KIND = "registry"
TRANSITIONS = "registry_transition"
AUDIT = "registry_audit"
ENTITY_TYPES = ("team", "mcp_server", "mcp_client", "n8n_workflow", "service")
# communication source/target types → the registry type of that entity
COMM_TYPES = {"team": "team", "mcp": "mcp_server", "mcp_server": "mcp_server", "mcp_client": "mcp_client",
              "workflow": "n8n_workflow", "n8n_workflow": "n8n_workflow", "n8n": "n8n_workflow",
              "external": "service", "service": "service"}
COUNTED = "_counted_through"  # {log id: [segment, offset, index, at_us]}: the last logged event an entity counted
COUNTED_KEEP_US = 30 * 86_400_000_000  # a log that counted nothing for this long is dropped from the documents
DAY_US = 86_400_000_000
FIVE_MIN_US = 300_000_000
# the columns of unified_registry, in the seed's order (a document holds exactly these)
ENTITY_COLUMNS = ("id", "entity_id", "entity_type", "entity_name", "display_name", "registered_at", "registered_by",
                  "registration_source", "current_state", "state_updated_at", "health_status", "last_health_check",
                  "endpoint_url", "namespace", "deployment_type", "capabilities", "tags", "metadata", "version",
                  "last_updated", "parent_entity_id", "department", "last_activity", "activity_count", "error_count")
TIME_FIELDS = ("registered_at", "state_updated_at", "last_health_check", "last_updated", "last_activity")
# columns of unified_registry that register/update may set besides the function arguments
OPTIONAL = ("display_name", "registration_source", "namespace", "deployment_type", "tags", "version", "department")
LIMITS = {"entity_id": 255, "entity_name": 255, "display_name": 255, "registered_by": 255, "registration_source": 100,
          "current_state": 50, "health_status": 50, "endpoint_url": 500, "namespace": 100, "deployment_type": 50,
          "version": 50, "parent_entity_id": 255, "department": 100}


def key(entity_id: str, entity_type: str) -> str:
    return f"{entity_type}/{entity_id}"


def check_type(entity_type: Any, field: str = "p_entity_type") -> str:
    if entity_type not in ENTITY_TYPES:
        raise BadRequest(f"`{field}` must be one of {', '.join(ENTITY_TYPES)}, got {entity_type!r}",
                         code="invalid_entity_type", details={"field": field})
    return entity_type


def check_text(name: str, value: Any, field: str | None = None, required: bool = False) -> str | None:
    field = field or name
    if value is None:
        if required:
            raise BadRequest(f"`{field}` is required", code="missing_field", details={"field": field})
        return None
    if not isinstance(value, str) or (required and not value):
        raise BadRequest(f"`{field}` must be a {'non-empty ' if required else ''}string", code="invalid_field",
                         details={"field": field})
    if len(value) > LIMITS.get(name, 65536):
        raise BadRequest(f"`{field}` is longer than {LIMITS[name]} characters", code="invalid_field",
                         details={"field": field})
    return value


def public(entity: dict[str, Any]) -> dict[str, Any]:
    """The entity as the seed's table row: without the log positions it counted through."""
    entity.pop(COUNTED, None)
    return entity


def render(entity: dict[str, Any]) -> dict[str, Any]:
    out = dict(entity)
    for name in TIME_FIELDS:
        if isinstance(out.get(name), int):
            out[name] = format_us(out[name])
    return out


_LOCKS: "weakref.WeakKeyDictionary[Any, asyncio.Lock]" = weakref.WeakKeyDictionary()


class Registry:
    def __init__(self, storage: Any, clock: Callable[[], int] = now_us) -> None:
        self.storage = storage
        self.clock = clock
        # one lock per storage: the API and the activity processor update the same documents
        try:
            self._lock = _LOCKS.setdefault(storage, asyncio.Lock())
        except TypeError:  # (no storage: `tea plugins` lists processors without one)
            self._lock = asyncio.Lock()

    @property
    def lock(self) -> asyncio.Lock:
        """Held by every write of an entity document (a read-modify-write); PostgREST's table writes
        (``tea.comms.pgwrite``) hold it around theirs."""
        return self._lock

    # ------------------------------------------------------------ the seed's functions
    async def register_entity(self, tenant: str, p_entity_id: str, p_entity_type: str, p_entity_name: str,
                              p_registered_by: str, p_metadata: dict[str, Any] | None = None,
                              p_capabilities: list[str] | None = None, p_endpoint_url: str | None = None,
                              p_parent_entity_id: str | None = None, **optional: Any) -> str:
        """The seed's function: the entity's UUID."""
        entity, _ = await self.register(tenant, p_entity_id, p_entity_type, p_entity_name, p_registered_by,
                                        p_metadata, p_capabilities, p_endpoint_url, p_parent_entity_id, **optional)
        return entity["id"]

    async def register(self, tenant: str, p_entity_id: str, p_entity_type: str, p_entity_name: str,
                       p_registered_by: str, p_metadata: dict[str, Any] | None = None,
                       p_capabilities: list[str] | None = None, p_endpoint_url: str | None = None,
                       p_parent_entity_id: str | None = None, **optional: Any) -> tuple[dict[str, Any], bool]:
        """``register_entity``'s upsert, answering the entity as stored and whether it was created."""
        check_type(p_entity_type)
        metadata = p_metadata if p_metadata is not None else {}
        now = self.clock()
        async with self._lock:
            entity = await self.storage.get_document(KIND, tenant, key(p_entity_id, p_entity_type))
            if entity is not None:
                entity.update(entity_name=p_entity_name, metadata=metadata, last_updated=now)
                for name, value in (("capabilities", p_capabilities), ("endpoint_url", p_endpoint_url),
                                    ("parent_entity_id", p_parent_entity_id),
                                    *((n, optional.get(n)) for n in OPTIONAL)):
                    if value is not None:
                        entity[name] = value
                action = "updated"
            else:
                entity = dict.fromkeys(ENTITY_COLUMNS)
                entity.update(id=str(uuid.uuid4()), entity_id=p_entity_id, entity_type=p_entity_type,
                              entity_name=p_entity_name, registered_at=now, registered_by=p_registered_by,
                              current_state="registered", state_updated_at=now, health_status="unknown",
                              endpoint_url=p_endpoint_url, capabilities=p_capabilities, metadata=metadata,
                              last_updated=now, parent_entity_id=p_parent_entity_id, activity_count=0, error_count=0)
                entity.update({n: optional[n] for n in OPTIONAL if optional.get(n) is not None})
                action = "registered"
            await self.storage.put_document(KIND, tenant, key(p_entity_id, p_entity_type), entity)
            await self._audit(tenant, p_entity_id, p_entity_type, action, p_registered_by, metadata, now)
        return public(entity), action == "registered"

    async def update_entity_state(self, tenant: str, p_entity_id: str, p_entity_type: str, p_new_state: str,
                                  p_health_status: str | None = None, p_updated_by: str = "system",
                                  p_reason: str | None = None, metadata: dict[str, Any] | None = None) -> bool:
        now = self.clock()
        async with self._lock:
            entity = await self.storage.get_document(KIND, tenant, key(p_entity_id, p_entity_type))
            if entity is None:
                return False
            old_state = entity["current_state"]
            entity["current_state"] = p_new_state
            entity["health_status"] = p_health_status if p_health_status is not None else entity["health_status"]
            entity["state_updated_at"] = now
            if p_health_status is not None:
                entity["last_health_check"] = now
            await self.storage.put_document(KIND, tenant, key(p_entity_id, p_entity_type), entity)
            await self.storage.append_records(TRANSITIONS, [(tenant, now, {
                "id": str(uuid.uuid4()), "entity_id": p_entity_id, "entity_type": p_entity_type,
                "from_state": old_state, "to_state": p_new_state, "health_status": entity["health_status"],
                "transition_reason": p_reason, "transitioned_by": p_updated_by, "metadata": metadata or {}})])
        return True

    async def record_entity_activity(self, tenant: str, p_entity_id: str, p_entity_type: str,
                                     p_is_error: bool = False) -> None:
        await self.apply_activity({(tenant, p_entity_type, p_entity_id): (1, int(bool(p_is_error)), self.clock())})

    async def apply_logged_activity(self, log_id: str | None,
                                    updates: dict[tuple[str, str, str], list[tuple[Any, int, int]]]) -> int:
        """Count events of the log ``log_id``: ``updates`` maps ``(tenant, entity_type, entity_id)`` to its events'
        ``(log position, is_error, timestamp_us)``, in log order. An entity counts only the events after the last
        position it counted, and records the new one in the same write. (``log_id`` None: count them all — a
        dead letter replayed.) Returns how many entities moved."""
        moved = 0
        now = self.clock()
        async with self._lock:
            for (tenant, entity_type, entity_id), items in updates.items():
                entity = await self.storage.get_document(KIND, tenant, key(entity_id, entity_type))
                if entity is None:
                    continue
                # (a log silent for COUNTED_KEEP_US — a node replaced with an empty data directory — is forgotten)
                through = {log: at for log, at in (entity.get(COUNTED) or {}).items()
                           if log == log_id or at[3] >= now - COUNTED_KEEP_US}
                mark = tuple(through[log_id][:3]) if log_id in through else None
                fresh = [i for i in items if mark is None or tuple(i[0]) > mark]
                if not fresh:
                    continue
                entity["activity_count"] = (entity.get("activity_count") or 0) + len(fresh)
                entity["error_count"] = (entity.get("error_count") or 0) + sum(i[1] for i in fresh)
                entity["last_activity"] = max(entity.get("last_activity") or 0, max(i[2] for i in fresh))
                if log_id is not None:
                    entity[COUNTED] = {**through, log_id: [*max(tuple(i[0]) for i in fresh), now]}
                await self.storage.put_document(KIND, tenant, key(entity_id, entity_type), entity)
                moved += 1
        return moved

    async def apply_activity(self, updates: dict[tuple[str, str, str], tuple[int, int, int]]) -> int:
        """Add ``(count, errors, last_us)`` to entities keyed ``(tenant, entity_type, entity_id)``; unknown
        entities are skipped (the gaps report lists them). Returns how many entities moved."""
        moved: list[tuple[str, str, dict[str, Any]]] = []
        async with self._lock:
            for (tenant, entity_type, entity_id), (count, errors, last_us) in updates.items():
                entity = await self.storage.get_document(KIND, tenant, key(entity_id, entity_type))
                if entity is None:
                    continue
                entity["activity_count"] = (entity.get("activity_count") or 0) + count
                entity["error_count"] = (entity.get("error_count") or 0) + errors
                entity["last_activity"] = max(entity.get("last_activity") or 0, last_us)
                moved.append((tenant, key(entity_id, entity_type), entity))
            await self.storage.put_documents(KIND, moved)  # one write for every entity that moved
        return len(moved)

    # ------------------------------------------------------------ CRUD
    async def get(self, tenant: str, entity_id: str, entity_type: str) -> dict[str, Any] | None:
        found = await self.storage.get_document(KIND, tenant, key(entity_id, entity_type))
        return None if found is None else public(found)

    async def entities(self, tenants: Iterable[str] | None) -> list[dict[str, Any]]:
        rows = await self.storage.list_documents(KIND, tuple(tenants) if tenants is not None else None)
        return [{**public(doc), "tenant_id": tenant} for tenant, _, doc in rows]

    async def delete(self, tenant: str, entity_id: str, entity_type: str, by: str) -> bool:
        async with self._lock:
            gone = await self.storage.delete_document(KIND, tenant, key(entity_id, entity_type))
            if gone:
                await self._audit(tenant, entity_id, entity_type, "deregistered", by, {}, self.clock())
        return gone

    async def transitions(self, tenants: tuple[str, ...] | None, filters: dict[str, str],
                          limit: int) -> list[dict[str, Any]]:
        rows = await self.storage.query_records(TRANSITIONS, tenant_ids=tenants, filters=filters, limit=limit)
        return [{**body, "transitioned_at": format_us(at), "tenant_id": t} for t, at, body in rows]

    async def audit(self, tenants: tuple[str, ...] | None, filters: dict[str, str], limit: int) -> list[dict[str, Any]]:
        rows = await self.storage.query_records(AUDIT, tenant_ids=tenants, filters=filters, limit=limit)
        return [{**body, "action_at": format_us(at), "tenant_id": t} for t, at, body in rows]

    async def _audit(self, tenant: str, entity_id: str, entity_type: str, action: str, by: str,
                     details: dict[str, Any], at: int) -> None:
        await self.storage.append_records(AUDIT, [(tenant, at, {
            "id": str(uuid.uuid4()), "entity_id": entity_id, "entity_type": entity_type, "action": action,
            "action_by": by, "details": details, "success": True, "error_message": None})])

    # ------------------------------------------------------------ the seed's views
    @staticmethod
    def entity_state(entities: list[dict[str, Any]], now: int) -> list[dict[str, Any]]:
        """``system_entity_state``."""
        groups: dict[tuple[Any, Any, Any], list[dict[str, Any]]] = {}
        for e in entities:
            groups.setdefault((e["entity_type"], e["current_state"], e.get("health_status")), []).append(e)
        out = [{"entity_type": t, "current_state": s, "health_status": h, "count": len(members),
                "active_last_5min": sum(1 for m in members if (m.get("last_activity") or 0) > now - FIVE_MIN_US),
                "healthy_count": sum(1 for m in members if m.get("health_status") == "healthy"),
                "unhealthy_count": sum(1 for m in members if m.get("health_status") in ("degraded", "unhealthy"))}
               for (t, s, h), members in groups.items()]
        return sorted(out, key=lambda r: (r["entity_type"], r["current_state"], r["health_status"] or ""))

    @staticmethod
    def hierarchy(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``entity_hierarchy``: from the roots (no parent) down, ``level`` from 0, ``path`` joined by " > ".
        As the seed's recursive CTE, a child joins every entity whose entity_id is its parent's id;
        cycles (unreachable from a root) are not listed."""
        children: dict[str, list[dict[str, Any]]] = {}
        for e in entities:
            if e.get("parent_entity_id") is not None:
                children.setdefault(e["parent_entity_id"], []).append(e)
        out: list[dict[str, Any]] = []
        stack = [(e, 0, e["entity_id"]) for e in entities if e.get("parent_entity_id") is None]
        while stack:
            e, level, path = stack.pop()
            out.append({"entity_id": e["entity_id"], "entity_name": e["entity_name"], "entity_type": e["entity_type"],
                        "parent_entity_id": e.get("parent_entity_id"), "department": e.get("department"),
                        "current_state": e["current_state"], "health_status": e.get("health_status"),
                        "level": level, "path": path})
            if level < 100:  # a bound, as a recursive CTE over a cyclic registry would need one
                stack.extend((c, level + 1, f"{path} > {c['entity_id']}") for c in children.get(e["entity_id"], []))
        return sorted(out, key=lambda r: (r["path"], r["entity_type"]))

    @staticmethod
    def gaps(entities: list[dict[str, Any]], seen: list[tuple[str, str | None, int, int]], now: int) -> list[dict[str, Any]]:
        """``check_registration_gaps()``: ids seen in communications as a team (or MCP server) with no
        registry entry of type team (mcp_server), then entries without activity for 24 h."""
        registered = {(e["entity_type"], e["entity_id"]) for e in entities}
        out: list[dict[str, Any]] = []
        for gap, comm_types, registry_type in (("missing_team", ("team",), "team"),
                                               ("missing_mcp", ("mcp", "mcp_server"), "mcp_server")):
            found: dict[str, list[int]] = {}
            for ident, kind, count, last in seen:
                if kind in comm_types and (registry_type, ident) not in registered:
                    entry = found.setdefault(ident, [0, 0])
                    entry[0] += count
                    entry[1] = max(entry[1], last)
            for ident in sorted(found):
                out.append({"gap_type": gap, "entity_identifier": ident,
                            "details": {"expected_entity_type": registry_type, "communication_count": found[ident][0],
                                        "last_seen": format_us(found[ident][1])}})
        for e in sorted(entities, key=lambda e: (e["entity_type"], e["entity_id"])):
            last = e.get("last_activity")
            if last is None or last < now - DAY_US:
                out.append({"gap_type": "stale_registration", "entity_identifier": e["entity_id"],
                            "details": {"entity_type": e["entity_type"], "entity_name": e["entity_name"],
                                        "last_activity": format_us(last) if last is not None else None,
                                        "health_status": e.get("health_status")}})
        return out
