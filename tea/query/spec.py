"""The event filter's parameters, declared once for every read route that filters events, and what they
become: an ``EventFilter``, a page (``limit``, ``cursor``)."""
from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from tea.errors import InvalidParameter
from tea.http.params import MAX_PARAM_CHARS, Params, text, time, whole
from tea.types import FILTER_FIELDS, Cursor, EventFilter, FilterField

MAX_LIMIT = 10000
TenantId = text("one tenant (admins; a tenant's credential reads its own)")
Limit = whole(f"page size, 1 to {MAX_LIMIT} (default 100)", 1, MAX_LIMIT)
CursorText = text("opaque cursor from `next_cursor` of the previous page", MAX_PARAM_CHARS)
From = time("from this time on (inclusive)")
Until = time("until this time (exclusive)")


def _equals(fields: list[FilterField]) -> list[tuple[str, Any, None]]:
    return [(f.name, text(f"only events whose {f.help} equals this") | None, None) for f in fields]


_PARAMS = [f for f in FILTER_FIELDS if f.param]
# The filters the seed's ``GET /events`` takes.
SeedFilters = msgspec.defstruct("SeedFilters", [("tenant_id", TenantId | None, None),
                                                *_equals([f for f in _PARAMS if f.seed]),
                                                ("start_time", From | None, None), ("end_time", Until | None, None)],
                                bases=(Params,), module=__name__)
# Every filter of ``GET /v1/events``.
Filters = msgspec.defstruct("Filters", _equals([f for f in _PARAMS if not f.seed]), bases=(SeedFilters,),
                            module=__name__)


class Tenant(Params):
    """One tenant (admins; a tenant's credential reads its own)."""

    tenant_id: TenantId | None = None  # type: ignore[valid-type]


class Window(Tenant):
    """One tenant and a time range."""

    start_time: From | None = None  # type: ignore[valid-type]
    end_time: Until | None = None  # type: ignore[valid-type]


def event_filter(p: SeedFilters | Window, **fields: Any) -> EventFilter:
    """The filter the parameters describe (``fields`` add to it); 400 when ``end_time`` is before ``start_time``.
    Not scoped: the request's reader narrows the tenants to what the caller may read."""
    if p.start_time is not None and p.end_time is not None and p.end_time < p.start_time:
        raise InvalidParameter("end_time", "`end_time` is before `start_time`")
    values = {f.name: getattr(p, f.name, None) for f in _PARAMS} if isinstance(p, SeedFilters) else {}
    return EventFilter(tenant_ids=(p.tenant_id,) if p.tenant_id is not None else None, start_us=p.start_time,
                       end_us=p.end_time, **{**values, **fields})


class _CursorData(msgspec.Struct, array_like=True):
    timestamp: int
    event_id: str
    tenant_id: str


def encode_cursor(cursor: Cursor | None) -> str | None:
    if cursor is None:
        return None
    raw = msgspec.msgpack.encode(_CursorData(cursor.timestamp, cursor.event_id, cursor.tenant_id))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str | None) -> Cursor | None:
    """The position ``encode_cursor`` gave out; 400 naming ``cursor`` for anything else."""
    if text is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = msgspec.msgpack.decode(raw, type=_CursorData)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        data = None
    if data is None or not -2**63 <= data.timestamp < 2**63 or "\x00" in data.event_id + data.tenant_id:
        raise InvalidParameter("cursor", "parameter `cursor` is not a cursor this server issued")
    return Cursor(data.timestamp, data.event_id, data.tenant_id)
