"""``GET /v1/logs`` (OTLP log records: severity at least N, body contains, attribute equals, time range,
newest first with cursor pagination) and ``GET /v1/traces/{trace_id}/logs`` (a trace's records)."""
from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from tea.errors import InvalidParameter, NotFound
from tea.http import Request, Response, Route
from tea.http.params import text, whole
from tea.http.response import JSON, encode_json
from tea.http.schemas import error_responses
from tea.query.readers import Readers
from tea.query.scope import ScopedSignals
from tea.query.spec import CursorText, Tenant, Window
from tea.signals.model import LogRecord, RecordQuery
from tea.timeutil import format_us

Attributes = text('a JSON object of attribute values the records must have, e.g. {"order":"o-1"}', 4096)


class LogParams(Window):
    min_severity: whole("severity number at least this (1-24: TRACE 1, DEBUG 5, INFO 9, WARN 13, ERROR 17, "  # type: ignore[valid-type]
                        "FATAL 21)", 0, 24) | None = None
    body: text("the body contains this (case-insensitive)") | None = None  # type: ignore[valid-type]
    attributes: Attributes | None = None  # type: ignore[valid-type]
    service: text("the resource's service.name") | None = None  # type: ignore[valid-type]
    trace_id: text("32 hex characters") | None = None  # type: ignore[valid-type]
    span_id: text("16 hex characters") | None = None  # type: ignore[valid-type]
    limit: whole("page size, 1 to 1000 (default 100)", 1, 1000) = 100  # type: ignore[valid-type]
    cursor: CursorText | None = None  # type: ignore[valid-type]


class TraceLogParams(Tenant, kw_only=True):
    PATH = frozenset({"trace_id"})
    trace_id: text("32 hex characters")  # type: ignore[valid-type]
    limit: whole("page size, 1 to 1000 (default 100)", 1, 1000) = 100  # type: ignore[valid-type]
    cursor: CursorText | None = None  # type: ignore[valid-type]


class LogView(msgspec.Struct):
    id: str
    tenant_id: str
    timestamp: str
    observed_time: str | None
    service: str | None
    severity_number: int
    severity_text: str
    body: Any
    event_name: str | None
    trace_id: str | None
    span_id: str | None
    attributes: msgspec.Raw
    resource: msgspec.Raw
    scope: str | None


class LogsPage(msgspec.Struct):
    logs: list[LogView]
    has_more: bool
    next_cursor: str | None


class _Cursor(msgspec.Struct, array_like=True):
    timestamp: int
    id: str


def view(r: LogRecord) -> LogView:
    d = r.data
    return LogView(r.id, r.tenant_id, format_us(r.timestamp), format_us(d.observed_us) if d.observed_us else None,
                   r.service, d.severity_number, d.severity_text, d.body, d.event_name, r.trace_id, r.span_id,
                   r.attributes, r.resource, r.scope)


def attribute_pairs(raw: str | None) -> tuple[tuple[str, str], ...]:
    """``{"k": "v", "n": 5}`` as (key, text) pairs: a string as it is, any other value as its JSON."""
    if raw is None:
        return ()
    try:
        found = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        found = None
    if not isinstance(found, dict):
        raise InvalidParameter("attributes", 'parameter `attributes` must be a JSON object, e.g. {"order":"o-1"}')
    return tuple((str(k), v if isinstance(v, str) else msgspec.json.encode(v).decode()) for k, v in found.items())


def encode_cursor(record: LogRecord) -> str:
    raw = msgspec.msgpack.encode(_Cursor(record.timestamp, record.id))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text_: str | None) -> tuple[int, str] | None:
    if text_ is None:
        return None
    try:
        found = msgspec.msgpack.decode(base64.urlsafe_b64decode(text_ + "=" * (-len(text_) % 4)), type=_Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidParameter("cursor", "parameter `cursor` is not a cursor this server issued") from None
    return found.timestamp, found.id


def signals_of(readers: Readers, request: Request) -> ScopedSignals:
    found = readers.of(request).signals
    if found is None:
        raise NotFound("this storage backend keeps no metric points or log records", code="not_supported")
    return found


async def page(signals: ScopedSignals, q: RecordQuery) -> Response:
    found = await signals.records(q)
    more = len(found) > q.limit
    shown = found[: q.limit]
    body = LogsPage([view(r) for r in shown], more, encode_cursor(shown[-1]) if more and shown else None)
    return Response(encode_json(body), 200, JSON)


def routes(readers: Readers) -> list[Route]:
    async def list_logs(request: Request, p: LogParams) -> Response:
        if p.start_time is not None and p.end_time is not None and p.end_time < p.start_time:
            raise InvalidParameter("end_time", "`end_time` is before `start_time`")
        q = RecordQuery(tenant_ids=(p.tenant_id,) if p.tenant_id else None, start_us=p.start_time, end_us=p.end_time,
                        min_severity=p.min_severity, body_contains=p.body, attributes=attribute_pairs(p.attributes),
                        trace_id=p.trace_id.lower() if p.trace_id else None,
                        span_id=p.span_id.lower() if p.span_id else None, service=p.service,
                        after=decode_cursor(p.cursor), limit=p.limit)
        return await page(signals_of(readers, request), q)

    async def trace_logs(request: Request, p: TraceLogParams) -> Response:
        q = RecordQuery(tenant_ids=(p.tenant_id,) if p.tenant_id else None, trace_id=p.trace_id.lower(),
                        after=decode_cursor(p.cursor), limit=p.limit)
        return await page(signals_of(readers, request), q)

    answers = {200: ("A page of log records, newest first", {"application/json": LogsPage}),
               **error_responses(400, 401, 403)}
    return [
        Route("GET", "/v1/logs", list_logs, "OTLP log records, newest first: severity, body text, attributes, "
              "time range, trace; cursor pagination", tags=("otlp",), query=LogParams, responses=answers),
        Route("GET", "/v1/traces/{trace_id}/logs", trace_logs, "The log records of one trace, newest first",
              tags=("traces", "otlp"), query=TraceLogParams, responses=answers),
    ]
