"""The sender thread: batches by size or interval, several requests in flight, retries, the spool.

One step of the loop, in order:

1. Past ``close()``'s time budget: what is still in memory goes to the spool (or is dropped, counted),
   and the thread ends.
2. While backing off, or while older batches wait in the spool, new batches join the spool behind
   them, so TEA receives everything in the order it was recorded.
3. The oldest request in flight is finished (its answer read and counted).
4. Otherwise the oldest spooled batch is sent (one at a time, in order), or new batches are started
   on up to ``max_in_flight`` connections at once: TEA acknowledges a batch once it is on its disk,
   and the requests waiting together share that write.

A network error, 408, 429 or 5xx is retried after an exponential, jittered delay (at least the
``Retry-After`` TEA asked for); any other 4xx is final (the batch is counted as refused, never
retried). Without a spool a failing batch stays in memory, retried until ``retry_timeout_s``, while
new events wait in the bounded queue. Event ids are made before the first attempt, so a batch TEA
stored but whose answer was lost is stored once however often it is sent.
"""
from __future__ import annotations

import logging
import random
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, NamedTuple, Optional, Tuple

import msgspec

from tea_client import _wire
from tea_client._core import Core
from tea_client.spool import Spool
from tea_client.transport import NETWORK_ERRORS, Reply, Transport

log = logging.getLogger("tea_client")


class Settings(NamedTuple):
    max_batch_bytes: int = 4 * 1024 * 1024
    max_in_flight: int = 4
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 300.0
    retry_timeout_s: float = 300.0
    gzip_level: int = 1


class Payload:
    __slots__ = ("seq", "span", "channel", "body", "count", "failing_since")

    def __init__(self, seq: float, channel: str, body: bytes, count: int, span: float = 1.0) -> None:
        self.seq, self.span, self.channel, self.body, self.count = seq, span, channel, body, count
        self.failing_since: Optional[float] = None

    def halves(self) -> Tuple["Payload", "Payload"]:
        """The batch cut in two, in order (TEA answered 413: more events or bytes than it takes at once)."""
        items = _raw_list.decode(self.body)
        half = len(items) // 2
        span = self.span / 2
        return (Payload(self.seq, self.channel, _join(items[:half]), half, span),
                Payload(self.seq + span, self.channel, _join(items[half:]), len(items) - half, span))


_raw_list = msgspec.json.Decoder(List[msgspec.Raw])


def _join(items: List[msgspec.Raw]) -> bytes:
    return b"[" + b",".join(bytes(item) for item in items) + b"]"


class _Throttle:
    """At most one log line per key and minute: a TEA outage must not flood the application's logs."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self.last: Dict[str, float] = {}

    def __call__(self, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.last.get(key, -self.every_s) >= self.every_s:
            self.last[key] = now
            log.warning(message, *args)


class Sender:
    def __init__(self, core: Core, lanes: Callable[[], Transport], spool: Optional[Spool], settings: Settings,
                 defaults: Dict[str, Any]) -> None:
        self.core, self.spool, self.settings = core, spool, settings
        self.lanes: List[Transport] = [lanes() for _ in range(max(1, settings.max_in_flight))]
        self.in_flight: Deque[Tuple[Transport, Payload]] = deque()
        self.outbox: Deque[Payload] = deque()
        self.attempts = 0
        self.seq = 0
        self.backoff_until = 0.0
        self.warn = _Throttle()
        self.encoder = _wire.Encoder(defaults, settings.max_batch_bytes, self._invalid)
        if spool is not None:
            core.set_spool(spool.files, spool.bytes)

    def run(self) -> None:
        while True:
            try:
                if not self.step():
                    break
            except Exception:  # a bug here must not end delivery for the process
                log.exception("tea-client: sender step failed")
                time.sleep(0.1)
        for lane in self.lanes:
            lane.close()

    # ------------------------------------------------------------ the loop
    def step(self) -> bool:
        core, now = self.core, time.monotonic()
        if core.closing and now >= core.close_deadline:
            self.abandon()
            return False
        force = core.closing or core.flush_target > core.done()
        waiting = self.backoff_until > now
        if self.spool is not None and (waiting or self.spool.files):
            self.park(force)
        backlog = self.spool is not None and self.spool.files > 0
        if not waiting and not backlog:
            self.launch(force)  # fills the free connections, encoding while the others are in flight
        if self.in_flight:
            self.finish_one()
        elif self.backoff_until > time.monotonic():
            if core.closing and not self.outbox and not core.queue:
                return False  # nothing left in memory; the spool keeps the rest for the next start
            self.sleep(min(self.backoff_until - time.monotonic(), core.next_ready_s()))
        elif backlog:
            self.send_spooled()
        elif core.closing and not self.outbox and not core.queue:
            return False
        elif not self.outbox:
            self.sleep(core.next_ready_s())
        return True

    def sleep(self, seconds: float) -> None:
        seconds = min(seconds, self.core.close_deadline - time.monotonic())
        if seconds > 0:
            self.core.wake.wait(seconds)
        self.core.wake.clear()
        self.core.woken = False

    def encode(self, items: List[Any]) -> List[Payload]:
        out = []
        for channel, body, count in self.encoder.batches(items):
            self.seq += 1
            out.append(Payload(self.seq, channel, body, count))
        return out

    def requeue(self, payload: Payload) -> None:
        """Put a failed batch back in the outbox in the order it was made (requests finish out of order)."""
        for i, other in enumerate(self.outbox):  # a few batches at most
            if other.seq > payload.seq:
                self.outbox.insert(i, payload)
                return
        self.outbox.append(payload)

    def _invalid(self, count: int, message: str) -> None:
        """Events dropped because they could not be built (``message``), or skipped on purpose (no message)."""
        if not message:
            self.core.settle(count)
            return
        self.warn("invalid", "tea-client: dropping an event: %s", message)
        self.core.settle(count, dropped="invalid")

    def park(self, force: bool) -> None:
        """Failed and ready batches go to the spool, behind what is already there."""
        while self.outbox:
            if not self.to_spool(self.outbox.popleft()):
                return  # the disk refuses: keep the rest in memory, try again after the pause
        items = self.core.take(force)
        while items:
            payloads = self.encode(items)
            for i, payload in enumerate(payloads):
                if not self.to_spool(payload):
                    self.outbox.extend(payloads[i + 1:])
                    return
            items = self.core.take(force)

    def abandon(self) -> None:
        """close() ran out of time: keep what is in memory on disk if there is a spool, else count it lost."""
        pending = [payload for _, payload in self.in_flight] + list(self.outbox)
        self.in_flight.clear()
        self.outbox.clear()
        items = self.core.take(True)
        while items:
            pending.extend(self.encode(items))
            items = self.core.take(True)
        for payload in pending:
            if self.spool is None or not self.to_spool(payload, keep=False):
                self.core.settle(payload.count, dropped="closed")

    # ------------------------------------------------------------ sending
    def launch(self, force: bool) -> None:
        """Start requests for waiting batches on free connections."""
        busy = {id(lane) for lane, _ in self.in_flight}
        for lane in self.lanes:
            if id(lane) in busy:
                continue
            if not self.outbox:
                items = self.core.take(force)
                if not items:
                    break
                self.outbox.extend(self.encode(items))
            payload = self.outbox.popleft()
            try:
                lane.start(_wire.PATHS[payload.channel], payload.body)
            except NETWORK_ERRORS as exc:
                self.requeue(payload)
                self.failed(payload, exc, None)
                return
            self.in_flight.append((lane, payload))

    def finish_one(self) -> None:
        lane, payload = self.in_flight.popleft()
        try:
            reply = lane.finish(payload.count)
        except NETWORK_ERRORS as exc:
            self.requeue(payload)
            self.failed(payload, exc, None)
            return
        self.core.count(requests=1)
        if reply.retryable:
            self.requeue(payload)
            self.failed(payload, None, reply)
            return
        if reply.status == 413 and payload.count > 1:
            for half in payload.halves():
                self.requeue(half)
            return
        self.succeeded(reply, payload.count)
        self.core.settle(payload.count, sent=reply.accepted, rejected=reply.rejected)

    def send_spooled(self) -> None:
        spool = self.spool
        assert spool is not None
        entry = spool.next()
        if entry is None:  # every file is being sent by another process
            self.backoff_until = time.monotonic() + 0.2
            self.core.set_spool(spool.files, spool.bytes)
            return
        outcome = self.post_now(Payload(0, entry.channel, entry.body, entry.count), entry.packed)
        if outcome is None:
            spool.release(entry)
            return
        spool.done(entry)
        self.core.count(sent=outcome[0], rejected=outcome[1])
        self.core.set_spool(spool.files, spool.bytes)

    def post_now(self, payload: Payload, packed: Optional[bytes] = None) -> Optional[Tuple[int, int]]:
        """Send one batch and wait for the answer (halves, if TEA finds it too large): (accepted, refused), or
        None when it is to be retried."""
        lane = self.lanes[0]
        try:
            lane.start(_wire.PATHS.get(payload.channel, "/v1/events"), payload.body, packed)
            reply = lane.finish(payload.count)
        except NETWORK_ERRORS as exc:
            self.failed(None, exc, None)
            return None
        self.core.count(requests=1)
        if reply.retryable:
            self.failed(None, None, reply)
            return None
        if reply.status == 413 and payload.count > 1:
            first, second = payload.halves()
            a = self.post_now(first)
            b = self.post_now(second) if a is not None else None
            return None if b is None else (a[0] + b[0], a[1] + b[1])  # type: ignore[index]
        self.succeeded(reply, payload.count)
        return reply.accepted, reply.rejected

    def succeeded(self, reply: Reply, count: int) -> None:
        self.attempts = 0
        if reply.rejected:
            self.warn("rejected", "tea-client: TEA refused %s of %s events (%s): %s", reply.rejected, count,
                      reply.status, reply.message)

    def failed(self, payload: Optional[Payload], exc: Optional[BaseException], reply: Optional[Reply]) -> None:
        """A retryable failure: back off; without a spool, a batch failing for too long is dropped."""
        if reply is None:
            self.warn("network", "tea-client: TEA unreachable (%s); %s", exc,
                      "spooling to disk" if self.spool is not None else "retrying")
        else:
            self.warn("retry", "tea-client: TEA answered %s (%s); retrying", reply.status, reply.message)
        self.backoff(reply.retry_after_s if reply is not None else None)
        self.core.count(retried=1)
        if payload is None:
            return
        now = time.monotonic()
        if payload.failing_since is None:
            payload.failing_since = now
        elif self.spool is None and now - payload.failing_since > self.settings.retry_timeout_s:
            self.outbox.remove(payload)
            self.warn("timeout", "tea-client: dropping %s events after %.0f s of retries", payload.count,
                      now - payload.failing_since)
            self.core.settle(payload.count, dropped="retry_timeout")

    def backoff(self, retry_after_s: Optional[float]) -> None:
        """Exponential with equal jitter; never sooner than Retry-After (capped), with up to 10 % on top."""
        self.attempts += 1
        s = self.settings
        if retry_after_s is not None:
            wait = min(retry_after_s, s.max_retry_after_s)
            delay = wait + random.uniform(0, min(1.0, 0.1 * wait))
        else:
            base = min(s.max_backoff_s, s.initial_backoff_s * 2 ** min(self.attempts - 1, 30))
            delay = base / 2 + random.uniform(0, base / 2)
        self.backoff_until = max(self.backoff_until, time.monotonic() + delay)

    def to_spool(self, payload: Payload, keep: bool = True) -> bool:
        """Write one batch to the spool; False (the batch kept first in memory, if ``keep``) when the disk refuses."""
        assert self.spool is not None
        try:
            trimmed = self.spool.put(payload.channel, payload.body, payload.count, self.settings.gzip_level or 1)
        except OSError as exc:
            self.warn("spool", "tea-client: cannot write to the spool (%s); keeping the batch in memory", exc)
            if keep:
                self.outbox.appendleft(payload)
                self.backoff_until = max(self.backoff_until, time.monotonic() + 1.0)
            return False
        self.core.settle(payload.count, spooled=payload.count)
        if trimmed:
            self.warn("spool_full", "tea-client: spool over %s bytes: dropped the %s oldest spooled events",
                      self.spool.max_bytes, trimmed)
            self.core.drop_spooled(trimmed)
        self.core.set_spool(self.spool.files, self.spool.bytes)
        return True
