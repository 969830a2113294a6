"""PostgREST writes beyond a plain insert: upserts, ``PATCH`` and ``DELETE``, with PostgREST's answers.

What each relation allows follows the seed's schema, except where a relation is a record of what
happened — then it is append-only, and a change is refused as PostgreSQL refuses a role without
the privilege (403 ``42501``, ``permission denied for table …``, the reason in ``hint``):

| relation | insert | upsert, ``resolution=merge-duplicates`` | ``ignore-duplicates`` | PATCH | DELETE |
|---|---|---|---|---|---|
| ``communication_telemetry`` (events) | yes | 42501 | yes | 42501 | 42501 |
| ``unified_registry`` | yes | yes | yes | yes | yes |
| ``registry_state_transitions``, ``registration_audit`` | yes | 42501 | yes | 42501 | 42501 |
| the views | 42501 | 42501 | 42501 | 42501 | 42501 |

A plain insert of a row whose key exists is 409 ``23505``; an upsert resolves on the primary key
(``id``) or on ``on_conflict`` naming a unique key (``unified_registry``: ``entity_id,entity_type``),
anything else is 400 ``42P10``. ``PATCH`` and ``DELETE`` need a filter on a column (as Supabase's
``pg_safeupdate``: 400 ``21000``). Answers as PostgREST gives them: an insert 201 (200 when a
merge-upsert inserted nothing), ``PATCH``/``DELETE`` 204, or 200 with the rows under
``Prefer: return=representation``; ``Content-Range`` with the count under ``Prefer: count=exact``;
``Preference-Applied`` naming what was applied.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from tea.comms.pgcontext import PgRest
from tea.comms.pgquery import PgError, Query, apply, no_column, parse_query, prefer, rows_response
from tea.comms.pgschema import column_list
from tea.comms.records import split_body
from tea.http import Request, Response
from tea.pipeline.recent import RecentIds
from tea.types import Event


TABLE = "communication_telemetry"
APPEND_ONLY = {
    TABLE: "communication_telemetry is append-only: each row is a recorded event and never changes (retention "
           "removes old rows); insert with Prefer: resolution=ignore-duplicates to make a resend harmless",
    "registry_state_transitions": "registry_state_transitions is append-only: transitions are recorded by "
                                  "rpc/update_entity_state and never change",
    "registration_audit": "registration_audit is append-only: an audit trail never changes",
}
UNIQUE_KEYS = {TABLE: {("id",): f"{TABLE}_pkey"},
               "unified_registry": {("id",): "unified_registry_pkey", ("entity_id", "entity_type"): "unique_entity"},
               "registry_state_transitions": {("id",): "registry_state_transitions_pkey"},
               "registration_audit": {("id",): "registration_audit_pkey"}}


def denied(relation: str, views: frozenset[str] | set[str] = frozenset()) -> PgError:
    """PostgreSQL's refusal of a privilege the relation does not grant."""
    kind = "view" if relation in views else "table"
    hint = APPEND_ONLY.get(relation, f"{relation} is a view of the seed: read it with GET")
    return PgError(403, "42501", f"permission denied for {kind} {relation}", None, hint)


def duplicate(relation: str, key: tuple[str, ...], values: tuple[Any, ...]) -> PgError:
    return PgError(409, "23505", f'duplicate key value violates unique constraint "{UNIQUE_KEYS[relation][key]}"',
                   f"Key ({', '.join(key)})=({', '.join(str(v) for v in values)}) already exists.")


def no_where(verb: str) -> PgError:
    return PgError(400, "21000", f"{verb} requires a WHERE clause",
                   None, "filter the rows to change, e.g. ?entity_id=eq.x (pg_safeupdate, as Supabase has it)")


# ---------------------------------------------------------------- the request: preferences, body, target
@dataclass(frozen=True)
class Preferences:
    returning: str  # minimal, representation, headers-only
    count: bool
    resolution: str | None  # merge-duplicates, ignore-duplicates
    asked: tuple[str, ...]  # what to name in Preference-Applied

    @classmethod
    def of(cls, request: Request) -> "Preferences":
        given = prefer(request)
        returning = given.get("return", "minimal")
        returning = returning if returning in ("representation", "headers-only") else "minimal"
        resolution = given.get("resolution")
        resolution = resolution if resolution in ("merge-duplicates", "ignore-duplicates") else None
        asked = tuple(f"{name}={given[name]}" for name in ("resolution", "return", "count") if name in given
                      and (name != "resolution" or resolution) and (name != "count" or given[name] == "exact"))
        return cls(returning, given.get("count") == "exact", resolution, asked)

    def headers(self, content_range: str, mutation: str = "insert") -> dict[str, str]:
        applied = [p for p in self.asked if mutation == "insert" or not p.startswith("resolution=")]
        headers = {"content-range": content_range}
        if applied:
            headers["preference-applied"] = ", ".join(applied)
        return headers


def json_objects(body: bytes, limit: int, *, one: bool = False) -> list[dict[str, Any]]:
    """The body's object (``one``) or objects, or PostgREST's PGRST102."""
    try:
        items = split_body(body, limit) if body.strip() else None
        objects = [msgspec.json.decode(item) for item in items] if items is not None else None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise PgError(400, "PGRST102", "Empty or invalid json", str(exc)) from None
    if objects is None or (one and (len(objects) != 1 or body.lstrip()[:1] != b"{")):
        raise PgError(400, "PGRST102", "Empty or invalid json", "the body must be a JSON object" if one else None)
    for index, item in enumerate(objects):
        if not isinstance(item, dict):
            raise PgError(400, "PGRST102", "Empty or invalid json", f"row {index} is not a JSON object")
    return objects


def only_columns(objects: list[dict[str, Any]], columns: str | None, relation: str,
                 known: tuple[str, ...]) -> list[dict[str, Any]]:
    """PostgREST's ``columns=``: only those keys of each object are written."""
    if not columns:
        return objects
    names = column_list(columns, relation, known)
    return [{k: o[k] for k in names if k in o} for o in objects]


def conflict_target(request: Request, relation: str, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The unique key an upsert resolves on: ``on_conflict``'s columns, or the primary key."""
    text = request.param("on_conflict")
    if not text:
        return ("id",)
    names = tuple(c.strip().strip('"') for c in text.split(",") if c.strip())
    for name in names:
        if name not in columns:
            raise no_column(relation, name)
    for key in UNIQUE_KEYS.get(relation, {}):
        if sorted(key) == sorted(names):
            return key
    raise PgError(400, "42P10", "there is no unique or exclusion constraint matching the ON CONFLICT specification",
                  None, f"{relation}'s unique keys: " + "; ".join(",".join(k) for k in UNIQUE_KEYS.get(relation, {})))


def filters(request: Request, relation: str, columns: tuple[str, ...], verb: str) -> Query:
    """A PATCH's or DELETE's query: its conditions (on a column besides ``tenant_id``), order and limit."""
    q = parse_query(request.query, relation, columns)
    if not any(c.column != "tenant_id" for c in q.conditions):
        raise no_where(verb)
    return q


def answer(request: Request, prefs: Preferences, rows: list[dict[str, Any]], q: Query, mutation: str,
           time_columns: frozenset[str], status: int = 201) -> Response:
    """PostgREST's answer to a mutation of ``rows`` (the rows it wrote, or deleted)."""
    total = str(len(rows)) if prefs.count else "*"
    if mutation == "update" and rows:
        content_range = f"0-{len(rows) - 1}/{total}"
    else:
        content_range = f"*/{total}"
    headers = prefs.headers(content_range, mutation)
    if prefs.returning == "representation":
        shown, _ = apply(rows, replace(q, conditions=(), order=(), limit=None, offset=0), time_columns)
        return rows_response(request, shown, status if mutation == "insert" else 200, headers)
    return Response(b"", status if mutation == "insert" else 204, None, headers)


# ---------------------------------------------------------------- communication_telemetry: events
_RECENT: "weakref.WeakKeyDictionary[Any, RecentIds]" = weakref.WeakKeyDictionary()


def recent(pg: PgRest) -> RecentIds:
    """The communication ids this node acknowledged lately, perhaps not yet in storage."""
    return _RECENT.setdefault(pg, RecentIds())


async def fresh_events(pg: PgRest, request: Request, tenant: str, events: list[Event], given: list[bool],
                       resolution: str | None) -> list[int]:
    """Positions of ``events`` to insert: a client-given id already stored (or earlier in the payload) is
    409 ``23505`` for a plain insert and skipped by ``ignore-duplicates``; generated ids never collide."""
    ids = [e.event_id for e, mine in zip(events, given) if mine]
    known: set[str] = set()
    if ids:
        stamps = [e.timestamp for e, mine in zip(events, given) if mine]
        window = pg.settings.storage.dedup_window_us
        stored = await pg.readers.of(request).existing_event_keys(tenant, ids, min(stamps) - window,  # type: ignore[type-var]
                                                                  max(stamps) + window)  # type: ignore[type-var,operator]
        known = {event_id for event_id, _ in stored}
        known |= {i for i in ids if (tenant, i) in recent(pg)}
    keep: list[int] = []
    for position, (event, mine) in enumerate(zip(events, given)):
        if mine and event.event_id in known:
            if resolution != "ignore-duplicates":
                raise duplicate(TABLE, ("id",), (event.event_id,))
            continue
        known.add(event.event_id)  # type: ignore[arg-type]
        keep.append(position)
    return keep


def remember(pg: PgRest, tenant: str, events: list[Event]) -> None:
    recent(pg).add(tenant, (e.event_id for e in events if e.event_id))
