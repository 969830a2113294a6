"""The writer: the durable log's first consumer, which stores its events in large batches.

A batch is written when ``batch_events`` are waiting, ``flush_interval_s`` after the first of them
arrived, at ``flush()``, or when a read needs what waits (``flush_now`` / ``stored_through``: read-your-writes,
``tea.query.consistency``), whichever comes first (``tea.batching.BatchTrigger``; the buffer's appends
wake the writer, nothing else does while it is idle). Storage failures are retried with jittered exponential
backoff (the buffer keeps absorbing ingestion meanwhile); the writer's position moves only after storage
committed what is before it, and processors read only what is before that position. Nothing the writer
does waits for a processor. Events that the backend refuses as data are isolated by bisection and written to
the dead-letter file with the reason — counted and logged, never dropped silently.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

import msgspec

from tea.batching import BatchTrigger
from tea.buffer.log import DurableBuffer, Position
from tea.buffer.segments import Record, kinds_of
from tea.errors import StorageDataError
from tea.telemetry import Telemetry
from tea.storage.base import Storage
from tea.timeutil import format_us, now_us
from tea.types import Batch

log = logging.getLogger(__name__)


@dataclass
class WriterStats:
    batches: int = 0
    events_written: int = 0
    duplicates: int = 0
    failures: int = 0
    dead_lettered: int = 0
    last_batch_events: int = 0
    last_write_s: float = 0.0
    last_error: str | None = None
    last_error_at: float | None = None
    failing: bool = False          # the last write attempt failed: storage is unreachable or refusing


class _DeadLetter(msgspec.Struct):
    reason: str
    failed_at: str
    event: msgspec.Raw  # the event's line as the buffer holds it


class _Ids(msgspec.Struct):
    event_id: Any = None
    tenant_id: Any = None


_Key = msgspec.json.Decoder(_Ids)  # a refused line's ids, for the log (of any type: the line need not be an Event)


class Writer:
    def __init__(self, buffer: DurableBuffer, storage: Storage, *, batch_events: int = 50000,
                 flush_interval_s: float = 0.2, max_backoff_s: float = 30.0,
                 dead_letter_path: str | None = None, clock: Callable[[], int] = now_us,
                 telemetry: Telemetry | None = None) -> None:
        self.buffer = buffer
        self.storage = storage
        self.batch_events = batch_events
        self.flush_interval_s = flush_interval_s
        self.max_backoff_s = max_backoff_s
        self.dead_letter_path = dead_letter_path
        self.clock = clock
        self.telemetry = telemetry
        self.stats = WriterStats()
        self.consumed_events = 0
        self.replayed = asyncio.Event()
        # a batch is due at batch_events, flush_interval_s after its first event, at flush() or stop();
        # the buffer's appends wake the writer
        self.trigger = BatchTrigger(batch_events, flush_interval_s, wake=buffer.data)
        self._stop_wake = asyncio.Event()
        self._holding_since_us: int | None = None
        self._waiting_since_us: int | None = None
        self._log_after = 0.0
        self._urgent_events = 0  # a read waits for the log's first this many events: write them now
        self._committed = 0  # events committed to storage that the cursor has not passed yet (see _stored)
        self._reads: list[tuple[int, int, asyncio.Future[bool]]] = []  # (events, n, future): a heap of waiting reads
        self._read_numbers = itertools.count()

    # ----------------------------------------------------------------- main loop
    async def run(self) -> None:
        """Drain until stopped. While a backlog of at least a full batch waits, the read of the next batch (from
        memory, or from the segment files in a worker thread) overlaps the storage write of the current one."""
        buffer = self.buffer
        cursor = buffer.writer
        loop = asyncio.get_running_loop()
        trigger = self.trigger
        pos = cursor.position
        self._check_replayed(pos)
        ahead: asyncio.Task[tuple[list[Record], Position, int] | None] | None = None
        try:
            while True:
                pos = buffer.next_position(pos)
                if ahead is None:
                    if not buffer.has_data(pos):
                        self._waiting_since_us = None
                        trigger.caught_up()
                        if trigger.stopping:
                            buffer.advance(cursor, pos, 0)  # drop a drained last segment too
                            return
                        await trigger.wait()  # (an append or stop() wakes it: nothing while idle)
                        continue
                    if self._waiting_since_us is None:  # (when the oldest waiting event arrived, if known)
                        self._waiting_since_us = buffer.first_append_ts(pos) or self.clock()
                    since = trigger.clock() - max(0.0, (self.clock() - self._waiting_since_us) / 1e6)
                    while not trigger.is_due(max(1, self.available()), since) and \
                            self._urgent_events <= cursor.events:
                        await trigger.wait(since)
                    records, end, _spanned = await buffer.read(pos, self.batch_events)
                else:
                    found, ahead = await ahead, None
                    if found is None:  # no full batch came while the last one was written: the usual way
                        continue
                    records, end, _spanned = found
                count = sum(r.count for r in records)
                if records:
                    self._holding_since_us = records[0].append_ts
                    batch = Batch([r.payload for r in records], count, min(r.min_ts for r in records),
                                  max(r.max_ts for r in records), kinds_of(records))
                    committed = loop.create_future()
                    ahead = asyncio.ensure_future(self._read_ahead(end, count, committed))
                    try:
                        await self._commit(batch)
                    finally:
                        committed.set_result(None)
                    self.consumed_events += count
                    await self._stored(count)
                buffer.advance(cursor, end, count)  # (processors may now read it)
                self._committed = 0
                self._holding_since_us = self._waiting_since_us = None
                pos = end
                self._check_replayed(buffer.next_position(pos))
        finally:
            if ahead is not None and not ahead.done():
                ahead.cancel()

    async def _read_ahead(self, pos: Position, behind: int, committed: "asyncio.Future[None]",
                          ) -> tuple[list[Record], Position, int] | None:
        """While the batch of ``behind`` events before ``pos`` is written: once a full batch waits after it,
        read that batch (None if none did before the write ended). Woken by appends, never by a timer."""
        buffer = self.buffer
        while self.available() - behind < self.batch_events or not buffer.has_data(pos):
            if committed.done() or self.trigger.stopping:
                return None
            await asyncio.wait((buffer.data.future(), committed), return_when=asyncio.FIRST_COMPLETED)
        return await buffer.read(buffer.next_position(pos), self.batch_events)

    def available(self) -> int:
        """Durable events not yet committed to storage."""
        return self.buffer.lag_events(self.buffer.writer)

    def _check_replayed(self, pos: Position) -> None:
        if not self.replayed.is_set() and (self.buffer.replay_events == 0 or pos >= self.buffer.replay_end):
            self.replayed.set()
            if self.buffer.replay_events:
                log.info("buffer replay complete: %d events", self.buffer.replay_events)

    def lag_seconds(self) -> float:
        """Age of the oldest acknowledged event not yet committed to storage."""
        since = self._holding_since_us or self._waiting_since_us
        if since is None:
            return 0.0
        return max(0.0, (self.clock() - since) / 1e6)

    # ----------------------------------------------------------------- read-your-writes
    def flush_now(self, events: int) -> None:
        """Write what waits now, not at the next ``flush_interval_s``, until storage holds the log's first ``events``
        events (counted as ``Cursor.events`` / ``DurableBuffer.acknowledged_events``) — also events acknowledged
        but not yet durable (``buffer.ack=memory``), once they are. Batches are still cut at ``batch_events``; the
        write itself is the usual one (set-based, retried)."""
        if events > self._urgent_events:
            self._urgent_events = events
            self.trigger.wake.fire()

    @property
    def stored_events(self) -> int:
        """The log's first this many events are committed to storage (the cursor passes them next)."""
        return self.buffer.writer.events + self._committed

    async def stored_through(self, events: int, deadline: float) -> bool:
        """Whether storage holds the log's first ``events`` events by ``deadline`` (the event loop's clock): True at
        once when it does already (one comparison); else ``flush_now`` and wait, woken by the commit that stores
        them (never polling). False when the deadline passed first (storage down or slow)."""
        if self.stored_events >= events:
            return True
        self.flush_now(events)
        loop = asyncio.get_running_loop()
        read = (events, next(self._read_numbers), loop.create_future())
        heapq.heappush(self._reads, read)
        timer = loop.call_at(deadline, _answer, read[2], False)
        try:
            return await read[2]
        finally:
            timer.cancel()
            if read in self._reads:  # (gave up, or cancelled: out of the heap, which stays bounded)
                self._reads.remove(read)
                heapq.heapify(self._reads)

    async def _stored(self, count: int) -> None:
        """Storage committed ``count`` more events: wake the reads waiting for them first, before the cursor is
        persisted and the processors wake (a read answers one hop after the commit)."""
        self._committed = count
        stored, reads, woke = self.stored_events, self._reads, False
        while reads and reads[0][0] <= stored:
            woke = _answer(heapq.heappop(reads)[2], True) or woke
        if woke:
            await asyncio.sleep(0)  # (their tasks run before this one goes on)

    def flush(self) -> None:
        """Write what is durable now without waiting for a full batch or the flush interval (until caught up);
        ``buffer.writer.advanced`` fires as each batch is committed."""
        self.trigger.flush()

    def stop(self) -> None:
        """Write what is buffered without waiting for full batches, then return from run()."""
        self._stop_wake.set()
        self.trigger.stop()

    # ----------------------------------------------------------------- committing
    async def _commit(self, batch: Batch) -> None:
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                result = await self.storage.write_batch(batch)
            except StorageDataError as exc:
                await self._isolate(batch, exc)
                return
            except Exception as exc:  # storage boundary: log, count, retry
                attempt += 1
                self._failed(exc)
                delay = min(self.max_backoff_s, 0.05 * 2 ** min(attempt, 20)) * random.uniform(0.5, 1.0)
                self._stop_wake.clear()
                try:
                    await asyncio.wait_for(self._stop_wake.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                continue
            self.stats.failing = False
            self.stats.batches += 1
            self.stats.events_written += result.written
            self.stats.duplicates += result.duplicates
            self.stats.last_batch_events = batch.count
            self.stats.last_write_s = time.perf_counter() - started
            if self.telemetry is not None:
                self.telemetry.writer_batch_events.observe(batch.count)
                self.telemetry.storage_write_seconds.observe(self.stats.last_write_s)
                self.telemetry.events_written.inc(result.written)
                self.telemetry.duplicates.inc(result.duplicates)
            return

    def _failed(self, exc: BaseException) -> None:
        self.stats.failing = True
        self.stats.failures += 1
        if self.telemetry is not None:
            self.telemetry.storage_failures.inc()
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        self.stats.last_error_at = time.time()
        now = time.monotonic()
        if now >= self._log_after:  # at most one line every 10 s while storage is down
            self._log_after = now + 10.0
            log.error("storage write failed (%d failures so far); retrying with backoff: %s",
                      self.stats.failures, exc)

    async def _isolate(self, batch: Batch, exc: StorageDataError) -> None:
        """Write the batch in halves until each line storage refuses is alone, and set those lines aside. The
        halves are cut from the lines as the buffer holds them, never decoded: a line storage refused need not
        be a valid ``Event`` either, and a decoding error here would stop the writer on every replay."""
        lines = batch.ndjson().splitlines(keepends=True)
        if len(lines) <= 1:
            for line in lines:
                self._dead_letter(line.rstrip(b"\n"), str(exc))
            return
        middle = len(lines) // 2
        for half in (lines[:middle], lines[middle:]):  # (the batch's time range holds each half's)
            await self._commit(Batch(half, len(half), batch.min_ts, batch.max_ts, batch.kinds))

    def _dead_letter(self, line: bytes, reason: str) -> None:
        self.stats.dead_lettered += 1
        if self.telemetry is not None:
            self.telemetry.dead_lettered.inc()
        event = msgspec.Raw(line)
        try:
            key = _Key.decode(line)
            what = f"event {key.event_id} of tenant {key.tenant_id}"
        except msgspec.DecodeError:  # (not JSON: kept as a string)
            what, event = "an event", msgspec.Raw(msgspec.json.encode(line.decode("utf-8", "replace")))
        log.error("%s refused by storage, written to the dead-letter file: %s", what, reason)
        if self.dead_letter_path is None:
            return
        os.makedirs(os.path.dirname(self.dead_letter_path), exist_ok=True)
        line = msgspec.json.encode(_DeadLetter(reason, format_us(self.clock()), event)) + b"\n"
        with open(self.dead_letter_path, "ab") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


def _answer(read: "asyncio.Future[bool]", stored: bool) -> bool:
    """Settle a waiting read's future (unless it was already); whether it was waiting."""
    if read.done():
        return False
    read.set_result(stored)
    return True
