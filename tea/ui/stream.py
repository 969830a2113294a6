"""The live tail: ``GET /v1/events/stream``, Server-Sent Events of events as TEA acknowledges them.

Events enter at acknowledgement, not at storage: ``Ingestor`` hands every group it made durable
(the very NDJSON bytes the durable buffer holds) to ``LiveTail.publish``. A stream therefore sees
an event milliseconds after its ``200``, not after the writer's next flush (up to
``writer.flush_interval_ms`` later, plus the write), and never an event that was refused or not
yet safe. The hot path pays one attribute test when no stream is open, and a deque append per
group when one is; decoding, filtering and encoding happen in each stream's own task, once per
group for every stream together (a group decodes once, on first use).

Acknowledged groups stay in a window of ``stream.window_bytes`` shared by every stream. Each event
gets a sequence number; a stream's SSE ``id`` is ``<epoch>-<seq>`` (``epoch`` names this
process's window), so a client that reconnects with ``Last-Event-ID`` (browsers send it by
themselves) gets every matching event it missed, exactly once — as long as the window still holds
them: the window keeps recording ``stream.resume_s`` after the last stream closed. When it cannot
(another process or node, a restart, evicted), the stream says so first (``event: gap``) and goes
on from now. A stream that falls behind the window (a slow client) is ended with a final
``event: dropped``; one whose client accepts no bytes for ``stream.stall_timeout_s`` is closed.
Ingestion never waits for a stream.
"""
from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from tea.auth.principal import READ
from tea.errors import BadRequest, RateLimited
from tea.http import Param, Request, Response, Route
from tea.http.response import encode_json
from tea.http.schemas import error_responses
from tea.query.routes import view
from tea.query.spec import FILTER_FIELDS, FILTER_PARAMS, check_params, event_filter
from tea.storage.memory import select
from tea.types import Batch, Event, EventFilter

if TYPE_CHECKING:
    from tea.app import TeaApp

log = logging.getLogger(__name__)
Send = Callable[[dict[str, Any]], Awaitable[None]]
_ID = re.compile(r"^([0-9a-f]{8})-([0-9]{1,19})$")
FLUSH_BYTES = 256 * 1024  # a stream writes at most this much per send (then checks for a disconnect)


class Chunk:
    """One acknowledged group: its events' sequence numbers are ``first`` .. ``first + count - 1``."""

    __slots__ = ("first", "payload", "count", "_events")

    def __init__(self, first: int, payload: bytes, count: int) -> None:
        self.first = first
        self.payload = payload
        self.count = count
        self._events: list[Event] | None = None

    @property
    def end(self) -> int:
        return self.first + self.count

    def events(self) -> list[Event]:
        if self._events is None:  # decoded once, by the first stream that needs it
            self._events = Batch([self.payload], self.count, 0, 0).events()
        return self._events


class TooManyStreams(RateLimited):
    code = "too_many_streams"


class LiveTail:
    """The window of recently acknowledged events and the streams reading it (one per app)."""

    def __init__(self, *, window_bytes: int = 16 * 1024 * 1024, resume_s: float = 300.0, max_per_tenant: int = 8,
                 heartbeat_s: float = 15.0, stall_timeout_s: float = 30.0) -> None:
        self.window_bytes = window_bytes
        self.resume_s = resume_s
        self.max_per_tenant = max_per_tenant
        self.heartbeat_s = heartbeat_s
        self.stall_timeout_s = stall_timeout_s
        self.epoch = secrets.token_hex(4)
        self.recording = False  # read by the ingestor on every acknowledged group
        self.closed = False
        self.next_seq = 1
        self._chunks: deque[Chunk] = deque()
        self._bytes = 0
        self._wake: asyncio.Future[None] | None = None
        self._open: dict[str, int] = {}
        self._idle: asyncio.TimerHandle | None = None
        self.streams_opened = 0
        self.dropped: dict[str, int] = {}
        self.events_sent = 0

    @classmethod
    def from_settings(cls, settings: Any) -> "LiveTail":
        st = settings.stream
        return cls(window_bytes=st.window_bytes, resume_s=st.resume_s, max_per_tenant=st.max_per_tenant,
                   heartbeat_s=st.heartbeat_s, stall_timeout_s=st.stall_timeout_s)

    # ------------------------------------------------------------ the ingestor's side (hot path)
    def publish(self, payload: bytes, count: int) -> None:
        """An acknowledged group of ``count`` events (NDJSON). Called only while ``recording``."""
        chunk = Chunk(self.next_seq, payload, count)
        self.next_seq += count
        chunks = self._chunks
        chunks.append(chunk)
        self._bytes += len(payload)
        while self._bytes > self.window_bytes and len(chunks) > 1:
            self._bytes -= len(chunks.popleft().payload)
        wake = self._wake
        if wake is not None:
            self._wake = None
            if not wake.done():
                wake.set_result(None)

    # ------------------------------------------------------------ the streams' side
    @property
    def oldest(self) -> int:
        """The first sequence number the window still holds (``next_seq`` when it holds none)."""
        return self._chunks[0].first if self._chunks else self.next_seq

    def since(self, seq: int) -> list[Chunk] | None:
        """The chunks holding events from ``seq`` on (the first may begin before it); None when the window
        no longer holds ``seq`` (evicted, or never recorded)."""
        if seq < self.oldest:
            return None
        found = []
        for chunk in reversed(self._chunks):
            if chunk.end <= seq:
                break
            found.append(chunk)
        found.reverse()
        return found

    def changed(self) -> asyncio.Future[None]:
        """A future resolved at the next publish (or when the tail closes); one for every waiting stream."""
        if self._wake is None:
            self._wake = asyncio.get_running_loop().create_future()
        return self._wake

    def resume_point(self, last_id: str | None) -> tuple[int, str | None]:
        """Where a stream starts: the sequence after ``last_id`` when the window holds everything since,
        else now, with the reason it cannot resume."""
        if last_id is None:
            return self.next_seq, None
        match = _ID.match(last_id)
        if match is None:
            raise BadRequest("Last-Event-ID must be an id this stream sent (<epoch>-<seq>)",
                             code="invalid_parameter", details={"parameter": "last_event_id"})
        epoch, seq = match.group(1), int(match.group(2)) + 1
        if epoch != self.epoch:
            return self.next_seq, "the id is from another TEA process (a restart, or another node)"
        if seq > self.next_seq:
            return self.next_seq, "the id is ahead of this stream"
        if seq < self.oldest:
            return self.next_seq, "the events after this id are no longer in the live-tail window"
        return seq, None

    def acquire(self, key: str) -> None:
        """Count a stream against its tenant's cap (429 past it); start recording."""
        if self.closed:
            raise TooManyStreams("TEA is shutting down", code="shutting_down", headers={"retry-after": "5"})
        n = self._open.get(key, 0)
        if n >= self.max_per_tenant:
            raise TooManyStreams(f"{n} live-tail streams are open for this tenant (stream.max_per_tenant); "
                                 "close one or retry later", details={"limit": self.max_per_tenant, "retry_after": 5},
                                 headers={"retry-after": "5"})
        self._open[key] = n + 1
        self.streams_opened += 1
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self.recording = True

    def release(self, key: str) -> None:
        n = self._open.get(key, 0) - 1
        if n > 0:
            self._open[key] = n
        else:
            self._open.pop(key, None)
        if not self._open and self.recording:
            self._idle = asyncio.get_running_loop().call_later(self.resume_s, self._stop_recording)

    def _stop_recording(self) -> None:
        self._idle = None
        if not self._open:
            self.recording = False
            self._chunks.clear()
            self._bytes = 0
            self.next_seq += 1  # a number nobody holds: an id from before this pause cannot look resumable

    @property
    def open_streams(self) -> int:
        return sum(self._open.values())

    def close(self) -> None:
        """End every stream (the server is stopping: an open stream would hold its graceful shutdown)."""
        self.closed = True
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)

    def count_drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def stream_id(self, seq: int) -> bytes:
        return f"{self.epoch}-{seq}".encode()


def sse(event: str | None, data: Any, id_: bytes | None = None) -> bytes:
    head = (b"id: " + id_ + b"\n" if id_ else b"") + (b"event: " + event.encode() + b"\n" if event else b"")
    return head + b"data: " + encode_json(data) + b"\n\n"


class EventStream(Response):
    """The response of one live-tail stream: it runs for as long as the client stays (see module doc)."""

    def __init__(self, tail: LiveTail, key: str, filter: EventFilter, start: int, gap: str | None,
                 receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        super().__init__(b"", 200, b"text/event-stream; charset=utf-8",
                         {"cache-control": "no-cache, no-store", "x-accel-buffering": "no"})
        self.tail, self.key, self.filter, self.cursor, self.gap = tail, key, filter, start, gap
        self.receive = receive
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
                    tail.count_drop("slow_client")
                    await self._write(sse("dropped", {
                        "reason": "slow_client", "message": "this stream fell behind the live-tail window "
                        "(stream.window_bytes); reconnect, and read what you missed from /v1/events"}))
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

    async def _deliver(self, chunks: list[Chunk]) -> None:
        """Write the matching events of ``chunks`` from the cursor on, in sends of at most FLUSH_BYTES."""
        out: list[bytes] = []
        size = sent = 0
        for chunk in chunks:
            events = chunk.events()
            start = max(0, self.cursor - chunk.first)
            matched = select(events[start:] if start else events, self.filter)
            j = 0
            for i in range(start, chunk.count):  # (select keeps the order: walk both for the sequence numbers)
                if j < len(matched) and events[i] is matched[j]:
                    frame = b"id: " + self.tail.stream_id(chunk.first + i) + b"\ndata: " + \
                        encode_json(view(events[i])) + b"\n\n"
                    out.append(frame)
                    size += len(frame)
                    j += 1
            self.cursor = chunk.end
            sent += j
            if size >= FLUSH_BYTES:
                await self._write(b"".join(out))
                out, size = [], 0
        if out:
            await self._write(b"".join(out))
        self.tail.events_sent += sent

    async def _disconnected(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass


class _Stalled(Exception):
    """The client accepted no bytes for stream.stall_timeout_s."""


def tenant_key(f: EventFilter) -> str:
    return "*" if f.tenant_ids is None else ",".join(sorted(f.tenant_ids))


def routes(app: "TeaApp") -> list[Route]:
    tail = app.live

    async def stream(request: Request) -> Response:
        check_params(request, {*FILTER_FIELDS, "start_time", "end_time", "last_event_id"})
        scoped = app.reader(request).scope(event_filter(request))  # 403 now, before the stream starts
        start, gap = tail.resume_point(request.header("last-event-id") or request.param("last_event_id"))
        key = tenant_key(scoped)
        tail.acquire(key)
        return EventStream(tail, key, scoped, start, gap, request.receive)

    return [Route(
        "GET", "/v1/events/stream", stream,
        "Live tail: matching events as Server-Sent Events, within milliseconds of their acknowledgement",
        tags=("events",),
        params=FILTER_PARAMS + (Param("last_event_id", "resume after this id (or send the Last-Event-ID header)"),),
        responses={200: ("An endless text/event-stream: `id:` + `data:` (one event as JSON, the shape of "
                         "GET /v1/events/{event_id}) per event; `event: gap` when it could not resume without "
                         "a gap; `event: dropped` as the last message of a client too slow to keep up; "
                         "`: keep-alive` comments", {"text/event-stream": {"type": "string"}}),
                   **error_responses(400, 401, 403, 429)},
        scope=READ)]
