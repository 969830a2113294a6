"""The live tail: ``GET /v1/events/stream``, Server-Sent Events of events as TEA acknowledges them.

Events enter at acknowledgement, not at storage (see tail.py): a stream sees an event milliseconds
after its ``200``, not after the writer's next flush (up to ``writer.flush_interval_ms`` later, plus
the write), and never one that was refused or not yet safe. Ingestion never waits for a stream.

Each event is one ``id:`` + ``data:`` message; the id is ``<epoch>-<seq>``, so a client that
reconnects with ``Last-Event-ID`` (browsers send it by themselves) gets every matching event it
missed, exactly once — as long as the window still holds them. When it cannot (another process or
node, a restart, evicted), the stream says so first (``event: gap``) and goes on from now. Heartbeat
comments carry the id of how far the stream has read, so that a quiet filter resumes from there.

Bounds: the window (``stream.window_bytes``) is shared; a stream further behind than the window is
ended with a final ``event: dropped`` (``slow_client``), as is one that more than
``stream.max_events_per_s`` events match for as long as the window lasts (``too_many_events``: the
rate a stream is served at bounds the CPU it takes from ingestion); a client that accepts no bytes
for ``stream.stall_timeout_s`` is disconnected; ``stream.max_per_tenant`` streams per tenant.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from tea.auth.principal import READ
from tea.http import Request, Response, Route
from tea.http.params import text
from tea.http.response import encode_json
from tea.http.schemas import error_responses
from tea.query.readers import Readers
from tea.query.routes import view
from tea.query.spec import Filters, event_filter
from tea.types import EventFilter
from tea.ui.tail import Chunk, LiveTail, Matcher


log = logging.getLogger(__name__)
Send = Callable[[dict[str, Any]], Awaitable[None]]
FLUSH_BYTES = 256 * 1024  # a stream writes at most this much per send (then checks for a disconnect)


def sse(event: str | None, data: Any, id_: bytes | None = None) -> bytes:
    head = (b"id: " + id_ + b"\n" if id_ else b"") + (b"event: " + event.encode() + b"\n" if event else b"")
    return head + b"data: " + encode_json(data) + b"\n\n"


class EventStream(Response):
    """The response of one live-tail stream: it runs for as long as the client stays (see module doc)."""

    def __init__(self, tail: LiveTail, key: str, filter: EventFilter, start: int, gap: str | None,
                 receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        super().__init__(b"", 200, b"text/event-stream; charset=utf-8",
                         {"cache-control": "no-cache, no-store", "x-accel-buffering": "no"})
        self.tail, self.key, self.cursor, self.gap = tail, key, start, gap
        self.matcher = Matcher(filter)
        self.receive = receive
        self.allowance = tail.max_events_per_s  # events it may send now (refilled at max_events_per_s, up to 1 s)
        self.refilled_at = time.monotonic()
        self.throttled = False
        self._send: Send | None = None

    async def send(self, send: Send, head_only: bool = False) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", self.media_type), *((k.encode(), v.encode()) for k, v in self.headers.items())]})
            if not head_only:
                self._send = send
                await self._run()
            await send({"type": "http.response.body", "body": b""})
        except _Stalled:
            self.tail.count_drop("stalled")
            log.info("live tail: closed a stream whose client accepted nothing for %.0f s", self.tail.stall_timeout_s)
        finally:
            self.tail.release(self.key)

    async def _write(self, data: bytes) -> None:
        assert self._send is not None
        try:
            await asyncio.wait_for(self._send({"type": "http.response.body", "body": data, "more_body": True}),
                                   self.tail.stall_timeout_s)
        except asyncio.TimeoutError:
            raise _Stalled() from None

    async def _run(self) -> None:
        tail = self.tail
        gone = asyncio.ensure_future(self._disconnected())
        try:
            await self._write(b"retry: 2000\n" + b"id: " + tail.stream_id(self.cursor - 1) + b"\n: open\n\n")
            if self.gap:
                await self._write(sse("gap", {"reason": self.gap, "resumed_at": tail.stream_id(self.cursor - 1).decode()}))
            while not gone.done() and not tail.closed:
                chunks = tail.since(self.cursor)
                if chunks is None:
                    await self._dropped()
                    return
                if chunks:
                    await self._deliver(chunks)
                    continue
                done, _ = await asyncio.wait({tail.changed(), gone}, timeout=tail.heartbeat_s,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:  # the id lets a client whose filter matched nothing for a while resume from here
                    await self._write(b"id: " + tail.stream_id(self.cursor - 1) + b"\n: keep-alive\n\n")
        finally:
            gone.cancel()

    async def _dropped(self) -> None:
        reason = "too_many_events" if self.throttled else "slow_client"
        self.tail.count_drop(reason)
        message = (f"more than stream.max_events_per_s ({self.tail.max_events_per_s:g}) events per second match "
                   "this stream; narrow its filters" if self.throttled else
                   "this stream fell behind the live-tail window (stream.window_bytes)")
        await self._write(sse("dropped", {"reason": reason, "message": message + "; reconnect, and read what you "
                                          "missed from /v1/events"}))

    async def _deliver(self, chunks: list[Chunk]) -> None:
        """Write the matching events of ``chunks`` from the cursor on, in sends of at most FLUSH_BYTES, at
        most max_events_per_s: past it, wait (the window moves on meanwhile: see _dropped)."""
        out: list[bytes] = []
        size = sent = 0
        tail = self.tail
        for chunk in chunks:
            if not await self._budget():
                break
            found = self.matcher(chunk, max(0, self.cursor - chunk.first))
            for i, event in found:
                frame = b"id: " + tail.stream_id(chunk.first + i) + b"\ndata: " + encode_json(view(event)) + b"\n\n"
                out.append(frame)
                size += len(frame)
            self.cursor = chunk.end
            self.allowance -= len(found)
            sent += len(found)
            if size >= FLUSH_BYTES:
                await self._write(b"".join(out))
                out, size = [], 0
        if out:
            await self._write(b"".join(out))
        tail.events_sent += sent

    async def _budget(self) -> bool:
        """Refill the allowance; when it is spent, wait for it (True) or, if the window moved past the cursor
        meanwhile, give up (False)."""
        rate = self.tail.max_events_per_s
        now = time.monotonic()
        self.allowance = min(rate, self.allowance + (now - self.refilled_at) * rate)
        self.refilled_at = now
        if self.allowance > 0:
            self.throttled = False
            return True
        self.throttled = True
        await asyncio.sleep(min(1.0, -self.allowance / rate + 0.01))
        return self.cursor >= self.tail.oldest

    async def _disconnected(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass


class _Stalled(Exception):
    """The client accepted no bytes for stream.stall_timeout_s."""


def tenant_key(f: EventFilter) -> str:
    return "*" if f.tenant_ids is None else ",".join(sorted(f.tenant_ids))


class StreamParams(Filters):
    last_event_id: text("resume after this id (or send the Last-Event-ID header)") | None = None  # type: ignore[valid-type]


def routes(live: LiveTail, readers: Readers) -> list[Route]:
    tail = live

    async def stream(request: Request, p: StreamParams) -> Response:
        scoped = readers.of(request).scope(event_filter(p))  # 403 now, before the stream starts
        start, gap = tail.resume_point(request.header("last-event-id") or p.last_event_id)
        key = tenant_key(scoped)
        tail.acquire(key)
        return EventStream(tail, key, scoped, start, gap, request.receive)

    return [Route(
        "GET", "/v1/events/stream", stream,
        "Live tail: matching events as Server-Sent Events, within milliseconds of their acknowledgement",
        tags=("events",), query=StreamParams,
        responses={200: ("An endless text/event-stream: `id:` + `data:` (one event as JSON, the shape of "
                         "GET /v1/events/{event_id}) per event; `event: gap` when it could not resume without "
                         "a gap; `event: dropped` as the last message of a client too slow to keep up; "
                         "`: keep-alive` comments", {"text/event-stream": {"type": "string"}}),
                   **error_responses(400, 401, 403, 429)},
        scope=READ, consistency="none")]  # (it streams acknowledged events, not storage: nothing to wait for)
