"""Queue items → wire objects: client-made ids (UUIDv7), RFC 3339 timestamps, columns vs attributes.

Everything here runs on the sender thread, never on the thread that called ``record()``: the calling
thread only stores the time and the caller's own keyword dict.
"""
from __future__ import annotations

import os
import random
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import msgspec

EVENTS = "events"                  # POST /v1/events
COMMUNICATIONS = "communications"  # POST /v1/communications (ElfAutomations' communication_telemetry rows)
PATHS = {EVENTS: "/v1/events", COMMUNICATIONS: "/v1/communications"}

# TEA's canonical event columns a client may set (received_at and source_protocol are TEA's own)
EVENT_COLUMNS = frozenset({
    "event_id", "tenant_id", "timestamp", "source", "user_id", "session_id", "organization", "method",
    "target", "protocol", "status", "status_code", "duration_ms", "request_size", "response_size",
    "tokens_used", "cost", "error_type", "error_message", "trace_id", "span_id", "parent_span_id",
    "correlation_id", "tags", "attributes", "tool", "model", "input_tokens", "output_tokens"})

Builder = Callable[[float, Any], Optional[Dict[str, Any]]]


_random = random.Random()  # ids need uniqueness, not secrecy: no getrandom() syscall per id
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_random.seed)  # a forked child must not repeat its parent's ids


def uuid7(t: float) -> str:
    """A UUIDv7 (RFC 9562) for the instant ``t`` (Unix seconds): 48-bit milliseconds, version 7, 12 random
    bits, variant 10, 62 random bits."""
    ms = int(t * 1000) & 0xFFFFFFFFFFFF
    r = _random.getrandbits(74)
    return "%08x-%04x-%04x-%04x-%012x" % (ms >> 16, ms & 0xFFFF, 0x7000 | r >> 62, 0x8000 | (r >> 48) & 0x3FFF,
                                          r & 0xFFFFFFFFFFFF)


_COUNTER_START_MAX = 1 << 47  # a batch's counter starts below this: 2**47 more ids before it could wrap


class Ids:
    """UUIDv7s (RFC 9562) for a batch at once: the millisecond the batch is built, 26 random bits, then a
    48-bit counter (RFC 9562 6.2, "monotonic random") from a random start, incremented per id — one
    string format per event instead of a random draw and five fields. Ids of one process only grow
    within a millisecond; time-ordered ids keep TEA's duplicate check cheap (storage skips row groups
    outside a batch's id range), and a batch's ids are one narrow range."""

    def __init__(self) -> None:
        self._ms = -1
        self._head = ""
        self._next = 0

    def __call__(self, count: int, now: Optional[float] = None) -> List[str]:
        ms = int((time.time() if now is None else now) * 1000) & 0xFFFFFFFFFFFF
        if ms != self._ms or self._next + count >= 1 << 48:
            r = _random.getrandbits(74)
            self._ms, self._next = ms, (r & 0xFFFFFFFFFFFF) % _COUNTER_START_MAX
            self._head = "%08x-%04x-%04x-%04x-" % (ms >> 16, ms & 0xFFFF, 0x7000 | r >> 62,
                                                   0x8000 | (r >> 48) & 0x3FFF)
        start, head = self._next, self._head
        self._next = start + count
        return list(map(("%s%%012x" % head).__mod__, range(start, start + count)))


class Timestamps:
    """RFC 3339 UTC with microseconds; the date-time part is formatted once per second."""

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def __call__(self, t: float) -> str:
        second = int(t)
        if second != self.second:
            self.second, self.prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        return "%s%06dZ" % (self.prefix, (t - second) * 1_000_000)  # %d truncates the float


_shapes: Dict[Tuple[str, ...], Tuple[str, ...]] = {}  # the keywords of a record() call -> those not columns
_MAX_SHAPES = 4096  # kinds of calls remembered; past that, callers with ever-new keywords are split afresh


def _learn(shape: Tuple[str, ...]) -> Tuple[str, ...]:
    extra = tuple(key for key in shape if key not in EVENT_COLUMNS)
    if len(_shapes) < _MAX_SHAPES:
        _shapes[shape] = extra
    return extra


def event(t: float, event_type: str, fields: Dict[str, Any], defaults: Dict[str, Any], stamp: Timestamps,
          event_id: Optional[str] = None) -> Dict[str, Any]:
    """One native event: known columns at the top, every other keyword in ``attributes``. ``fields`` is the
    caller's keyword dict (a fresh one per ``record()`` call) and may be reused as the event; ``event_id``
    is used when the caller named none (default: a fresh UUIDv7)."""
    out = {**defaults, **fields} if defaults else fields
    shape = tuple(out)
    extra = _shapes.get(shape)
    if extra is None:
        extra = _learn(shape)
    if extra:
        given = out.get("attributes")
        moved = {key: out.pop(key) for key in extra}
        out["attributes"] = {**given, **moved} if isinstance(given, dict) else moved
    if None in out.values():
        out = {key: value for key, value in out.items() if value is not None}
    out["event_type"] = event_type
    if "event_id" not in out:
        out["event_id"] = event_id or uuid7(t)
    if "timestamp" not in out:
        second = int(t)
        if second == stamp.second:  # (Timestamps.__call__, inlined: one call less per event)
            out["timestamp"] = "%s%06dZ" % (stamp.prefix, (t - second) * 1_000_000)
        else:
            out["timestamp"] = stamp(t)
    return out


def communication(t: float, row: Dict[str, Any], stamp: Callable[[float], str],
                  row_id: Optional[str] = None) -> Dict[str, Any]:
    """One communication_telemetry row: ``id`` is the idempotency key, as ``event_id`` is for events."""
    out = {key: value for key, value in row.items() if value is not None}
    if "id" not in out:
        out["id"] = row_id or uuid7(t)
    if "timestamp" not in out:
        out["timestamp"] = stamp(t)
    return out


def _fallback(value: Any) -> Any:
    """What msgspec cannot encode is sent as its ``str()``: recording never fails on a value's type."""
    return str(value)


_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError)


class Encoder:
    """Queue items → JSON request bodies of at most ``max_batch_bytes``, one list per channel.

    ``invalid(n)`` is told about events that could not be built or encoded (they are dropped, counted)."""

    def __init__(self, defaults: Dict[str, Any], max_batch_bytes: int, invalid: Callable[[int, str], None]) -> None:
        self.defaults, self.max_batch_bytes, self.invalid = defaults, max_batch_bytes, invalid
        self.stamp = Timestamps()
        self.ids = Ids()
        self.json = msgspec.json.Encoder(enc_hook=_fallback)

    def batches(self, items: List[Tuple[str, float, Any, Any]]) -> List[Tuple[str, bytes, int]]:
        events: List[Dict[str, Any]] = []
        others: Dict[str, List[Dict[str, Any]]] = {}
        defaults, stamp = self.defaults, self.stamp
        for (channel, t, first, second), event_id in zip(items, self.ids(len(items))):
            try:
                if channel == EVENTS and first.__class__ is str:  # record(): the common case
                    events.append(event(t, first, second, defaults, stamp, event_id))
                elif channel == COMMUNICATIONS:
                    others.setdefault(channel, []).append(communication(t, second, stamp, event_id))
                elif callable(first):  # a deferred builder (the MCP middleware's calls): None, one or a list
                    built = first(t, second)
                    if not built:
                        self.invalid(1, "")  # not an event after all (e.g. a JSON-RPC notification)
                        continue
                    for fields in (built if isinstance(built, list) else [built]):
                        events.append(event(t, fields.pop("event_type"), fields, defaults, stamp))
                else:
                    others.setdefault(channel, []).append(event(t, first, second, defaults, stamp, event_id))
            except Exception as exc:  # a builder's bug or a bad argument: drop this one event, counted
                self.invalid(1, "an event could not be built: %r" % (exc,))
        out: List[Tuple[str, bytes, int]] = []
        if events:
            self._pack(EVENTS, events, out)
        for channel, objs in others.items():
            self._pack(channel, objs, out)
        return out

    def _pack(self, channel: str, objs: List[Dict[str, Any]], out: List[Tuple[str, bytes, int]]) -> None:
        try:
            body, count = self.json.encode(objs), len(objs)
        except _ENCODE_ERRORS:
            body, count = self._each(objs)
            if not count:
                return
        if len(body) > self.max_batch_bytes and count > 1 and count == len(objs):
            half = len(objs) // 2
            self._pack(channel, objs[:half], out)
            self._pack(channel, objs[half:], out)
            return
        out.append((channel, body, count))

    def _each(self, objs: List[Dict[str, Any]]) -> Tuple[bytes, int]:
        parts = []
        for obj in objs:
            try:
                parts.append(self.json.encode(obj))
            except _ENCODE_ERRORS as exc:
                self.invalid(1, "an event cannot be encoded as JSON: %r" % (exc,))
        return b"[" + b",".join(parts) + b"]", len(parts)
