"""``communication_telemetry`` rows (CONTRACTS.md 1.5.1) and their canonical events.

A row becomes an event of type ``communication``: source_id → source, target_id → target,
operation → method, protocol, status (``success`` → ``ok``), duration_ms, tokens_used,
estimated_cost → cost, payload_size_bytes → request_size, error_code → error_type, error_message,
correlation_id; id → event_id. Every other seed column (source/target types, tool, task,
capabilities, message type, workflow, parent correlation id, metadata) is kept in ``attributes``,
so ``row(event(row))`` gives back the seed row unchanged. ``workflow_id`` is text (the seed's UUID
column refused its own documented ``"wf_001"``).
"""
from __future__ import annotations

import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

import msgspec

from tea.http.body import decode
from tea.receive.decode import error_field, raw_items
from tea.timeutil import format_us
from tea.types import Event, WireDateTime, WireTime

EVENT_TYPE = "communication"
PROTOCOLS = ("mcp", "a2a", "n8n")
STATUSES = ("success", "error", "timeout", "cancelled")
TO_CANONICAL = {"success": "ok"}
FROM_CANONICAL = {"ok": "success"}


def _text(n: int) -> Any:
    return Annotated[str, msgspec.Meta(max_length=n)]


def _required(n: int) -> Any:
    return Annotated[str, msgspec.Meta(min_length=1, max_length=n)]


Int32 = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
Cost = Annotated[float, msgspec.Meta(ge=-999999.9999, le=999999.9999)]  # DECIMAL(10,4)


class Communication(msgspec.Struct, forbid_unknown_fields=True):
    """One row of the seed's ``communication_telemetry`` table, as clients send it."""

    protocol: Literal["mcp", "a2a", "n8n"]
    source_id: _required(255)
    source_type: _required(50)
    target_id: _required(255)
    target_type: _required(50)
    operation: _required(100)
    status: Literal["success", "error", "timeout", "cancelled"]
    id: uuid.UUID | None = None
    timestamp: WireTime = None
    duration_ms: Int32 | None = None
    tool_name: _text(100) | None = None
    tool_category: _text(50) | None = None
    task_description: _text(65536) | None = None
    capabilities_required: list[_text(1024)] | None = None
    message_type: _text(50) | None = None
    workflow_id: _text(255) | None = None
    workflow_name: _text(255) | None = None
    workflow_node: _text(100) | None = None
    payload_size_bytes: Int32 | None = None
    error_message: _text(65536) | None = None
    error_code: _text(50) | None = None
    correlation_id: _text(100) | None = None
    parent_correlation_id: _text(100) | None = None
    tokens_used: Int32 | None = None
    estimated_cost: Cost | None = None
    metadata: dict[str, Any] | None = None
    created_at: WireDateTime | None = None  # accepted and ignored: TEA sets it (received_at)


# kept in attributes, in this order
ATTRIBUTE_COLUMNS = ("source_type", "target_type", "tool_name", "tool_category", "task_description",
                     "capabilities_required", "message_type", "workflow_id", "workflow_name", "workflow_node",
                     "parent_correlation_id", "metadata")
# every column of the seed table, in its order
COLUMNS = ("id", "timestamp", "protocol", "source_id", "source_type", "target_id", "target_type", "operation",
           "duration_ms", "status", "tool_name", "tool_category", "task_description", "capabilities_required",
           "message_type", "workflow_id", "workflow_name", "workflow_node", "payload_size_bytes", "error_message",
           "error_code", "correlation_id", "parent_correlation_id", "tokens_used", "estimated_cost", "metadata",
           "created_at")


def cost4(value: float | None) -> float | None:
    """The value a DECIMAL(10,4) column keeps (half away from zero, as PostgreSQL rounds)."""
    if value is None:
        return None
    return float(Decimal(repr(value)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def to_event(c: Communication) -> Event:
    attributes = {name: getattr(c, name) for name in ATTRIBUTE_COLUMNS}
    attributes["metadata"] = c.metadata if c.metadata is not None else {}
    return Event(event_type=EVENT_TYPE, event_id=str(c.id) if c.id is not None else None, timestamp=c.timestamp,
                 source=c.source_id, target=c.target_id, method=c.operation, protocol=c.protocol,
                 status=TO_CANONICAL.get(c.status, c.status), duration_ms=c.duration_ms,
                 request_size=c.payload_size_bytes, tokens_used=c.tokens_used, cost=cost4(c.estimated_cost),
                 error_type=c.error_code, error_message=c.error_message, correlation_id=c.correlation_id,
                 attributes=msgspec.Raw(msgspec.json.encode(attributes)))


def to_row(e: Event, with_tenant: bool = False) -> dict[str, Any]:
    """The seed row of a stored communication event (timestamps as RFC 3339 UTC)."""
    attrs = msgspec.json.decode(e.attributes) if e.attributes else {}
    row: dict[str, Any] = {
        "id": e.event_id, "timestamp": format_us(e.timestamp) if isinstance(e.timestamp, int) else e.timestamp,
        "protocol": e.protocol, "source_id": e.source, "source_type": attrs.get("source_type"),
        "target_id": e.target, "target_type": attrs.get("target_type"), "operation": e.method,
        "duration_ms": int(e.duration_ms) if e.duration_ms is not None else None,
        "status": FROM_CANONICAL.get(e.status or "", e.status)}
    for name in ("tool_name", "tool_category", "task_description", "capabilities_required", "message_type",
                 "workflow_id", "workflow_name", "workflow_node"):
        row[name] = attrs.get(name)
    row.update(payload_size_bytes=e.request_size, error_message=e.error_message, error_code=e.error_type,
               correlation_id=e.correlation_id, parent_correlation_id=attrs.get("parent_correlation_id"),
               tokens_used=e.tokens_used, estimated_cost=e.cost, metadata=attrs.get("metadata") or {},
               created_at=format_us(e.received_at) if isinstance(e.received_at, int) else None)
    if with_tenant:
        row["tenant_id"] = e.tenant_id
    return row


def canonical_status(status: str) -> str:
    return TO_CANONICAL.get(status, status)


# ---------------------------------------------------------------- decoding a request body
_one = msgspec.json.Decoder(Communication)


def _field(exc: msgspec.ValidationError) -> str | None:
    """The column a refused row names: as for events, also a missing required column, without list indexes."""
    name = error_field(exc)
    if name is None and "required field" in str(exc):
        name = str(exc).split("`")[1]
    return name.split("[", 1)[0] if name else None


def decode_items(items: list[bytes | msgspec.Raw]) -> tuple[list[Communication], list[int], list[dict[str, Any]]]:
    """Each item decoded on its own: the good ones with their indexes, and one error per bad item
    (``index``, ``error``, ``message``, ``field``)."""
    good: list[Communication] = []
    indexes: list[int] = []
    errors: list[dict[str, Any]] = []
    for index, raw in enumerate(items):
        try:
            good.append(decode(_one, raw))
            indexes.append(index)
        except msgspec.ValidationError as exc:
            name = _field(exc)
            text = str(exc).split(" - at `")[0]
            if "unknown field" in text:
                text += "; put custom data under `metadata`"
            errors.append({"index": index, "error": "invalid_communication",
                           "message": text + (f" (field `{name}`)" if name and "unknown field" not in text else ""),
                           **({"field": name} if name else {})})
        except (msgspec.DecodeError, RecursionError) as exc:
            errors.append({"index": index, "error": "invalid_json", "message": f"invalid JSON: {exc}"})
    return good, indexes, errors


def split_body(body: bytes, max_items: int) -> list[msgspec.Raw]:
    """A JSON object or array of objects → raw items, at most ``max_items + 1`` (the rest of a longer array is
    never built; the caller refuses it). Syntax errors raise ``msgspec.DecodeError``."""
    first = body.lstrip()[:1]
    if first == b"[":
        return raw_items(body, max_items)
    if first == b"{":
        msgspec.json.decode(body)  # syntax check of the whole body
        return [msgspec.Raw(body)]
    raise msgspec.DecodeError("expected a JSON object or an array of objects")
