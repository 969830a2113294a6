"""The bounded in-memory queue shared by the application's threads and the sender thread, and the counters.

A recording thread does three things (``put``): take a number, append to a ``deque`` and — when a
full batch is waiting — wake the sender; no lock. The deque's ``maxlen`` drops the oldest event when
it is full, atomically, and the drops are counted as recorded − taken − queued (exact whenever no
``put`` is half done). The caller is never blocked and never sees an exception.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

Item = Tuple[str, float, Any, Any]  # (channel, time.time(), event type or builder, fields or payload)

DROP_REASONS = ("queue_full", "retry_timeout", "spool_full", "closed", "invalid")


class Core:
    def __init__(self, max_queue_events: int, max_batch_events: int, flush_interval_s: float) -> None:
        self.lock = threading.Lock()
        self.progress = threading.Condition(self.lock)  # flush() waits on it; the sender notifies
        self.wake = threading.Event()
        self.woken = False
        self.queue: Deque[Item] = deque(maxlen=max_queue_events)
        self.numbers = itertools.count(1)  # next() is atomic: the recorded count without a lock
        self.taken = 0                     # by the sender only
        self.max_queue_events = max_queue_events
        self.max_batch_events = max_batch_events
        self.flush_interval_s = flush_interval_s
        # counted under self.lock
        self.handled = 0          # events that left memory after take(): delivered, refused, dropped or spooled
        self.flush_target = 0     # flush() asks for every event recorded up to here
        self.sent = 0
        self.rejected = 0
        self.retried = 0
        self.spooled = 0
        self.requests = 0
        self.dropped: Dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.spool_files = 0
        self.spool_bytes = 0
        self.closing = False
        self.close_deadline = float("inf")

    def put(self, item: Item) -> None:
        next(self.numbers)
        queue = self.queue
        queue.append(item)
        if len(queue) >= self.max_batch_events:
            self.poke()

    def poke(self) -> None:
        """A full batch is waiting: wake the sender (once; it clears ``woken`` when it looks at the queue)."""
        if not self.woken:
            self.woken = True
            self.wake.set()

    @property
    def recorded(self) -> int:
        return int(repr(self.numbers)[6:-1]) - 1  # "count(N)": N is the next number

    def queue_dropped(self) -> int:
        return max(0, self.recorded - self.taken - len(self.queue))

    def done(self) -> int:
        """Events recorded so far that have left memory, queue drops included."""
        return self.handled + self.queue_dropped()

    def take(self, force: bool) -> Optional[List[Item]]:
        """Up to one batch: a full one, or what is there once the oldest waited the interval (or ``force``)."""
        with self.lock:
            queue = self.queue
            n = len(queue)
            if n == 0:
                return None
            if n < self.max_batch_events and not force and time.time() - queue[0][1] < self.flush_interval_s:
                return None
            items = [queue.popleft() for _ in range(min(n, self.max_batch_events))]
            self.taken += len(items)
            return items

    def next_ready_s(self) -> float:
        """Seconds until the oldest queued event has waited the flush interval."""
        try:
            oldest = self.queue[0][1]
        except IndexError:
            return self.flush_interval_s
        return max(0.0, oldest + self.flush_interval_s - time.time())

    def settle(self, count: int, sent: int = 0, rejected: int = 0, spooled: int = 0, dropped: str = "") -> None:
        """``count`` events left memory (sent / refused / spooled / dropped for ``dropped``)."""
        with self.progress:
            self.handled += count
            self.sent += sent
            self.rejected += rejected
            self.spooled += spooled
            if dropped:
                self.dropped[dropped] += count
            self.progress.notify_all()

    def count(self, **deltas: int) -> None:
        """Counters that do not change what is in memory (deliveries from the spool, retries, requests)."""
        with self.progress:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)
            self.progress.notify_all()

    def drop_spooled(self, count: int) -> None:
        """Spooled events deleted by the spool's byte bound (they had left memory already)."""
        with self.progress:
            self.dropped["spool_full"] += count

    def set_spool(self, files: int, size: int) -> None:
        with self.progress:
            self.spool_files, self.spool_bytes = files, size
            self.progress.notify_all()

    def flush(self, timeout_s: float, until_spool_empty: bool) -> bool:
        """Wait until every event recorded before the call has left memory (and the spool is empty)."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self.progress:
            target = self.recorded
            self.flush_target = max(self.flush_target, target)
        self.wake.set()
        with self.progress:
            while self.done() < target or (until_spool_empty and self.spool_files):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.progress.wait(min(remaining, 0.5))
        return True

    def stats(self) -> Dict[str, Any]:
        with self.lock:
            dropped = dict(self.dropped, queue_full=self.queue_dropped())
            return {"recorded": self.recorded, "queued": len(self.queue), "sent": self.sent,
                    "rejected": self.rejected, "dropped": sum(dropped.values()),
                    "dropped_by_reason": dropped, "retried": self.retried, "spooled": self.spooled,
                    "spool_files": self.spool_files, "spool_bytes": self.spool_bytes, "requests": self.requests}
