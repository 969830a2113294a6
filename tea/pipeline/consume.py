"""One processor as a consumer of the durable log.

Each processor reads the log from its own durable position, only as far as the writer has committed
(a processor never runs ahead of storage), and at its own pace: storing events never waits for it, a
slow one lags and catches up. It reads what is committed in chunks of at most ``read_events`` events,
keeps the lines it wants (the needles of ``wants_lines``, or ``wants_any`` / ``wants`` probes), and hands
them over in batches of ``batch_size`` — a partial batch once ``batch_timeout_s`` has passed since its first
event was read, or at once when a read of derived data needs it (``hurry`` / ``handled_through``). A processor
that ``takes_ndjson`` is handed its lines as a ``Batch``, never decoded for it. Between slices of its work (and
of the consumer's) the event loop serves what is waiting first (``give_way``).
Its position moves past a record only once every event of it the processor wanted has been handled
(processed, or sent to the dead-letter queue after the retries): after a crash the processor sees again
what it had not finished — at least once, never lost.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

from tea.batching import BatchTrigger
from tea.buffer.cursors import Position
from tea.buffer.segments import Record, kinds_of
from tea.scan import select_lines
from tea.types import Batch, Event

if TYPE_CHECKING:
    from tea.buffer.log import DurableBuffer

log = logging.getLogger(__name__)
SLICE = 2048  # lines decoded between two yields to the event loop
RECORDS_SLICE = 4  # records (of ~100 events, as OTLP exporters send them) filtered between two yields
PICKED_SLICE = 512  # lines a processor's wants_lines found, sliced out between two yields
RESUME_AFTER_S = 5.0  # after an unexpected error, a processor resumes from its position this much later
WAITING_S = 0.0002  # others ran this long at a yield: something was waiting for the event loop
GIVE_WAY = 1.0  # then a processor pauses this many times as long as they ran (at most MAX_PAUSE_S)
MAX_PAUSE_S = 0.05


async def give_way() -> None:
    """Between two slices of a processor's work: let the event loop run what is waiting (requests, the writer's
    commits) and, when something was, pause about as long again before the next slice. An idle loop is the
    processor's at once; a busy one keeps most of its time for receiving and storing events (a request is not
    served between the steps of a slice), while the processor still moves on."""
    started = time.perf_counter()
    await asyncio.sleep(0)
    others = time.perf_counter() - started
    if others > WAITING_S:
        await asyncio.sleep(min(others * GIVE_WAY, MAX_PAUSE_S))
LogPosition = tuple[int, int, int]  # (segment, offset of the event's record, index of its line in the record)


@dataclass(frozen=True)
class Delivery:
    """What a processor that sets ``takes_delivery = True`` gets besides its events: the log they come from
    and each event's position in it. Positions of one log only grow, and an event redelivered after a crash
    has the same position: a processor that records the last position it applied (per ``log_id``) in the
    same write as its effect applies each event exactly once."""

    log_id: str
    positions: list[LogPosition]


# (event — or its NDJSON line, for a processor that takes_ndjson —, its position, events of the log before its
# record): one event read and wanted, not yet handed over
_Held = tuple[Any, LogPosition, int]
Deliver = Callable[[str, Any, Sequence[Event], Delivery], Awaitable[bool]]


def _wants_lines(name: str, declared: Any) -> tuple[bytes, tuple[bytes, ...]] | None:
    """A processor's ``wants_lines``, checked: ``(required, any_of)``, the lines it wants holding ``required``
    and any of ``any_of`` (bytes each)."""
    if declared is None:
        return None
    required, any_of = declared if isinstance(declared, tuple) and len(declared) == 2 else (None, None)
    if not isinstance(required, bytes) or not isinstance(any_of, tuple) or \
            not all(isinstance(needle, bytes) for needle in any_of):
        raise TypeError(f"processor {name}: wants_lines must be (bytes, tuple of bytes), not {declared!r}")
    return required, any_of


class ProcessorConsumer:
    def __init__(self, name: str, fn: Any, buffer: "DurableBuffer", deliver: Deliver, *, batch_size: int,
                 batch_timeout_s: float, read_events: int, on_advance: Callable[[], None]) -> None:
        self.name = name
        self.fn = fn
        self.buffer = buffer
        self.cursor = buffer.cursor(name)
        self.deliver = deliver
        # a processor may ask for its own batching (the activity counts merge a whole interval in one write)
        self.batch_size = int(getattr(fn, "batch_size", batch_size))
        self.batch_timeout_s = float(getattr(fn, "batch_timeout_s", batch_timeout_s))
        self.read_events = max(read_events, self.batch_size)
        self.on_advance = on_advance
        self.wants_any = getattr(fn, "wants_any", None)
        self.wants_any_chunks = bool(getattr(fn, "wants_any_takes_chunks", False))
        self.wants = getattr(fn, "wants", None)
        self.wants_lines = _wants_lines(name, getattr(fn, "wants_lines", None))  # (required, any_of) needles
        self.takes_ndjson = bool(getattr(fn, "takes_ndjson", False))  # handed a Batch of its lines, not decoded
        types = getattr(fn, "event_types", None)  # the only event types it wants: records of none are not searched
        self.event_types = frozenset(types) if types is not None else None
        self.failed: list[int] = []  # log event numbers of events sent to the DLQ (for events_processed)
        # a batch is due at batch_size held, batch_timeout_s after the first was read, or at stop(); the
        # writer's commits wake the consumer
        self.trigger = BatchTrigger(self.batch_size, self.batch_timeout_s, wake=buffer.writer.advanced)
        self._held: list[_Held] = []
        self._held_since = 0.0
        self._read_at = Position(0, 0)
        self._read_events = 0  # log events before _read_at (the cursor's count, plus what was read since)
        self._urgent_events = 0  # a read waits for this processor to pass the log's first this many events

    def stop(self) -> None:
        """Hand over what is held and what the writer has committed, then return from run()."""
        self.trigger.stop()

    def hurry(self, events: int) -> None:
        """Hand over what is held now, not when ``batch_timeout_s`` ends, until past the log's first ``events``."""
        if events > self._urgent_events and events > self.cursor.events:
            self._urgent_events = events
            self.trigger.wake.fire()  # (the writer's pulse, which a waiting consumer sleeps on: it sees the hurry)

    async def handled_through(self, events: int, deadline: float) -> bool:
        """Whether this processor has passed the log's first ``events`` events by ``deadline`` (the event loop's
        clock): True at once when it has; else it hands over what it holds now, not when ``batch_timeout_s`` ends,
        and this waits, woken by its position moving. False when the deadline passed first."""
        self.hurry(events)
        return await self.cursor.reached(events, deadline)

    async def run(self) -> None:
        """Consume until ``stop()``. An unexpected error (a failing disk, a bug) never ends a processor silently:
        it is logged and the processor resumes from its durable position."""
        while True:
            try:
                await self._consume()
                return
            except Exception:  # (a plugin's own errors are retried and dead-lettered before they get here)
                log.exception("processor %s stopped on an unexpected error; it resumes from its position in %.0f s",
                              self.name, RESUME_AFTER_S)
                self._held = []
                await asyncio.sleep(RESUME_AFTER_S)

    async def _consume(self) -> None:
        buffer, writer, trigger = self.buffer, self.buffer.writer, self.trigger
        self._read_at, self._read_events = self.cursor.position, self.cursor.events
        while True:
            self._read_at = buffer.next_position(self._read_at)
            more = buffer.has_data(self._read_at, writer.position)
            if more and len(self._held) < self.batch_size:
                await self._read(writer.position)
                continue
            since = self._held_since if self._held else None
            urgent = bool(self._held) and self._urgent_events > self.cursor.events  # (a read waits: hurry())
            if urgent or trigger.is_due(len(self._held), since):
                await self._hand_over(everything=urgent or trigger.expired(since))
                continue
            if not more and not self._held:
                trigger.caught_up()
                self._advance(self._read_at, self._read_events)
                if trigger.stopping:
                    return
            await trigger.wait(since)  # (the writer's next commit, stop(), or the open batch's interval)

    async def _read(self, limit: Position) -> None:
        if self.event_types is not None:  # records known to hold none of its types are passed unread
            passed = self.buffer.skip(self._read_at, self.read_events, limit, self.event_types)
            if passed is not None:
                self._read_at, events = passed
                self._read_events += events
                if not self._held:
                    self._advance(self._read_at, self._read_events)
                return
        records, end, _ = await self.buffer.read(self._read_at, self.read_events, limit)
        before = self._read_events
        if records and not self._held:
            self._held_since = time.monotonic()
        self._held += await self._select(records, before)
        self._read_at = end
        self._read_events = before + sum(r.count for r in records)
        if not self._held:  # nothing wanted: pass it at once
            self._advance(end, self._read_events)

    async def _select(self, records: list[Record], events_before: int) -> list[_Held]:
        """The events of ``records`` this processor wants, decoded, with their log positions. The lines a
        processor's ``wants_lines`` names are found in a worker thread (the built-in search runs without the GIL);
        else a whole-read probe runs there first, then a per-line one."""
        if self.event_types is not None:
            kinds = kinds_of(records)  # (known for records read from memory)
            if kinds is not None and not kinds & self.event_types:
                return []
        chunks = [r.payload for r in records]
        if self.wants_lines is not None:
            found = await asyncio.to_thread(select_lines, chunks, *self.wants_lines)
            picked = await self._picked(records, found, events_before)
        else:
            probe = self.wants_any
            if probe is not None:
                whole = self.wants_any_chunks
                if not await asyncio.to_thread(lambda: probe(chunks) if whole else any(probe(c) for c in chunks)):
                    return []
            picked = await self._split(records, events_before)
        if self.takes_ndjson:
            return picked
        held: list[_Held] = []
        for start in range(0, len(picked), SLICE):
            part = picked[start:start + SLICE]
            events = Batch([b"\n".join([line for line, _, _ in part]) + b"\n"], len(part), 0, 0).events()
            held += [(e, pos, n) for e, (_, pos, n) in zip(events, part)]
            await give_way()
        return held

    async def _picked(self, records: list[Record], found: list[list[tuple[int, int, int]]],
                      events_before: int) -> list[_Held]:
        """The lines ``select_lines`` found in ``records``, sliced out, with their positions (each with its
        newline for a processor that takes NDJSON: a Batch chunk of its own)."""
        picked: list[_Held] = []
        if not any(found):
            return picked
        newline = 1 if self.takes_ndjson else 0
        before, pause_at = events_before, PICKED_SLICE
        for segment, record, spans in zip(self._segments(records), records, found):
            if spans:
                payload, offset, count = record.payload, record.offset, record.count
                if spans[-1][0] >= count:  # (lines past the record's events are not its)
                    spans = [span for span in spans if span[0] < count]
                picked += [(payload[start:end + newline], (segment, offset, index), before)
                           for index, start, end in spans]
                if newline and spans and spans[-1][2] == len(payload):  # (its last line had no newline)
                    line, pos, n = picked[-1]
                    picked[-1] = (line + b"\n", pos, n)
                if len(picked) >= pause_at:
                    pause_at = len(picked) + PICKED_SLICE
                    await give_way()
            before += record.count
        return picked

    async def _split(self, records: list[Record], events_before: int) -> list[_Held]:
        """The lines of ``records`` the processor's ``wants`` picks (all without one), with their positions."""
        wants, raw = self.wants, self.takes_ndjson
        picked: list[_Held] = []
        before = events_before
        for n, (segment, record) in enumerate(zip(self._segments(records), records)):
            for index, line in enumerate(record.payload.split(b"\n")[:record.count]):
                if wants is None or wants(line):  # (with its newline, a line a Batch chunk of its own)
                    picked.append((line + b"\n" if raw else line, (segment, record.offset, index), before))
            before += record.count
            if n % RECORDS_SLICE == RECORDS_SLICE - 1:
                await give_way()
        return picked

    def _segments(self, records: list[Record]) -> list[int]:
        """The segment of each record read from ``_read_at`` on: offsets restart at 0 in the next segment."""
        segment, last_end = self._read_at.segment, self._read_at.offset
        found = []
        for record in records:
            if record.offset < last_end:
                segment = self.buffer.next_position(Position(segment, last_end)).segment
            found.append(segment)
            last_end = record.end
        return found

    async def _hand_over(self, everything: bool) -> None:
        """Deliver full batches (and the rest when ``everything``); move the position past what was handled."""
        log_id = self.buffer.log_id
        while self._held and (everything or len(self._held) >= self.batch_size):
            chunk, self._held = self._held[:self.batch_size], self._held[self.batch_size:]
            items = [e for e, _, _ in chunk]
            events = Batch(items, len(items), 0, 0) if self.takes_ndjson else items  # (its lines, one chunk each)
            ok = await self.deliver(self.name, self.fn, events, Delivery(log_id, [pos for _, pos, _ in chunk]))
            if not ok:
                self.failed += [n + pos[2] for _, pos, n in chunk]
        if self._held:  # the rest waits for a full batch or the timeout: keep its record
            _, (segment, offset, _), n = self._held[0]
            self._held_since = time.monotonic()
            self._advance(Position(segment, offset), n)
        else:
            self._advance(self._read_at, self._read_events)

    def _advance(self, pos: Position, events: int) -> None:
        if pos > self.cursor.position or events > self.cursor.events:
            self.buffer.advance(self.cursor, pos, events - self.cursor.events)
            self.on_advance()
