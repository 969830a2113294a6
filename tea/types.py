"""The canonical wide event and the neutral shapes that move between the stages.

``Event`` is the one msgspec Struct every receiver produces. On the wire ``timestamp`` is an
RFC 3339 string or epoch milliseconds; after ``pipeline.normalise`` it is an int of UTC
microseconds, and ``received_at`` is set by TEA. ``attributes`` stays raw JSON text end to end,
so TEA never parses what it does not need to.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Annotated, Any, Callable, Iterator, Sequence, overload

import msgspec

from tea.timeutil import MAX_US, RFC3339_PATTERN

Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Short = Annotated[str, msgspec.Meta(max_length=1024)]
Text = Annotated[str, msgspec.Meta(max_length=65536)]
COUNT_MAX = 2**63 - 1  # what a count column (BIGINT) holds
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # what an Int32 column (status_code: INTEGER) holds
Count = Annotated[int, msgspec.Meta(ge=0, le=COUNT_MAX)]
Int32 = Annotated[int, msgspec.Meta(ge=INT32_MIN, le=INT32_MAX)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Tag = Annotated[str, msgspec.Meta(max_length=256)]
EMPTY_OBJECT = msgspec.Raw(b"{}")
# Kept as raw JSON text end to end; the normaliser checks it is an object.
Attributes = Annotated[msgspec.Raw, msgspec.Meta(extra_json_schema={
    "type": ["object", "null"], "description": "everything that is not a promoted column (any JSON object; "
                                               "null is read as {})"})]
# A timestamp on the wire: Unix milliseconds or RFC 3339 (as the OpenAPI document describes them; the
# normaliser refuses an event out of that range, or too far in the future, with a per-event error).
WireDateTime = Annotated[datetime, msgspec.Meta(extra_json_schema={"format": "date-time",
                                                                   "pattern": f"^{RFC3339_PATTERN}$"})]
WireTime = Annotated[int, msgspec.Meta(extra_json_schema={"minimum": 0, "maximum": MAX_US // 1000,
                                                          "description": "Unix milliseconds"})] | WireDateTime | None
# A tenant an event names (tenants starting with `_` are TEA's own: refused with a per-event error)
TenantName = Annotated[str, msgspec.Meta(min_length=1, max_length=256, extra_json_schema={"pattern": "^[^_]"})]

# Promoted columns in storage order; storage backends and the query layer use this order. Columns added
# after the first release come last (a migration appends them to existing tables).
COLUMNS: tuple[str, ...] = (
    "event_id", "tenant_id", "timestamp", "received_at", "event_type", "source", "source_protocol",
    "user_id", "session_id", "organization", "method", "target", "protocol", "status", "status_code",
    "duration_ms", "request_size", "response_size", "tokens_used", "cost", "error_type",
    "error_message", "trace_id", "span_id", "parent_span_id", "correlation_id", "tags", "attributes",
    "tool", "model", "input_tokens", "output_tokens",
)
class Event(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A canonical wide event. Only ``event_type`` is required on the wire.

    ``attributes`` (a JSON object) holds everything that is not a promoted column.
    """

    event_type: Ident
    event_id: Ident | None = None
    tenant_id: TenantName | None = None
    timestamp: WireTime = None
    received_at: int | None = None
    source: Short | None = None
    source_protocol: Short | None = None
    user_id: Short | None = None
    session_id: Short | None = None
    organization: Short | None = None
    method: Short | None = None
    target: Short | None = None
    protocol: Short | None = None
    status: Short | None = None
    status_code: Int32 | None = None
    duration_ms: NonNegative | None = None
    request_size: Count | None = None
    response_size: Count | None = None
    tokens_used: Count | None = None
    cost: float | None = None
    error_type: Short | None = None
    error_message: Text | None = None
    trace_id: Short | None = None
    span_id: Short | None = None
    parent_span_id: Short | None = None
    correlation_id: Short | None = None
    tags: Annotated[list[Tag], msgspec.Meta(max_length=256)] = []
    attributes: Attributes = msgspec.field(default_factory=lambda: EMPTY_OBJECT)
    # MCP and GenAI semantic conventions: the tool called (gen_ai.tool.name), the model
    # (gen_ai.request.model), its input and output tokens (cost follows from a price table)
    tool: Short | None = None
    model: Short | None = None
    input_tokens: Count | None = None
    output_tokens: Count | None = None


_lines_encoder = msgspec.json.Encoder()
_lines_decoder = msgspec.json.Decoder(list[Event])


class Batch(Sequence[Event]):
    """Events on their way to storage, held as the NDJSON the durable buffer stores.

    Backends that can load NDJSON themselves (DuckDB, ClickHouse) take ``ndjson()`` and never
    build Python objects; others iterate the batch, which decodes once on first use.
    """

    __slots__ = ("chunks", "count", "min_ts", "max_ts", "kinds", "_events")

    def __init__(self, chunks: Sequence[bytes], count: int, min_ts: int, max_ts: int,
                 kinds: frozenset[str] | None = None) -> None:
        self.chunks = list(chunks)
        self.count = count
        self.min_ts = min_ts
        self.max_ts = max_ts
        self.kinds = kinds  # every event type of its lines (or more), when known; None: search the lines
        self._events: list[Event] | None = None

    @classmethod
    def from_events(cls, events: Sequence[Event]) -> "Batch":
        stamps = [e.timestamp for e in events]
        if not all(isinstance(t, int) for t in stamps):
            raise ValueError("events must be normalised (integer µs timestamps) before batching")
        batch = cls([encode_lines(events)] if events else [], len(events),
                    min(stamps, default=0), max(stamps, default=0),  # type: ignore[type-var]
                    frozenset(e.event_type for e in events))
        batch._events = list(events)
        return batch

    def ndjson(self) -> bytes:
        return b"".join(self.chunks)

    def events(self) -> list[Event]:
        if self._events is None:
            data = self.ndjson()
            self._events = _lines_decoder.decode(b"[" + data.rstrip(b"\n").replace(b"\n", b",") + b"]") \
                if data else []
        return self._events

    def __len__(self) -> int:
        return self.count

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...
    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        return self.events()[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events())



class ItemError(msgspec.Struct):
    """Why one event of a batch was refused; ``index`` is its position in the request. Every key is
    always sent: ``event_id`` and ``field`` are null when the event had no id or no field is to blame."""

    index: int
    error: str
    message: str
    event_id: str | None = None
    field: str | None = None


class Decoded(msgspec.Struct):
    """What a receiver decoded from one request: the events, where each came from, and the items refused.
    (A Struct: built in C, once per request.)"""

    events: list[Event]
    indexes: list[int] | None  # None when events[i] is item i (no item failed to decode)
    errors: list[ItemError] = []  # (msgspec gives each instance its own empty list)
    total: int = 0


# events as NDJSON: the encoder's own method (no Python call around it: a request encodes once)
encode_lines: Callable[[Sequence[Event]], bytes] = _lines_encoder.encode_lines


@dataclass(frozen=True)
class WriteResult:
    written: int
    duplicates: int = 0


def _equals(help: str, *, seed: bool = True, param: bool = True) -> Any:
    """A field of EventFilter that keeps the events whose column of its name equals it: ``help`` describes
    it as a query parameter; ``seed``: the seed's ``GET /events`` takes it too; ``param``: a read route's
    query parameter at all (``event_id`` is a path parameter)."""
    return field(default=None, metadata={"help": help, "seed": seed, "param": param})


@dataclass(frozen=True)
class EventFilter:
    """Which events a read touches. ``tenant_ids`` None means every tenant (admin reads). Every other field
    but the time range keeps the events whose column of that name equals it: FILTER_FIELDS, which the query
    parameters, the remote client and every backend's filter are made from."""

    tenant_ids: tuple[str, ...] | None = None
    event_id: str | None = _equals("event_id", param=False)
    user_id: str | None = _equals("user_id")
    event_type: str | None = _equals("event_type")
    source: str | None = _equals("source")
    method: str | None = _equals("method")
    status: str | None = _equals("status")
    trace_id: str | None = _equals("trace_id")
    correlation_id: str | None = _equals("correlation_id")
    protocol: str | None = _equals("protocol", seed=False)
    target: str | None = _equals("target", seed=False)
    tool: str | None = _equals("tool (gen_ai.tool.name)", seed=False)
    model: str | None = _equals("model (gen_ai.request.model)", seed=False)
    start_us: int | None = None  # inclusive
    end_us: int | None = None    # exclusive


@dataclass(frozen=True)
class FilterField:
    """One equality filter of EventFilter: its name (the field, the column it matches and the query
    parameter), what it matches as a parameter's help, and where it is a parameter."""

    name: str
    help: str
    seed: bool
    param: bool


FILTER_FIELDS: tuple[FilterField, ...] = tuple(FilterField(f.name, **f.metadata) for f in fields(EventFilter)
                                               if f.metadata)
# the columns an EventFilter matches by equality (besides tenant_ids and the time range)
FILTER_COLUMNS: tuple[str, ...] = tuple(f.name for f in FILTER_FIELDS)


@dataclass(frozen=True)
class Cursor:
    """Position after the last event of a page, in the order (timestamp, event_id, tenant_id) descending."""

    timestamp: int
    event_id: str
    tenant_id: str


@dataclass(frozen=True)
class QuerySpec:
    filter: EventFilter = EventFilter()
    limit: int = 100
    after: Cursor | None = None
    with_total: bool = True


@dataclass(frozen=True)
class QueryResult:
    events: list[Event]
    total_count: int | None
    has_more: bool

    @property
    def next_cursor(self) -> Cursor | None:
        if not self.has_more or not self.events:
            return None
        last = self.events[-1]
        return Cursor(last.timestamp, last.event_id, last.tenant_id)  # type: ignore[arg-type]


# ---------------------------------------------------------------- aggregation (metrics, stats, usage)
GROUPABLE: tuple[str, ...] = ("tenant_id", "event_type", "source", "method", "target", "status", "protocol",
                              "user_id", "source_protocol", "organization", "tool", "model")
BUCKETS: tuple[str, ...] = ("minute", "hour", "day", "week", "month")
AGG_FUNCTIONS: tuple[str, ...] = ("count", "errors", "sum", "avg", "min", "max", "quantile", "count_distinct",
                                   "count_le")
# aggregates whose value over a range follows from their values per bucket: what top-N groups are ranked by
RANK_MERGE: dict[str, str] = {"count": "sum", "errors": "sum", "sum": "sum", "min": "min", "max": "max"}
# numeric columns aggregations may read; "timestamp" only with min/max (answered in µs)
AGG_COLUMNS: tuple[str, ...] = ("duration_ms", "request_size", "response_size", "tokens_used", "cost",
                                "status_code", "timestamp", "user_id", "session_id", "input_tokens", "output_tokens")


@dataclass(frozen=True)
class Agg:
    """One aggregate: ``fn`` over ``column`` (``count``/``errors`` take none; ``quantile`` takes ``q``;
    ``count_le`` counts the events whose ``column`` is at most ``le`` — with ``le`` +inf, those that have one).

    An event is an error when its ``status`` is ``error`` or ``timeout``, or — status unset — when it
    has an ``error_type``, a ``status_code`` ≥ 400, or a negative (JSON-RPC) ``status_code``.
    ``quantile`` is exact with linear interpolation between the closest ranks.
    """

    fn: str
    column: str | None = None
    q: float | None = None
    le: float | None = None

    def __post_init__(self) -> None:
        if self.fn not in AGG_FUNCTIONS:
            raise ValueError(f"unknown aggregate {self.fn!r}")
        if (self.column is None) != (self.fn in ("count", "errors")):
            raise ValueError(f"aggregate {self.fn!r} {'takes no' if self.column else 'needs a'} column")
        if self.column is not None and self.column not in AGG_COLUMNS:
            raise ValueError(f"cannot aggregate column {self.column!r}")
        if (self.q is not None) != (self.fn == "quantile") or (self.q is not None and not 0 <= self.q <= 1):
            raise ValueError("quantile needs q in [0, 1]")
        if (self.le is not None) != (self.fn == "count_le") or (self.le is not None and math.isnan(self.le)):
            raise ValueError("count_le needs a bound le (a number or +inf)")


@dataclass(frozen=True)
class AggregateSpec:
    """Aggregates over the events matching ``filter``, per time bucket (optional) and group.

    Rows come back as ``(bucket_us | None, *group values, *aggregate values)``; only buckets and
    groups that hold events appear. With ``top`` only the ``top`` groups with the largest ``top_by``
    over the whole filter are kept (default: the most events; groups whose ``top_by`` is NULL come
    last, ties are broken by group values, ascending, NULL last). ``top_by`` is one of the aggregates
    in RANK_MERGE, so backends can rank from the per-bucket cells of the same scan.

    Instead of a calendar ``bucket``, ``bucket_us`` asks for fixed-width buckets of that many µs, aligned
    on ``origin_us``: an event at ``ts`` is in the bucket starting at ``origin_us + k * bucket_us`` with
    ``k = floor((ts - origin_us) / bucket_us)`` (what the Prometheus API's steps and ranges are cut into).
    """

    filter: EventFilter
    aggs: tuple[Agg, ...]
    bucket: str | None = None
    group_by: tuple[str, ...] = ()
    top: int | None = None
    top_by: Agg = Agg("count")
    bucket_us: int | None = None
    origin_us: int = 0

    def __post_init__(self) -> None:
        if self.bucket is not None and self.bucket not in BUCKETS:
            raise ValueError(f"unknown bucket {self.bucket!r}")
        if self.bucket_us is not None and (self.bucket is not None or self.bucket_us <= 0):
            raise ValueError("bucket_us is a positive width, and excludes a calendar bucket")
        if self.top_by.fn not in RANK_MERGE:
            raise ValueError(f"cannot rank groups by {self.top_by.fn!r}")
        for column in self.group_by:
            if column not in GROUPABLE:
                raise ValueError(f"cannot group by {column!r}")


# ---------------------------------------------------------------- API tokens
class TokenRecord(msgspec.Struct):
    """An API token as stored: never the token itself (only its SHA-256), the signing secret sealed."""

    token_id: str
    token_hash: str
    token_prefix: str          # the first characters, to recognise a token in listings
    tenant_id: str
    tier: str
    scopes: list[str]
    secret_sealed: bytes
    created_at: int            # µs
    org_id: str | None = None
    app_id: str | None = None
    revoked_at: int | None = None
    rotated_at: int | None = None


class AuditRecord(msgspec.Struct):
    """One audit-log row. Never holds a secret or a full token."""

    at: int                    # µs
    action: str                # auth_failure, token_created, token_revoked, token_rotated, admin_read, retention_set…
    actor: str | None = None   # token id, JWT subject, "admin", or None when unauthenticated
    tenant_id: str | None = None
    remote_addr: str | None = None
    success: bool = True
    reason: str | None = None
    details: dict[str, str] = {}


class DeadLetter(msgspec.Struct):
    """A batch a processor could not handle after its retries, kept for inspection and replay."""

    id: str
    at: int                    # µs
    stage: str                 # the processor's name
    error: str
    attempts: int
    event_count: int
    payload: str               # the batch as canonical NDJSON
    replayed_at: int | None = None


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    tenant_id: str
    start_us: int
    end_us: int
    span_count: int
    error_count: int
    root_name: str | None
    root_service: str | None
    services: tuple[str, ...]
