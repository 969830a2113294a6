"""The seed's registry tables as PostgreSQL declares them (CONTRACTS.md 1.5.2), for PostgREST writes.

Each column has its type, its ``VARCHAR`` length, ``NOT NULL``, its default and its check, so that
an insert or an update of ``unified_registry``, ``registry_state_transitions`` or
``registration_audit`` answers what PostgreSQL would: ``PGRST204`` for an unknown column, ``23502``
NULL in a NOT NULL column, ``23514`` a failed check, ``22001`` too long, ``22P02`` a value of the wrong
type, ``22007`` a bad timestamp. Timestamps are stored as µs since the epoch (the registry's
documents and records keep them so); JSON values as given.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable

from tea.comms.pgquery import PgError
from tea.comms.registry import ENTITY_TYPES
from tea.timeutil import parse_time

INT32 = 2 ** 31 - 1


@dataclass(frozen=True)
class Column:
    type: str  # text, uuid, timestamptz, text[], jsonb, integer, boolean
    length: int | None = None  # VARCHAR(n)
    not_null: bool = False
    default: Callable[[int], Any] | None = None  # now_us → the value of an omitted column
    check: tuple[str, ...] | None = None  # the values a CHECK ... IN (...) allows


def _text(length: int | None = None, not_null: bool = False, default: Any = None) -> Column:
    return Column("text", length, not_null, None if default is None else (lambda now: default))


def _now(now: int) -> int:
    return now


def _uuid(now: int) -> str:
    return str(uuid.uuid4())


_ID = Column("uuid", not_null=True, default=_uuid)
_JSON_OBJECT = Column("jsonb", default=lambda now: {})
SCHEMAS: dict[str, dict[str, Column]] = {
    "unified_registry": {
        "id": _ID, "entity_id": _text(255, True),
        "entity_type": Column("text", 50, True, check=ENTITY_TYPES), "entity_name": _text(255, True),
        "display_name": _text(255), "registered_at": Column("timestamptz", default=_now),
        "registered_by": _text(255, True), "registration_source": _text(100),
        "current_state": _text(50, True, "registered"), "state_updated_at": Column("timestamptz", default=_now),
        "health_status": _text(50, default="unknown"), "last_health_check": Column("timestamptz"),
        "endpoint_url": _text(500), "namespace": _text(100), "deployment_type": _text(50),
        "capabilities": Column("text[]"), "tags": Column("text[]"), "metadata": _JSON_OBJECT, "version": _text(50),
        "last_updated": Column("timestamptz", default=_now), "parent_entity_id": _text(255),
        "department": _text(100), "last_activity": Column("timestamptz"),
        "activity_count": Column("integer", default=lambda now: 0),
        "error_count": Column("integer", default=lambda now: 0)},
    "registry_state_transitions": {
        "id": _ID, "entity_id": _text(255, True), "entity_type": _text(50, True), "from_state": _text(50),
        "to_state": _text(50, True), "health_status": _text(50), "transition_reason": _text(),
        "transitioned_by": _text(255, True), "transitioned_at": Column("timestamptz", True, default=_now),
        "metadata": _JSON_OBJECT},
    "registration_audit": {
        "id": _ID, "entity_id": _text(255, True), "entity_type": _text(50, True), "action": _text(50, True),
        "action_by": _text(255, True), "action_at": Column("timestamptz", True, default=_now),
        "details": _JSON_OBJECT, "success": Column("boolean", default=lambda now: True), "error_message": _text()},
}
# the column a record table keeps as the record's time (the rest is the record's body)
RECORD_TIME = {"registry_state_transitions": "transitioned_at", "registration_audit": "action_at"}


def unknown_column(relation: str, column: str, where: str | None = None) -> PgError:
    return PgError(400, "PGRST204", f"Could not find the '{column}' column of '{relation}' in the schema cache", where)


def column_list(text: str, relation: str, known: tuple[str, ...]) -> list[str]:
    """PostgREST's ``columns=a,"b"``: the names, each a column of ``relation`` (else PGRST204)."""
    names = [c.strip().strip('"') for c in text.split(",") if c.strip()]
    for name in names:
        if name not in known:
            raise unknown_column(relation, name)
    return names


def value(relation: str, name: str, raw: Any, where: str) -> Any:
    """One column's value as stored, or the error PostgreSQL would give for it."""
    column = SCHEMAS[relation].get(name)
    if column is None:
        raise unknown_column(relation, name, where)
    if raw is None:
        if column.not_null:
            raise PgError(400, "23502", f'null value in column "{name}" of relation "{relation}" violates '
                                        "not-null constraint", where)
        return None
    kind = column.type
    if kind in ("text", "uuid") and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raw = str(raw)  # (JSON numbers fill text columns, as json_populate_record does)
    if kind == "timestamptz":
        return _timestamp(raw, where)
    if kind == "integer":
        if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            raw = int(raw)
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _syntax(kind, raw, where)
        if not -INT32 - 1 <= raw <= INT32:
            raise PgError(400, "22003", 'value is out of range for type integer', where)
        return raw
    if kind == "boolean":
        if isinstance(raw, str) and raw.lower() in ("true", "false", "t", "f"):
            raw = raw.lower() in ("true", "t")
        if not isinstance(raw, bool):
            raise _syntax(kind, raw, where)
        return raw
    if kind == "text[]":
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            raise PgError(400, "22P02", f"malformed array literal: {_shown(raw)}", where)
        return raw
    if kind == "jsonb":
        return raw
    return _text_value(relation, name, column, raw, where)


def _text_value(relation: str, name: str, column: Column, raw: Any, where: str) -> str:
    if not isinstance(raw, str):
        raise _syntax(column.type, raw, where)
    if column.type == "uuid":
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            raise _syntax("uuid", raw, where) from None
    if column.length is not None and len(raw) > column.length:
        raise PgError(400, "22001", f"value too long for type character varying({column.length})", where)
    if column.check is not None and raw not in column.check:
        raise PgError(400, "23514", f'new row for relation "{relation}" violates check constraint '
                                    f'"{relation}_{name}_check"', f"{where}: {raw!r} is not one of "
                                                                  f"{', '.join(column.check)}")
    return raw


def _timestamp(raw: Any, where: str) -> int:
    try:
        if isinstance(raw, str):
            return parse_time(raw)
    except ValueError:
        pass
    raise PgError(400, "22007", f"invalid input syntax for type timestamp with time zone: {_shown(raw)}", where)


def _syntax(kind: str, raw: Any, where: str) -> PgError:
    return PgError(400, "22P02", f"invalid input syntax for type {kind}: {_shown(raw)}", where)


def _shown(raw: Any) -> str:
    text = raw if isinstance(raw, str) else repr(raw)
    return f'"{text[:80]}"'


def new_row(relation: str, given: dict[str, Any], now: int, where: str) -> dict[str, Any]:
    """An inserted row: the given columns checked, the others their defaults (NULL without one)."""
    for name in given:
        if name not in SCHEMAS[relation] and name != "tenant_id":
            raise unknown_column(relation, name, where)
    row: dict[str, Any] = {}
    for name, column in SCHEMAS[relation].items():
        if name in given:
            row[name] = value(relation, name, given[name], where)
        elif column.default is not None:
            row[name] = column.default(now)
        else:
            row[name] = value(relation, name, None, where)  # (NULL: refused in a NOT NULL column)
    return row


def changes(relation: str, given: dict[str, Any], where: str) -> dict[str, Any]:
    """The columns an UPDATE sets, checked (``tenant_id`` names the row's tenant; it is not set)."""
    return {name: value(relation, name, raw, where) for name, raw in given.items() if name != "tenant_id"}
