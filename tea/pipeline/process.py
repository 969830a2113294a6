"""Processors: plugins that see every batch after storage committed it.

Events are grouped into batches of ``batch_size`` or whatever arrived within ``batch_timeout_s``.
Each processor gets each batch; it is tried ``retry_attempts`` times in all (Telemetron's meaning: 3 =
the first try and two retries; 0 and 1 both mean once), ``retry_delay_s`` apart, and a batch it still
fails on goes to the dead-letter queue (persisted in storage, listable at ``GET /v1/dlq``, replayable)
— never to a log line alone: when storage refuses the entry too, it is appended to ``fallback_path``
(fsynced, counted) and moved into storage at the next start. One processor failing does not hold the
others back. The queue in front is bounded in events: when it is full the writer waits, and the
durable buffer absorbs ingestion meanwhile.

Telemetron's metrics keep its meaning: ``telemetron_processor_plugin_errors_total`` once per batch a
processor gave up on, ``telemetron_processor_plugin_duration_seconds`` once per processor and batch
(retries included), ``telemetron_events_processed_total`` for committed events once every processor
they were handed to succeeded (events no processor wants count at the commit).

Processors see committed batches at most once across a crash of TEA (they run after the commit).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from typing import Any, Awaitable, Callable

import msgspec

from tea.errors import NotFound
from tea.telemetry import Telemetry
from tea.storage.base import Storage
from tea.timeutil import now_us
from tea.types import Batch, DeadLetter, Event, encode_lines

log = logging.getLogger(__name__)
Processor = Callable[[list[Event]], Awaitable[None]]
SLICE = 2048  # lines filtered and decoded between two yields to the event loop


class ProcessorRunner:
    def __init__(self, processors: list[tuple[str, Processor]], storage: Storage, *, batch_size: int = 100,
                 batch_timeout_s: float = 1.0, retry_attempts: int = 3, retry_delay_s: float = 1.0,
                 max_pending_events: int = 100_000, telemetry: Telemetry | None = None,
                 clock: Callable[[], int] = now_us, fallback_path: str | None = None) -> None:
        self.processors = dict(processors)
        self.storage = storage
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self.attempts = max(1, retry_attempts)  # in all, as Telemetron counts them
        self.retry_delay_s = retry_delay_s
        self.fallback_path = fallback_path
        self.max_pending_events = max_pending_events
        self.telemetry = telemetry
        self.clock = clock
        self._pending: list[Event] = []
        self._room = asyncio.Condition()
        self._arrived = asyncio.Event()
        self.processed_batches = 0
        self.dead_lettered = 0
        self.dlq_fallback = 0  # dead letters storage refused, kept in the fallback file

    @property
    def enabled(self) -> bool:
        return bool(self.processors)

    async def submit(self, batch: Batch) -> None:
        """Hand over a committed batch; waits while the queue is full. When every processor has a
        ``wants_any(ndjson) -> bool`` probe and none wants the batch, it is skipped without splitting it
        (the probes run in a worker thread, on each chunk of complete lines the batch holds — or, when the
        processor sets ``wants_any_takes_chunks``, once on the list of chunks; the built-in ones search
        without the GIL, so the event loop keeps serving requests meanwhile);
        when every processor has a ``wants(line) -> bool`` predicate, only wanted lines are decoded.
        A writer batch can hold 200 000 events: they are filtered and decoded in slices of
        ``SLICE`` lines, yielding to the event loop between slices so requests are not held up."""
        if not self.processors:
            self._processed(batch.count)
            return
        probes = [(getattr(fn, "wants_any", None), getattr(fn, "wants_any_takes_chunks", False))
                  for fn in self.processors.values()]
        if all(p is not None for p, _ in probes):
            chunks = batch.chunks

            def wanted_any() -> bool:  # a probe that takes the chunk list scans it in one call
                return any(p(chunks) if whole else any(p(c) for c in chunks) for p, whole in probes)  # type: ignore[misc]
            if not await asyncio.to_thread(wanted_any):
                self._processed(batch.count)
                return  # no processor wants any of it: never joined, split or decoded
        data = batch.ndjson()
        wanted = [getattr(fn, "wants", None) for fn in self.processors.values()]
        lines = [line for line in data.split(b"\n") if line]
        handed = 0
        for start in range(0, len(lines), SLICE):
            part = lines[start:start + SLICE]
            if all(w is not None for w in wanted):
                part = [line for line in part if any(w(line) for w in wanted)]  # type: ignore[misc]
            handed += len(part)
            if part:
                events = Batch([b"\n".join(part) + b"\n"], len(part), 0, 0).events()
                async with self._room:
                    await self._room.wait_for(lambda: len(self._pending) < self.max_pending_events)
                    self._pending.extend(events)
                self._arrived.set()
            if start + SLICE < len(lines):
                await asyncio.sleep(0)
        self._processed(len(lines) - handed)

    def _processed(self, count: int) -> None:
        if self.telemetry is not None and count > 0:
            self.telemetry.telemetron_events_processed.inc(count)

    async def run(self) -> None:
        await self.recover_fallback()
        while True:
            await self._arrived.wait()
            deadline = time.monotonic() + self.batch_timeout_s
            while len(self._pending) < self.batch_size and time.monotonic() < deadline:
                await asyncio.sleep(min(0.01, self.batch_timeout_s))
            await self.drain_once()

    async def drain_once(self) -> None:
        async with self._room:
            chunk, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size:]
            if not self._pending:
                self._arrived.clear()
            self._room.notify_all()
        if chunk:
            delivered = await asyncio.gather(*(self._deliver(name, fn, chunk) for name, fn in self.processors.items()))
            self.processed_batches += 1
            if all(delivered):
                self._processed(len(chunk))

    async def drain(self) -> None:
        """Process everything queued (shutdown)."""
        while self._pending:
            await self.drain_once()

    async def _deliver(self, name: str, fn: Processor, events: list[Event]) -> bool:
        started = time.perf_counter()
        error: BaseException | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                await fn(events)
            except Exception as exc:  # plugin boundary: retry, then dead-letter
                error = exc
                log.warning("processor %s failed on a batch of %d events (attempt %d of %d): %s",
                            name, len(events), attempt, self.attempts, exc)
                if attempt < self.attempts:
                    await asyncio.sleep(self.retry_delay_s)
                continue
            self._observe(name, "success", time.perf_counter() - started)
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

    async def _dead_letter(self, name: str, events: list[Event], error: BaseException | None, attempts: int) -> None:
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
