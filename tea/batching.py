"""Size-or-interval batching, woken by events, never by polling.

Every background consumer in TEA sends work in batches: a batch goes when ``max_items`` are waiting,
``max_interval_s`` after the oldest of them arrived, when ``flush()`` asks for it, or when the
consumer is stopping — whichever comes first (OpenTelemetry's BatchSpanProcessor is the model).
Nothing wakes while nothing waits: a consumer sleeps on a ``Pulse`` that producers fire, with a
timeout only while a batch is open (to send it at its interval).

* ``BatchTrigger`` is the rule alone, for consumers whose queue lives elsewhere (the writer and the
  processors read the durable buffer; the buffer's appends fire their pulse).
* ``Batcher`` is the rule with a bounded in-memory queue and an export loop (the audit log, alert
  notifications): ``offer()`` refuses when full, ``put()`` waits for room (back-pressure),
  ``offer_dropping_oldest()`` makes room; ``flush()`` exports now, ``drain(timeout_s)`` exports what is
  queued and stops, within its time.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Awaitable, Callable, Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Pulse:
    """Wakes every waiter at the next ``fire()``. A waiter that checks its condition and then waits, without
    awaiting in between, misses nothing (one event loop)."""

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def future(self) -> "asyncio.Future[None]":
        """A future completed by the next ``fire()`` (never cancelled by a waiter giving up)."""
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        return self._future

    def fire(self) -> None:
        future, self._future = self._future, None
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self, timeout_s: float | None = None) -> None:
        """Until the next ``fire()``, or ``timeout_s``."""
        await asyncio.wait((self.future(),), timeout=timeout_s)


class BatchTrigger:
    """When a batch is due: ``max_items`` waiting, ``max_interval_s`` since the oldest arrived, a ``flush()``
    not yet caught up with, or ``stop()``. ``wake`` is the pulse producers fire when items arrive."""

    def __init__(self, max_items: int, max_interval_s: float, wake: Pulse | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_items = max(1, max_items)
        self.max_interval_s = max_interval_s
        self.wake = wake or Pulse()
        self.clock = clock
        self.stopping = False
        self.flushing = False  # set by flush(), cleared once the consumer has nothing waiting
        self.waits = 0  # times the consumer went to sleep (each one a wake-up later): idle costs none

    def flush(self) -> None:
        """Send what is waiting now, without waiting for a full batch or the interval, until caught up."""
        self.flushing = True
        self.wake.fire()

    def stop(self) -> None:
        """Send what is waiting at once, then let the consumer return."""
        self.stopping = True
        self.wake.fire()

    def caught_up(self) -> None:
        """The consumer has nothing waiting: a flush asked for earlier is done."""
        self.flushing = False

    def expired(self, since_s: float | None) -> bool:
        """Whether a batch open since ``since_s`` (``clock`` seconds) goes now whatever its size."""
        return (self.stopping or self.flushing
                or (since_s is not None and self.clock() >= since_s + self.max_interval_s))

    def is_due(self, count: int, since_s: float | None) -> bool:
        """Whether ``count`` items, the oldest waiting since ``since_s``, make a batch now."""
        return count > 0 and (count >= self.max_items or self.expired(since_s))

    async def wait(self, since_s: float | None = None) -> None:
        """Sleep until the wake pulse fires, or until the batch open since ``since_s`` is due (no timeout when
        none is open: an idle consumer sleeps until something arrives)."""
        timeout = None if since_s is None else max(0.0, since_s + self.max_interval_s - self.clock())
        self.waits += 1
        await self.wake.wait(timeout)

    async def until_due(self, count: Callable[[], int], age_s: Callable[[], float]) -> bool:
        """Until ``count()`` items make a batch (``age_s()``: how long the oldest has waited, read once when
        the first arrives). False when stopping with nothing waiting."""
        while count() <= 0:
            self.caught_up()
            if self.stopping:
                return False
            await self.wait()
        since = self.clock() - age_s()
        while not self.is_due(count(), since):
            await self.wait(since)
        return True


class QueueFull(Exception):
    """A bounded batcher refused an item: its queue is full."""


class Batcher(Generic[T]):
    """A bounded queue exported in batches by ``run()``: ``export`` gets at most ``max_items`` items, one batch
    at a time, and handles its own errors (an exception it lets out is logged; its items are not retried)."""

    def __init__(self, name: str, export: Callable[[list[T]], Awaitable[None]], *, max_items: int,
                 max_interval_s: float, max_queue: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.export = export
        self.max_queue = max(1, max_queue)
        self.trigger = BatchTrigger(max_items, max_interval_s, clock=clock)
        self.clock = clock
        self.queue: deque[T] = deque()
        self.exporting = 0  # items in the batch being exported
        self.exported = 0   # items handed to export() so far, and finished
        self.accepted = 0   # items queued so far
        self._oldest_s = 0.0
        self._progress = Pulse()  # fired after each batch and when run() returns
        self._space = Pulse()
        self.running = False

    @property
    def pending(self) -> int:
        """Items queued or being exported."""
        return len(self.queue) + self.exporting

    def offer(self, item: T) -> bool:
        """Queue ``item`` if there is room (never blocks); False when the queue is full."""
        if len(self.queue) >= self.max_queue:
            return False
        self._append(item)
        return True

    def offer_dropping_oldest(self, item: T) -> T | None:
        """Queue ``item``, dropping the oldest queued one when full; returns the one dropped."""
        dropped = self.queue.popleft() if len(self.queue) >= self.max_queue else None
        self._append(item)
        return dropped

    async def put(self, item: T) -> None:
        """Queue ``item``, waiting for room while the queue is full (back-pressure)."""
        while len(self.queue) >= self.max_queue:
            await self._space.wait()
        self._append(item)

    def _append(self, item: T) -> None:
        if not self.queue:
            self._oldest_s = self.clock()
        self.queue.append(item)
        self.accepted += 1
        if len(self.queue) >= self.trigger.max_items or len(self.queue) == 1:
            self.trigger.wake.fire()  # (a full batch now, or the first item: the interval starts)

    def flush(self) -> None:
        """Export what is queued now, without waiting for a full batch or the interval."""
        self.trigger.flush()

    async def flushed(self, timeout_s: float | None = None) -> bool:
        """Export what is queued now and wait until it has been (inline when ``run()`` is not running).
        False if ``timeout_s`` passed first."""
        target = self.accepted
        if not self.running:
            while self.queue:
                await self._export_one()
            return True
        self.flush()
        deadline = None if timeout_s is None else self.clock() + timeout_s
        while self.running and self._behind(target):
            remaining = None if deadline is None else deadline - self.clock()
            if remaining is not None and remaining <= 0:
                return False
            await self._progress.wait(remaining)
        return True

    def _behind(self, target: int) -> bool:
        """Whether items accepted up to ``target`` are still queued or being exported."""
        return self.accepted - self.pending < target

    async def run(self) -> None:
        """Export batches until ``drain()`` or ``stop()``, then return once the queue is empty."""
        self.running = True
        trigger = self.trigger
        try:
            while await trigger.until_due(lambda: len(self.queue), lambda: self.clock() - self._oldest_s):
                await self._export_one()
        finally:
            self.running = False
            self._progress.fire()

    async def _export_one(self) -> None:
        count = min(len(self.queue), self.trigger.max_items)
        batch = [self.queue.popleft() for _ in range(count)]
        if self.queue:
            self._oldest_s = self.clock()  # (the rest starts a new interval)
        self._space.fire()
        self.exporting = count
        try:
            await self.export(batch)
        except Exception:  # the export's own bug: logged, the loop goes on
            log.exception("%s: exporting a batch of %d failed", self.name, count)
        finally:
            self.exporting = 0
            self.exported += count
            self._progress.fire()

    def stop(self) -> None:
        """Ask ``run()`` to export what is queued and return."""
        self.trigger.stop()

    async def drain(self, timeout_s: float) -> int:
        """Stop, letting ``run()`` export what is queued for at most ``timeout_s``; returns how many items were
        still queued or being exported then (the caller cancels the loop next)."""
        self.stop()
        deadline = self.clock() + timeout_s
        await asyncio.sleep(0)  # (a run() task created just before starts now)
        while self.running and self.pending:
            remaining = deadline - self.clock()
            if remaining <= 0:
                break
            await self._progress.wait(remaining)
        return self.pending
