"""PostgREST writes to the registry's tables: ``unified_registry`` (insert, upsert, PATCH, DELETE) and the
append-only ``registry_state_transitions`` / ``registration_audit`` (insert, ``ignore-duplicates``).

Direct table writes behave as SQL on the seed's tables would: they write only the table named — no
audit row, no transition (the seed's functions write those; ElfAutomations' n8n module writes its
own audit rows) — and they check the columns as PostgreSQL does (``tea.comms.pgschema``). Entities
are one document each, keyed per tenant by ``entity_type/entity_id`` (so ``unique_entity`` holds per
tenant); every write of them holds the registry's lock around its read-modify-write.
"""
from __future__ import annotations

from typing import Any

from tea.comms import pgschema
from tea.comms.pgcontext import PgRest
from tea.comms.pgquery import PgError, Query, apply
from tea.comms.pgwrite import UNIQUE_KEYS, denied, duplicate
from tea.comms.registry import AUDIT, KIND, TRANSITIONS, Registry, key, render
from tea.http import Request
from tea.timeutil import format_us


REGISTRY = "unified_registry"
RECORD_KINDS = {"registry_state_transitions": TRANSITIONS, "registration_audit": AUDIT}
Entity = dict[str, Any]


def shown(entity: Entity, tenant: str) -> Entity:
    return {**render(entity), "tenant_id": tenant}


def _unique(relation: str, tenant: str, row: Entity) -> list[tuple[tuple[str, ...], tuple[Any, ...]]]:
    """The row's values of each unique key of ``relation``, per tenant."""
    return [(k, (tenant, *(row[c] for c in k))) for k in UNIQUE_KEYS[relation]]


class EntityIndex:
    """Every unique key of the entities of some tenants → the entity holding it."""

    def __init__(self, entities: list[tuple[str, Entity]]) -> None:
        self.by_key: dict[tuple[tuple[str, ...], tuple[Any, ...]], Entity] = {}
        for tenant, entity in entities:
            self.add(tenant, entity)

    def add(self, tenant: str, entity: Entity) -> None:
        for k in _unique(REGISTRY, tenant, entity):
            self.by_key[k] = entity

    def remove(self, tenant: str, entity: Entity) -> None:
        for k in _unique(REGISTRY, tenant, entity):
            if self.by_key.get(k) is entity:
                del self.by_key[k]

    def taken(self, tenant: str, entity: Entity, besides: Entity | None = None) -> PgError | None:
        """23505 when another entity than ``besides`` holds one of ``entity``'s unique keys."""
        for (names, values) in _unique(REGISTRY, tenant, entity):
            holder = self.by_key.get((names, values))
            if holder is not None and holder is not besides:
                return duplicate(REGISTRY, names, values[1:])
        return None


async def _entities(pg: PgRest, tenants: tuple[str, ...] | None) -> list[tuple[str, Entity]]:
    rows = await pg.registry.storage.list_documents(KIND, tenants)
    return [(tenant, doc) for tenant, _, doc in rows]


async def _put(pg: PgRest, tenant: str, old: Entity | None, new: Entity | None) -> None:
    storage = pg.registry.storage
    if old is not None and (new is None or key(old["entity_id"], old["entity_type"]) !=
                            key(new["entity_id"], new["entity_type"])):
        await storage.delete_document(KIND, tenant, key(old["entity_id"], old["entity_type"]))
    if new is not None:
        await storage.put_document(KIND, tenant, key(new["entity_id"], new["entity_type"]), new)


# ---------------------------------------------------------------- unified_registry
async def upsert(pg: PgRest, request: Request, objects: list[dict[str, Any]], target: tuple[str, ...],
                 resolution: str | None) -> tuple[list[Entity], int]:
    """Insert (or upsert) entities: (the rows written, how many were inserted)."""
    now = pg.clock()
    rows = []
    for index, given in enumerate(objects):
        tenant = pg.write_tenant(request, given.get("tenant_id"))
        rows.append((tenant, given, pgschema.new_row(REGISTRY, given, now, f"row {index}")))
    writes: list[tuple[str, Entity | None, Entity]] = []  # (tenant, the entity replaced, the new one)
    async with pg.registry.lock:
        index = EntityIndex(await _entities(pg, tuple({t for t, _, _ in rows})))
        for position, (tenant, given, row) in enumerate(rows):
            holder = index.by_key.get((target, (tenant, *(row[c] for c in target))))
            if holder is None:
                error = index.taken(tenant, row)
                if error is not None:
                    raise error
                index.add(tenant, row)
                writes.append((tenant, None, row))
            elif resolution == "ignore-duplicates":
                continue
            elif resolution != "merge-duplicates":
                raise duplicate(REGISTRY, target, tuple(row[c] for c in target))
            elif any(new is holder for _, _, new in writes):
                raise PgError(400, "21000", "ON CONFLICT DO UPDATE command cannot affect row a second time",
                              f"row {position}", "Ensure that no rows proposed for insertion within the same "
                                                 "command have duplicate constrained values.")
            else:
                sets = pgschema.changes(REGISTRY, given, f"row {position}")
                writes.append((tenant, holder, _merged(index, tenant, holder, sets)))
        for tenant, old, new in writes:
            await _put(pg, tenant, old, new)
    inserted = sum(1 for _, old, _ in writes if old is None)
    return [shown(new, tenant) for tenant, _, new in writes], inserted


def _merged(index: EntityIndex, tenant: str, old: Entity, sets: dict[str, Any]) -> Entity:
    """``old`` with ``sets`` applied, the index moved to it; 23505 when it takes another entity's key."""
    new = {**old, **sets}
    error = index.taken(tenant, new, besides=old)
    if error is not None:
        raise error
    index.remove(tenant, old)
    index.add(tenant, new)
    return new


async def _matching(pg: PgRest, request: Request, q: Query, tenants: tuple[str, ...] | None,
                    time_columns: frozenset[str]) -> tuple[EntityIndex, list[tuple[str, Entity]]]:
    """(Under the registry lock.) Every entity of the tenants the caller may read, and those ``q`` selects."""
    docs = []
    for row in await Registry(pg.readers.of(request), pg.clock).entities(tenants):
        tenant = row.pop("tenant_id")
        docs.append((tenant, row))
    rows = [shown(doc, tenant) for tenant, doc in docs]
    of_row = {id(row): pair for row, pair in zip(rows, docs)}
    selected, _ = apply(rows, Query(q.conditions, None, q.order, q.limit, q.offset), time_columns)
    return EntityIndex(docs), [of_row[id(row)] for row in selected]


async def update(pg: PgRest, request: Request, q: Query, given: dict[str, Any], tenants: tuple[str, ...] | None,
                 time_columns: frozenset[str]) -> list[Entity]:
    """PATCH: set the given columns on every entity ``q`` selects; the rows as they are now."""
    sets = pgschema.changes(REGISTRY, given, "the update")
    if "tenant_id" in given:
        pg.write_tenant(request, given["tenant_id"])  # (403 for another's: a row never changes tenant)
    async with pg.registry.lock:
        index, selected = await _matching(pg, request, q, tenants, time_columns)
        moved = [(tenant, old, _merged(index, tenant, old, sets)) for tenant, old in selected]
        for tenant, old, new in moved:
            await _put(pg, tenant, old, new)
    return [shown(new, tenant) for tenant, _, new in moved]


async def delete(pg: PgRest, request: Request, q: Query, tenants: tuple[str, ...] | None,
                 time_columns: frozenset[str]) -> list[Entity]:
    """DELETE: remove every entity ``q`` selects; the rows removed."""
    async with pg.registry.lock:
        _, selected = await _matching(pg, request, q, tenants, time_columns)
        for tenant, old in selected:
            await _put(pg, tenant, old, None)
    return [shown(old, tenant) for tenant, old in selected]


# ---------------------------------------------------------------- the append-only record tables
async def append(pg: PgRest, request: Request, relation: str, objects: list[dict[str, Any]],
                 resolution: str | None) -> list[Entity]:
    """Insert rows into a record table; a row whose ``id`` exists is 409 ``23505`` (skipped by
    ``ignore-duplicates``; ``merge-duplicates`` would change a record: 42501)."""
    if resolution == "merge-duplicates":
        raise denied(relation)
    now, when = pg.clock(), pgschema.RECORD_TIME[relation]
    kind, storage = RECORD_KINDS[relation], pg.registry.storage
    rows: list[tuple[str, dict[str, Any]]] = []
    seen: set[tuple[str, str]] = set()
    for index, given in enumerate(objects):
        tenant = pg.write_tenant(request, given.get("tenant_id"))
        row = pgschema.new_row(relation, given, now, f"row {index}")
        exists = (tenant, row["id"]) in seen or ("id" in given and await storage.query_records(
            kind, tenant_ids=(tenant,), filters={"id": row["id"]}, limit=1))
        if exists:
            if resolution == "ignore-duplicates":
                continue
            raise duplicate(relation, ("id",), (row["id"],))
        seen.add((tenant, row["id"]))
        rows.append((tenant, row))
    records = [(tenant, row[when], {k: v for k, v in row.items() if k != when}) for tenant, row in rows]
    if records:
        await storage.append_records(kind, records)
    return [{**row, when: format_us(row[when]), "tenant_id": tenant} for tenant, row in rows]
