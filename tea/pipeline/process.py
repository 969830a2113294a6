"""Processors: plugins that read the events storage has committed, each as a consumer of the durable log.

Each processor (``tea.pipeline.consume``) reads the log from its own durable position, behind the
writer, at its own pace: storing events never waits for a processor; a slow one lags (``/health``,
``tea_consumer_lag_events`` / ``tea_consumer_lag_seconds``) and catches up; the buffer keeps every
segment until every processor has passed it (its bound counts the slowest). Events reach a processor
in batches of ``batch_size``, or whatever was read within ``batch_timeout_s``. Each batch is tried
``retry_attempts`` times in all (Telemetron's meaning: 3 = the first try and two retries; 0 and 1 both
mean once), ``retry_delay_s`` apart, and a batch it still fails on goes to the dead-letter queue
(persisted in storage, listable at ``GET /v1/dlq``, replayable) — never to a log line alone: when
storage refuses the entry too, it is appended to ``fallback_path`` (fsynced, counted) and moved into
storage at the next start. One processor failing or lagging does not hold the others back.

Telemetron's metrics keep its meaning: ``telemetron_processor_plugin_errors_total`` once per batch a
processor gave up on, ``telemetron_processor_plugin_duration_seconds`` once per processor and batch
(retries included), ``telemetron_events_processed_total`` for committed events once every processor
has passed them, less those some processor sent to the DLQ (events no processor wants count when every
processor has passed them; with no processor at all, at the commit).

Delivery is at least once: a crash before a processor's position moved past a batch hands it that batch
again after the restart (``Delivery`` gives each event's log position, for processors that make their
effects exactly once); nothing committed is ever skipped.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

import msgspec

from tea.errors import NotFound
from tea.telemetry import Telemetry
from tea.pipeline.consume import Delivery, ProcessorConsumer
from tea.storage.base import Storage
from tea.timeutil import now_us
from tea.types import Batch, DeadLetter, Event, encode_lines

if TYPE_CHECKING:
    from tea.buffer.log import DurableBuffer

log = logging.getLogger(__name__)
Processor = Callable[[list[Event]], Awaitable[None]]


class ProcessorRunner:
    def __init__(self, processors: list[tuple[str, Processor]], storage: Storage, buffer: "DurableBuffer", *,
                 batch_size: int = 100, batch_timeout_s: float = 1.0, retry_attempts: int = 3,
                 retry_delay_s: float = 1.0, read_events: int = 100_000, telemetry: Telemetry | None = None,
                 clock: Callable[[], int] = now_us, fallback_path: str | None = None) -> None:
        self.processors = dict(processors)
        self.storage = storage
        self.buffer = buffer
        self.attempts = max(1, retry_attempts)  # in all, as Telemetron counts them
        self.retry_delay_s = retry_delay_s
        self.fallback_path = fallback_path
        self.telemetry = telemetry
        self.clock = clock
        self.consumers = [ProcessorConsumer(name, fn, buffer, self._deliver, batch_size=batch_size,
                                            batch_timeout_s=batch_timeout_s, read_events=read_events,
                                            on_advance=self._count_processed)
                          for name, fn in self.processors.items()]
        self._counted: int | None = None  # log events counted in telemetron_events_processed_total
        self._stopping = False
        self.processed_batches = 0
        self.dead_lettered = 0
        self.dlq_fallback = 0  # dead letters storage refused, kept in the fallback file

    async def run(self) -> None:
        """Move dead letters left in the fallback file into storage, then run every processor's consumer until
        ``stop()`` (with no processor: count committed events as processed as the writer commits them)."""
        await self.recover_fallback()
        self._counted = min(c.events for c in self._cursors())
        if self.consumers:
            await asyncio.gather(*(c.run() for c in self.consumers))
            return
        writer = self.buffer.writer
        while not self._stopping:
            await writer.advanced.wait()
            self._count_processed()

    def stop(self) -> None:
        """Processors hand over what the writer has committed (and what they hold), then return."""
        self._stopping = True
        for consumer in self.consumers:
            consumer.stop()
        self.buffer.writer.advanced.fire()

    def _cursors(self) -> list[Any]:
        return [c.cursor for c in self.consumers] or [self.buffer.writer]

    def _count_processed(self) -> None:
        """Count the events every processor has passed since the last call, less those some processor gave up on."""
        passed = min(c.events for c in self._cursors())
        if self._counted is None or passed <= self._counted:
            return
        failed: set[int] = set()
        for consumer in self.consumers:
            failed.update(n for n in consumer.failed if n < passed)
            consumer.failed = [n for n in consumer.failed if n >= passed]
        self._processed(passed - self._counted - len(failed))
        self._counted = passed

    def _processed(self, count: int) -> None:
        if self.telemetry is not None and count > 0:
            self.telemetry.telemetron_events_processed.inc(count)

    async def _deliver(self, name: str, fn: Any, events: Sequence[Event], delivery: Delivery | None) -> bool:
        started = time.perf_counter()
        error: BaseException | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                await (fn(events, delivery) if delivery is not None and getattr(fn, "takes_delivery", False)
                       else fn(events))
            except Exception as exc:  # plugin boundary: retry, then dead-letter
                error = exc
                log.warning("processor %s failed on a batch of %d events (attempt %d of %d): %s",
                            name, len(events), attempt, self.attempts, exc)
                if attempt < self.attempts:
                    await asyncio.sleep(self.retry_delay_s)
                continue
            self._observe(name, "success", time.perf_counter() - started)
            self.processed_batches += 1
            return True
        self._observe(name, "error", time.perf_counter() - started)
        await self._dead_letter(name, events, error, self.attempts)
        return False

    def _observe(self, name: str, status: str, seconds: float) -> None:
        t = self.telemetry
        if t is None:
            return
        t.child(t.telemetron_plugin_duration, name, status).observe(seconds)
        if status == "error":
            t.child(t.telemetron_plugin_errors, name).inc()

    async def _dead_letter(self, name: str, events: Sequence[Event], error: BaseException | None,
                           attempts: int) -> None:
        entry = DeadLetter(id=str(uuid.uuid4()), at=self.clock(), stage=name,
                           error=f"{type(error).__name__}: {error}", attempts=attempts, event_count=len(events),
                           payload=encode_lines(events).decode())
        self.dead_lettered += 1
        if self.telemetry is not None:
            self.telemetry.dlq_entries.labels(name).inc()
        log.error("processor %s failed %d times on a batch of %d events; sent to the DLQ as %s: %s",
                  name, attempts, len(events), entry.id, entry.error)
        try:
            await self.storage.add_dead_letter(entry)
        except Exception as exc:  # storage boundary: keep the entry in the fallback file instead
            self._fallback(entry, exc)

    def _fallback(self, entry: DeadLetter, exc: BaseException) -> None:
        self.dlq_fallback += 1
        if self.telemetry is not None:
            self.telemetry.dlq_fallback.labels(entry.stage).inc()
        if self.fallback_path is None:
            log.error("could not store DLQ entry %s (%d events of %s) and no fallback file is set: %s",
                      entry.id, entry.event_count, entry.stage, exc)
            return
        try:
            os.makedirs(os.path.dirname(self.fallback_path), exist_ok=True)
            with open(self.fallback_path, "ab") as fh:
                fh.write(msgspec.json.encode(entry) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as disk:
            log.critical("DLQ entry %s (%d events of %s) is lost: storage refused it (%s) and %s is not "
                         "writable (%s)", entry.id, entry.event_count, entry.stage, exc, self.fallback_path, disk)
            return
        log.error("could not store DLQ entry %s (%d events of %s): %s; appended to %s (moved into storage at "
                  "the next start)", entry.id, entry.event_count, entry.stage, exc, self.fallback_path)

    async def recover_fallback(self) -> int:
        """Move dead letters kept in the fallback file into storage; the file goes once they all are."""
        path = self.fallback_path
        if path is None or not os.path.exists(path):
            return 0
        with open(path, "rb") as fh:
            entries = [msgspec.json.decode(line, type=DeadLetter) for line in fh if line.strip()]
        try:
            known = {d.id for d in await self.storage.list_dead_letters(limit=10**9, include_replayed=True)}
            moved = [e for e in entries if e.id not in known]
            for entry in moved:
                await self.storage.add_dead_letter(entry)
        except Exception as exc:  # storage boundary: the file stays, the next start tries again
            log.error("could not move %d dead letters from %s into storage: %s", len(entries), path, exc)
            return 0
        done = {e.id for e in entries}
        with open(path, "rb") as fh:  # keep what was appended meanwhile (no await from here on)
            later = [line for line in fh if line.strip() and msgspec.json.decode(line, type=DeadLetter).id not in done]
        if later:
            with open(path, "wb") as fh:
                fh.writelines(later)
        else:
            os.remove(path)
        log.warning("moved %d dead letters from %s into storage", len(moved), path)
        return len(moved)

    async def replay(self, entry_id: str) -> dict[str, Any]:
        """Run a dead letter's batch through its processor again (retries included)."""
        entries = {d.id: d for d in await self.storage.list_dead_letters(limit=100000)}
        entry = entries.get(entry_id)
        if entry is None:
            raise NotFound(f"no pending dead letter {entry_id!r}", code="dead_letter_not_found")
        fn = self.processors.get(entry.stage)
        if fn is None:
            raise NotFound(f"processor {entry.stage!r} is not loaded", code="processor_not_loaded")
        events = Batch([entry.payload.encode()], entry.event_count, 0, 0).events()
        ok = await self._deliver_once(entry.stage, fn, events)
        if ok:
            await self.storage.mark_replayed(entry.id, self.clock())
        return {"id": entry.id, "stage": entry.stage, "events": entry.event_count, "replayed": ok}

    async def _deliver_once(self, name: str, fn: Processor, events: list[Event]) -> bool:
        for attempt in range(1, self.attempts + 1):
            try:
                await fn(events)
                return True
            except Exception as exc:  # plugin boundary
                log.error("replay of a %s batch failed (attempt %d of %d): %s", name, attempt, self.attempts, exc)
                if attempt < self.attempts:
                    await asyncio.sleep(self.retry_delay_s)
        return False
