"""Query parameters → ``EventFilter`` / ``QuerySpec``; every bad parameter is a 400 naming it."""
from __future__ import annotations

import base64
import binascii

import msgspec

from tea.errors import BadRequest
from tea.http import Param, Request
from tea.timeutil import parse_time
from tea.types import Cursor, EventFilter

FILTER_FIELDS = ("tenant_id", "user_id", "event_type", "source", "method", "status", "trace_id",
                 "correlation_id", "protocol", "target", "tool", "model")
MAX_LIMIT = 10000
TIME_HELP = "RFC 3339 / ISO 8601 time or epoch milliseconds"

FILTER_PARAMS: tuple[Param, ...] = tuple(Param(name, f"only events whose {name} equals this") for name in FILTER_FIELDS) + (
    Param("start_time", f"events at or after this time ({TIME_HELP})"),
    Param("end_time", f"events before this time ({TIME_HELP})"),
)
PAGE_PARAMS: tuple[Param, ...] = (
    Param("limit", f"page size, 1 to {MAX_LIMIT} (default 100)", {"type": "integer", "minimum": 1,
                                                                   "maximum": MAX_LIMIT}),
    Param("cursor", "opaque cursor from `next_cursor` of the previous page"),
)


def check_params(request: Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise BadRequest(f"unknown query parameter `{unknown[0]}`; accepted: {', '.join(sorted(allowed))}",
                         code="invalid_parameter", details={"parameter": unknown[0]})


def text_param(request: Request, name: str) -> str | None:
    value = request.param(name)
    if value is None:
        return None
    if value == "" or len(value) > 1024:
        raise BadRequest(f"parameter `{name}` must be 1 to 1024 characters", code="invalid_parameter",
                         details={"parameter": name})
    return value


def time_param(request: Request, name: str) -> int | None:
    value = request.param(name)
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise BadRequest(f"parameter `{name}` must be an RFC 3339 time or epoch milliseconds, got {value!r}",
                         code="invalid_parameter", details={"parameter": name}) from None


def int_param(request: Request, name: str, default: int, minimum: int, maximum: int) -> int:
    value = request.param(name)
    if value is None:
        return default
    if not value.strip().isdigit() or not minimum <= int(value) <= maximum:
        raise BadRequest(f"parameter `{name}` must be a whole number from {minimum} to {maximum}, got {value!r}",
                         code="invalid_parameter", details={"parameter": name})
    return int(value)


def event_filter(request: Request) -> EventFilter:
    values = {name: text_param(request, name) for name in FILTER_FIELDS}
    tenant = values.pop("tenant_id")
    start, end = time_param(request, "start_time"), time_param(request, "end_time")
    if start is not None and end is not None and end < start:
        raise BadRequest("`end_time` is before `start_time`", code="invalid_parameter",
                         details={"parameter": "end_time"})
    return EventFilter(tenant_ids=(tenant,) if tenant is not None else None, start_us=start, end_us=end,
                       **values)  # type: ignore[arg-type]


class _CursorData(msgspec.Struct, array_like=True):
    timestamp: int
    event_id: str
    tenant_id: str


def encode_cursor(cursor: Cursor | None) -> str | None:
    if cursor is None:
        return None
    raw = msgspec.msgpack.encode(_CursorData(cursor.timestamp, cursor.event_id, cursor.tenant_id))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_param(request: Request) -> Cursor | None:
    text = request.param("cursor")
    if text is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = msgspec.msgpack.decode(raw, type=_CursorData)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise BadRequest("parameter `cursor` is not a cursor this server issued", code="invalid_parameter",
                         details={"parameter": "cursor"}) from None
    return Cursor(data.timestamp, data.event_id, data.tenant_id)
