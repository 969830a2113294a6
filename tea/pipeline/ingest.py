"""The one path every receiver hands its events to: normalise, then the durable buffer."""
from __future__ import annotations

from typing import Any

import msgspec

from tea.buffer.log import DurableBuffer
from tea.auth.limits import Limiter
from tea.auth.principal import Principal
from tea.errors import RateLimited, Unavailable
from tea.telemetry import Telemetry
from tea.pipeline.normalise import Normaliser
from tea.pipeline.storable import attributes_of, refusal, suspect, suspect_events
from tea.types import Decoded, Event, ItemError, encode_lines


class Outcome(msgspec.Struct):
    """What became of a request's events (a Struct: built in C, once per request)."""

    accepted: list[Event]
    errors: list[ItemError]
    total: int
    do_not_track: bool = False  # validated, then deliberately not stored (DNT: 1)


class Ingestor:
    def __init__(self, buffer: DurableBuffer, normaliser: Normaliser, telemetry: Telemetry | None = None,
                 limiter: Limiter | None = None, live: Any = None) -> None:
        self.buffer = buffer
        self.normaliser = normaliser
        self.telemetry = telemetry or Telemetry()
        self.limiter = limiter
        self.live = live  # the live tail (tea.ui.tail.LiveTail): sees every group once it is acknowledged

    async def submit(self, decoded: Decoded, source_protocol: str, principal: Principal | None = None,
                     do_not_track: bool = False, tenant_id: str | None = None,
                     timestamps_us: bool = False) -> Outcome:
        """Normalise, count against the caller's limits, make durable; returns once acknowledged-safe.
        Raises RateLimited (429) or Unavailable (503). With ``do_not_track`` nothing is stored."""
        only = principal.tenant_id if principal is not None and not principal.is_admin else None
        # (the attributes joined once: the normaliser's searches and the screen's read them)
        events = decoded.events
        attributes = attributes_of(events)
        normaliser = self.normaliser
        accepted, errors, low, high = normaliser(events, decoded.indexes, source_protocol, tenant_id,
                                                 only, timestamps_us, attributes)
        if normaliser.stages and accepted:  # (a stage may have rewritten attributes: the screen reads theirs)
            attributes = attributes_of(accepted)
        ndjson = encode_lines(accepted) if accepted else b""
        # (refused events' attributes are searched too: a suspect there only costs the exact screen)
        if accepted and suspect_events(ndjson, attributes):
            accepted, refused, ndjson = screen(decoded, accepted, ndjson)
            errors = errors + refused
        if decoded.errors or errors:
            errors = sorted(decoded.errors + errors, key=lambda e: e.index)
        t = self.telemetry
        t.count(t.events_received, decoded.total, source_protocol)
        for error in errors:
            t.child(t.events_rejected, source_protocol, error.error).inc()
        if do_not_track and accepted:  # (a batch with nothing valid is still a 400, to surface client bugs)
            t.child(t.do_not_track, source_protocol).inc()
            return Outcome([], errors, decoded.total, True)
        if accepted:
            await self._make_durable(ndjson, len(accepted), low, high, source_protocol, principal,
                                     kinds_of(accepted))
        return Outcome(accepted, errors, decoded.total)

    async def submit_encoded(self, ndjson: bytes, accepted: int, total: int, errors: list[ItemError], low: int,
                             high: int, source_protocol: str, principal: Principal | None = None,
                             kinds: frozenset[str] | None = None) -> None:
        """``submit`` for events a receiver already normalised and encoded as NDJSON (the native OTLP mapper):
        the same counters, limits and durable append, without building events. ``kinds``: their event types,
        when the receiver knows them."""
        if suspect(ndjson, numbers=False):
            ndjson, refused = screen_lines(ndjson)
            accepted -= len(refused)
            errors = errors + refused
        t = self.telemetry
        t.child(t.events_received, source_protocol).inc(total)
        for error in errors:
            t.child(t.events_rejected, source_protocol, error.error).inc()
        if accepted:
            await self._make_durable(ndjson, accepted, low, high, source_protocol, principal, kinds)

    async def _make_durable(self, ndjson: bytes, count: int, low: int, high: int, source_protocol: str,
                            principal: Principal | None, kinds: frozenset[str] | None = None) -> None:
        t = self.telemetry
        if principal is not None and self.limiter is not None:
            try:
                await self.limiter.events(principal, count)
            except RateLimited as exc:
                t.child(t.events_rejected, source_protocol, exc.code).inc(count)
                raise
        try:
            await self.buffer.append(ndjson, count, low, high, kinds)
        except Unavailable as exc:
            t.child(t.events_rejected, source_protocol, exc.code).inc(count)
            raise
        t.count(t.events_accepted, count, source_protocol)
        live = self.live
        if live is not None and live.recording:  # (no stream open: this test is all the live tail costs)
            live.publish(ndjson, count)


_KINDS: dict[frozenset[str], frozenset[str]] = {}  # one shared set for each usual combination of event types
_ONE: dict[str, frozenset[str]] = {}  # those of one event type, by that type (a single event's group)
_KINDS_KEPT = 1024  # (event types are the clients' words: the sets shared stay bounded)


def kinds_of(events: list[Event]) -> frozenset[str]:
    """The event types of ``events``, as a set shared by every group with the same ones (while few are known):
    the buffer's readers then union them once per run of records, not once per record."""
    if len(events) == 1:  # (a single event's type: one lookup, no set built)
        shared = _ONE.get(events[0].event_type)
        if shared is not None:
            return shared
    kinds = frozenset({e.event_type for e in events})  # (a set first: its comprehension skips repeats cheaply)
    shared = _KINDS.get(kinds)
    if shared is None and len(_KINDS) < _KINDS_KEPT:
        shared = _KINDS[kinds] = kinds
        if len(kinds) == 1:
            _ONE[next(iter(kinds))] = kinds
    return shared or kinds


def screen(decoded: Decoded, accepted: list[Event], ndjson: bytes) -> tuple[list[Event], list[ItemError], bytes]:
    """The events of ``accepted`` (encoded as ``ndjson``) that can be stored, the refusals of the others
    (indexed as in the request), and the kept events' NDJSON."""
    positions: dict[str | None, int] = {}
    for position, event in enumerate(decoded.events):  # (a stage may have replaced an event: ids stay)
        positions.setdefault(event.event_id, position)
    kept: list[Event] = []
    lines: list[bytes] = []
    refused: list[ItemError] = []
    for event, line in zip(accepted, ndjson.splitlines(keepends=True)):
        why = refusal(line) if suspect(line) else None
        if why is None:
            kept.append(event)
            lines.append(line)
            continue
        position = positions.get(event.event_id, 0)
        index = decoded.indexes[position] if decoded.indexes is not None else position
        refused.append(ItemError(index, "invalid_event", why[0], event.event_id, why[1]))
    return kept, refused, b"".join(lines)


def screen_lines(ndjson: bytes) -> tuple[bytes, list[ItemError]]:
    """``screen`` for NDJSON a receiver encoded itself: the storable lines, and a refusal (indexed by
    line) for each other."""
    lines: list[bytes] = []
    refused: list[ItemError] = []
    for index, line in enumerate(ndjson.splitlines(keepends=True)):
        why = refusal(line) if suspect(line, numbers=False) else None
        if why is None:
            lines.append(line)
        else:
            refused.append(ItemError(index, "invalid_event", why[0], None, why[1]))
    return b"".join(lines), refused
