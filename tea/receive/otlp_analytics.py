"""The seed Telemetry Processor's projections, as a TEA processor: spans routed by ``event.category``
into ``user_activity``, ``endpoint_usage`` and ``feature_usage`` (CONTRACTS.md 1.4).

Routing follows the seed's collector fallbacks when ``event.category`` is absent: ``event.type`` login
or logout → user_activity, then ``http.method`` → endpoint_usage, then ``feature.name`` →
feature_usage (later wins). Attributes are the resource's merged with the span's (span wins);
the columns a table has are taken out of ``event_metadata``; sensitive keys are dropped; times are
UTC (the seed stored local time). Optionally ``user.id``/``organization.id`` are hashed here
(``sha256[:16]``) unless they already are such a hash.

A row's ``id`` is derived from the span it comes from (``row_id``: uuid5 of table, tenant and event id),
and storage writes rows idempotently on ``(tenant_id, id)``: a span seen again — a replay of the buffer
after a crash, a client resending a request — never doubles its row.
"""
from __future__ import annotations

import functools
import hashlib
import re
import sys
import uuid
from typing import Any, Callable, Sequence

import msgspec
import uuid_utils

from tea.pipeline.consume import give_way
from tea.pipeline.stages import DEFAULT_PII_CONTAINS, DEFAULT_PII_KEYS
from tea.storage.base import Storage
from tea.storage.capabilities import WritesRowSets
from tea.storage.projections import EndpointUsageRow, FeatureUsageRow, Row, UserActivityRow, as_dict
from tea.timeutil import now_us
from tea.types import INT32_MAX, INT32_MIN, Batch, Event, encode_lines

ROW_NAMESPACE = uuid.UUID("0b1f6f8e-3c2a-4d0e-9a57-3f1c8f5e2d41")  # fixed forever: row ids depend on it
_NAMESPACE = uuid_utils.UUID(str(ROW_NAMESPACE))
_uuid5 = uuid_utils.uuid5
YIELD_EVERY = 64  # spans decoded and routed between two yields to the event loop (well under a millisecond)
_OURS = {"span.name", "span.kind", "resource", "scope", "span.events"}
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_DOUBLE_MAX = sys.float_info.max  # endpoint_usage's duration_ms (DOUBLE)
_STRIP = {
    "user_activity": {"user.id", "organization.id", "event.type", "event.category", "session.id", "deployment.type"},
    "endpoint_usage": {"http.route", "http.url", "http.method", "user.id", "organization.id", "http.status_code",
                       "duration_ms", "deployment.type", "event.category"},
    "feature_usage": {"feature.name", "feature.action", "user.id", "organization.id", "deployment.type",
                      "event.category"},
}


def category(attrs: dict[str, Any]) -> str | None:
    """The table a span's merged attributes route to, or None (an ``event.category`` that names no table, of any
    JSON type, routes nowhere; an empty or false one counts as absent)."""
    chosen = attrs.get("event.category")
    if chosen:
        return chosen if isinstance(chosen, str) and chosen in _STRIP else None
    chosen = None
    if attrs.get("event.type") in ("login", "logout"):
        chosen = "user_activity"
    if "http.method" in attrs:
        chosen = "endpoint_usage"
    if "feature.name" in attrs:
        chosen = "feature_usage"
    return chosen


def row_id(table: str, tenant_id: str, event_id: str) -> str:
    """The id of the row ``table`` holds for one event, the same every time that event is processed:
    ``uuid.uuid5(ROW_NAMESPACE, "table/tenant/event id")`` (uuid_utils': half the cost of the stdlib's)."""
    return str(_uuid5(_NAMESPACE, f"{table}/{tenant_id}/{event_id}"))


@functools.lru_cache(maxsize=4096)  # (the same few keys on every span: checked once each)
def sensitive(key: str) -> bool:
    lowered = key.lower()
    return lowered in DEFAULT_PII_KEYS or any(word in lowered for word in DEFAULT_PII_CONTAINS)


class _Span(msgspec.Struct, gc=False):
    """What the projections read of a stored span line (its other fields are skipped, never decoded). Not tracked by
    the cycle collector (``gc=False``): thousands are decoded at once and none is part of a cycle."""

    event_type: str
    event_id: str | None = None
    tenant_id: str | None = None
    timestamp: int | None = None
    source_protocol: str | None = None
    attributes: dict[str, Any] | None = None


_SPANS = msgspec.json.Decoder(list[_Span])


def merged(attributes: dict[str, Any]) -> dict[str, Any]:
    """The span's attributes merged over its resource's (the span's win), without TEA's own keys (``_OURS``) of
    the span; the resource's keys first, in their order (a ``resource`` that is no object holds none).
    ``attributes`` is the span's, decoded for this call (TEA's keys are taken out of it)."""
    resource = attributes.get("resource")
    for key in _OURS:  # (out of the span's first: a key the resource has too keeps the resource's value and place)
        attributes.pop(key, None)
    if not resource or not isinstance(resource, dict):
        return attributes
    return {**resource, **attributes}


@functools.lru_cache(maxsize=4096)  # (the spans of one producer carry the same keys: sorted out once per table)
def kept(table: str, keys: tuple[str, ...]) -> tuple[str, ...]:
    """The attribute keys ``event_metadata`` keeps of a ``table`` row: not a column, not sensitive."""
    strip = _STRIP[table]
    return tuple(key for key in keys if key not in strip and not sensitive(key))


class OtelAnalytics:
    """Processor ``otel_analytics``: writes projection rows for every OTLP span that routes."""

    _ROUTING = (b'"event.category"', b'"http.method"', b'"feature.name"', b'"event.type"')
    _SPAN = b'"event_type":"span"'
    wants_lines = (_SPAN, _ROUTING)  # the lines it is handed: a span's with a routing key (found without the GIL)
    takes_ndjson = True  # handed the committed NDJSON lines (a Batch): only the fields it reads are decoded
    event_types = frozenset(["span"])  # records known to hold no span are not searched
    batch_size = 20_000  # rows are written as one set per table and batch: large batches, few writes

    @classmethod
    def wants(cls, line: bytes) -> bool:
        """Whether ``line`` is one of ``wants_lines``: an OTLP span that carries a routing attribute (for events
        handed over decoded: a dead letter's replay)."""
        if line.find(cls._SPAN) < 0:  # (find, not `in`: see tea.pipeline.storable._may_hold_nul)
            return False
        for key in cls._ROUTING:  # (a loop, not any() over a generator: ~2x cheaper where the first key is there)
            if line.find(key) >= 0:
                return True
        return False

    def __init__(self, storage: Storage, hash_ids: bool = False, clock: Callable[[], int] = now_us) -> None:
        self.storage = storage
        self.hash_ids = hash_ids
        self.clock = clock

    def _id(self, value: Any) -> str | None:
        if value is None or value == "":
            return None
        text = str(value)
        if self.hash_ids and not _HEX16.match(text):
            return hashlib.sha256(text.encode()).hexdigest()[:16]
        return text[:32]

    def row(self, event: Event) -> tuple[str, dict[str, Any]] | None:
        """The table and row one span event gives, or None when it does not route."""
        span = _Span(event.event_type, event.event_id, event.tenant_id, event.timestamp,  # type: ignore[arg-type]
                     event.source_protocol, msgspec.json.decode(event.attributes))
        routed = self._row(span, self.clock())
        return None if routed is None else (routed[0], as_dict(routed[1]))

    def _row(self, span: _Span, created_at: int) -> tuple[str, Row] | None:
        attrs = merged(span.attributes or {})
        table = category(attrs)
        if table is None:
            return None
        get = attrs.get
        tenant = span.tenant_id
        common = (tenant, row_id(table, tenant, span.event_id), span.timestamp,  # type: ignore[arg-type]
                  self._id(get("user.id")), self._id(get("organization.id")),
                  get("deployment.type", "unknown"), created_at, {key: attrs[key] for key in kept(table, tuple(attrs))})
        if table == "endpoint_usage":
            code = get("http.status_code")
            duration = get("duration_ms")
            # (numbers the columns cannot hold — INTEGER, DOUBLE — are left out of the row: the span keeps them)
            return table, EndpointUsageRow(*common, str(get("http.route") or get("http.url") or "unknown")[:255],
                                           get("http.method"),
                                           code if isinstance(code, int) and INT32_MIN <= code <= INT32_MAX else None,
                                           float(duration) if isinstance(duration, (int, float))
                                           and abs(duration) <= _DOUBLE_MAX else None)
        if table == "user_activity":
            return table, UserActivityRow(*common, str(get("event.type", "unknown"))[:50], get("session.id"))
        return table, FeatureUsageRow(*common, str(get("feature.name", "unknown"))[:100], get("feature.action"))

    def _chunks(self, events: Sequence[Event]) -> list[bytes]:
        """NDJSON chunks of the spans of ``events`` that may route: a Batch's own (its consumer hands it the lines
        ``wants_lines`` names, a chunk each), or the lines of decoded events (a dead letter's replay), encoded
        again and probed."""
        if isinstance(events, Batch):
            return events.chunks
        return [line + b"\n" for line in encode_lines(events).split(b"\n") if line and self.wants(line)]

    async def __call__(self, events: Sequence[Event]) -> None:
        chunks = self._chunks(events)
        created_at = self.clock()
        tables: dict[str, dict[str, Row]] = {table: {} for table in _STRIP}
        for start in range(0, len(chunks), YIELD_EVERY):
            if start:
                await give_way()  # a batch is up to 20 000 spans: requests first
            # (chunks of whole lines: their newlines become the commas of one JSON array)
            array = b"".join(chunks[start:start + YIELD_EVERY]).replace(b"\n", b",")
            for span in _SPANS.decode(b"[" + array[:-1] + b"]"):
                if span.event_type != "span" or span.source_protocol != "otlp":
                    continue
                routed = self._row(span, created_at)
                if routed is not None:  # (a span twice in one batch: its first row, as storage keeps its first copy)
                    rows = tables[routed[0]]
                    if routed[1].id not in rows:
                        rows[routed[1].id] = routed[1]
        found = {table: list(rows.values()) for table, rows in tables.items() if rows}
        if isinstance(self.storage, WritesRowSets):
            await self.storage.write_row_sets(found)
        else:
            for table, structs in found.items():
                await self.storage.write_rows(table, [as_dict(row) for row in structs])
