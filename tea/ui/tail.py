"""The live tail's window: the groups of events TEA acknowledged recently, numbered, shared by every
stream (``LiveTail``), and how a stream finds the events its filter selects in a group (``Matcher``).

The ingestor hands every group it made durable — the very NDJSON bytes the durable buffer holds —
to ``LiveTail.publish`` while ``recording`` (that is, while a stream is open, and ``stream.resume_s``
after the last one closed, so that a reconnecting client finds what it missed). ``publish`` appends
the group and wakes the streams: nothing is decoded on the ingestion path. The window keeps the
newest ``stream.window_bytes`` of groups; each event has a sequence number, ``epoch`` names this
process's numbering.
"""
from __future__ import annotations

import asyncio
import re
import secrets
from collections import deque
from typing import Any

import msgspec

from tea.errors import BadRequest, RateLimited
from tea.storage.memory import select
from tea.types import Batch, Event, EventFilter

_ID = re.compile(r"^([0-9a-f]{8})-([0-9]{1,19})$")
# a stream's filter fields from the most selective down: the first one set is searched for in the raw bytes
_NEEDLE_FIELDS = ("trace_id", "correlation_id", "user_id", "method", "target", "source", "event_type", "status",
                  "protocol")
_line_decoder = msgspec.json.Decoder(Event)


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
                 heartbeat_s: float = 15.0, stall_timeout_s: float = 30.0, max_events_per_s: float = 2000.0) -> None:
        self.window_bytes = window_bytes
        self.max_events_per_s = max_events_per_s
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
                   heartbeat_s=st.heartbeat_s, stall_timeout_s=st.stall_timeout_s,
                   max_events_per_s=st.max_events_per_s)

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


class Matcher:
    """The events of a group a stream's filter selects, with their index in the group.

    With an equality filter (a tenant, a method, ...), the group's bytes are searched for the field as
    the buffer's encoder writes it (``"method":"tools/call"``, the one encoding every receiver's NDJSON
    has) and only the lines holding it are decoded, then checked with the filter itself (the bytes may
    also occur in another field's value): a tenant's stream costs a substring search over the other
    tenants' events, not a decode. Without one, the group is decoded once for every stream."""

    def __init__(self, f: EventFilter) -> None:
        self.filter = f
        self.needle: bytes | None = None
        for name in _NEEDLE_FIELDS:
            value = getattr(f, name)
            if value is not None:
                self.needle = b'"' + name.encode() + b'":' + msgspec.json.encode(value)
                break
        else:
            if f.tenant_ids is not None and len(f.tenant_ids) == 1:
                self.needle = b'"tenant_id":' + msgspec.json.encode(f.tenant_ids[0])

    def __call__(self, chunk: Chunk, start: int) -> list[tuple[int, Event]]:
        if self.needle is None:
            events = chunk.events()
            chosen = {id(e) for e in select(events[start:], self.filter)}
            return [(i, events[i]) for i in range(start, chunk.count) if id(events[i]) in chosen]
        payload, needle, f = chunk.payload, self.needle, self.filter
        found: list[tuple[int, Event]] = []
        at = payload.find(needle)
        line = counted_to = 0
        while at >= 0:
            begin = payload.rfind(b"\n", 0, at) + 1
            end = payload.find(b"\n", at)
            end = len(payload) if end < 0 else end
            line += payload.count(b"\n", counted_to, begin)
            counted_to = begin
            if line >= start:
                event = _line_decoder.decode(payload[begin:end])
                if select([event], f):
                    found.append((line, event))
            at = payload.find(needle, end + 1)
        return found
