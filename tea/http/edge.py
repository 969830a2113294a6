"""The HTTP edge: bounds on what a connection may cost before TEA's app sees a request.

uvicorn's httptools protocol has none of these: llhttp takes a header section of any size (httptools
keeps a header's bytes until it ends), there is no deadline for a request's headers or body (the
keep-alive timeout is armed only after a response), and ``limit_concurrency`` is checked only once a
request's headers are complete — a connection that never completes them is never counted.
``EdgeProtocol`` is that protocol with, for every connection of both HTTP ports:

- the header section (request line and headers) bounded: the parser is fed at most
  ``max_header_bytes`` of it; past that 431 and the connection is closed, nothing more buffered;
- a deadline for the header section, counted from the connect, or on a kept-alive connection from
  the end of the previous response: 408 and closed (a connection that sent nothing is just closed);
- a body deadline, the longest pause between two pieces and the whole body: 408 and closed;
- a bound on open connections: past it the oldest connection that is idle or still sending its
  headers is closed for the newcomer; when every connection is busy with a request, 503.

Deadlines are checked by one sweep per tick over insertion-ordered dicts (oldest first), so a
request costs a few dict operations, not a timer. Answers the edge writes itself are followed by a
half close and a short linger that reads and drops what the client still sends, so the client
reads the answer instead of a connection reset.

A response of known length leaves in one write: uvicorn writes a response's head and its body
separately — two sends and two TCP segments for a small answer — so the head is held (``_OneWrite``)
until the body is written. A streamed (chunked) response's head is written at once.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections import Counter
from typing import Any, Iterator

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from tea.http.limits import EdgeLimits, edge_limits, open_files_limit

log = logging.getLogger(__name__)
EVICT_SCAN = 8  # connections looked at for one eviction: a pipelined one (request in flight) is skipped
WARN_EVERY_S = 60.0


def answer(status: int, code: str, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """A whole response in TEA's error shape, closing the connection."""
    body = json.dumps({"error": code, "message": message, "details": {}}).encode()
    head = [STATUS_LINE[status], b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n", *(name + b": " + value + b"\r\n" for name, value in headers), b"\r\n"]
    return b"".join(head) + body


def make_edge(settings: Any, registry: Any = None) -> "Edge":
    """The edge for a server's HTTP ports, its bounds from ``settings`` and the open-file limit now;
    its metrics in ``registry`` (the app's) when given."""
    edge = Edge(edge_limits(settings, open_files_limit()))
    if registry is not None:
        edge.register_metrics(registry)
    return edge


class Edge:
    """What the connections of one process share: the bounds, the count, the connections waiting
    for a request's headers (or idle between requests), those reading a body, those lingering."""

    def __init__(self, limits: EdgeLimits) -> None:
        self.limits = limits
        self.open = 0       # admitted connections
        self.refusing = 0   # connections answered 503, lingering
        self.waiting: dict[EdgeProtocol, float] = {}       # since (the connect, or the previous response)
        self.reading: dict[EdgeProtocol, float] = {}       # body bytes last arrived at
        self.body_started: dict[EdgeProtocol, float] = {}  # the headers ended at
        self.lingering: dict[EdgeProtocol, float] = {}     # read and dropped until
        self.closed = Counter[str]()  # connections the edge answered or closed, by reason
        # a coarse clock, set by each sweep: requests stamp their phase with it instead of asking the
        # loop; the deadlines are checked once a tick anyway
        self.now = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweep: asyncio.TimerHandle | None = None
        self._warned_at = -WARN_EVERY_S

    def protocol(self) -> type["EdgeProtocol"]:
        """The protocol class for ``uvicorn.Config(http=...)``, bound to this edge."""
        return type("EdgeProtocol", (EdgeProtocol,), {"edge": self, "waiting": self.waiting,
                                                      "max_header_bytes": self.limits.max_header_bytes})

    def register_metrics(self, registry: Any) -> None:
        """``tea_http_connections`` and ``tea_http_connections_closed_total{reason}`` in ``registry``."""
        registry.register(_EdgeCollector(self))

    # ---------------------------------------------------------------- connections in and out
    def admit(self, conn: "EdgeProtocol") -> None:
        self._loop = conn.loop
        if self._sweep is None:
            self.now = conn.loop.time()
            self._sweep = conn.loop.call_later(self.limits.tick_s, self.sweep)
        if self.open >= self.limits.max_connections and not self._evict():
            self._warn_full()
            if self.refusing < self.limits.max_refusing:
                self.refusing += 1
                conn.state = "refusing"
                conn.refuse(503, "too_many_connections", "the server has too many open connections; retry later",
                            "over_capacity", ((b"retry-after", b"1"),))
            else:  # answering costs a descriptor for a while too: past this, refuse at once
                conn.state = "dropped"
                self.closed["dropped"] += 1
                conn.transport.abort()
            return
        self.open += 1
        conn.state = "open"
        self.waiting[conn] = self.now

    def _warn_full(self) -> None:
        if self.now >= self._warned_at + WARN_EVERY_S:
            self._warned_at = self.now
            log.warning("%d HTTP connections, each busy with a request: new connections are answered 503 "
                        "(http.max_connections; see tea_http_connections_closed_total)", self.open)

    def _evict(self) -> bool:
        """Close the oldest connection that is idle or sending its headers, with no request in flight."""
        for conn in list(itertools.islice(self.waiting, EVICT_SCAN)):  # (a copy of the oldest few: O(1))
            if not conn.in_flight():
                self.forget(conn)
                conn.state = "evicted"  # its slot goes to the newcomer
                self.open -= 1
                self.closed["evicted"] += 1
                if conn.started:
                    conn.transport.write(answer(408, "request_timeout", "the server needed this connection"))
                conn.transport.close()
                return True
        return False

    def gone(self, conn: "EdgeProtocol") -> None:
        self.forget(conn)
        self.lingering.pop(conn, None)
        if conn.state == "open":
            self.open -= 1
        elif conn.state == "refusing":
            self.refusing -= 1
        conn.state = "closed"

    def forget(self, conn: "EdgeProtocol") -> None:
        self.waiting.pop(conn, None)
        self.reading.pop(conn, None)
        self.body_started.pop(conn, None)

    # ---------------------------------------------------------------- deadlines
    def sweep(self) -> None:
        assert self._loop is not None
        now = self.now = self._loop.time()
        limits = self.limits
        for conn in self._expired(self.waiting, now - limits.header_timeout_s):
            conn.header_timeout(now)
        for entries, timeout_s in ((self.reading, limits.body_timeout_s),
                                   (self.body_started, limits.body_total_timeout_s)):
            for conn in self._expired(entries, now - timeout_s):
                conn.body_timeout(now, entries)
        for conn in self._expired(self.lingering, now):
            conn.transport.close()
        busy = self.open or self.refusing or self.lingering
        self._sweep = self._loop.call_later(limits.tick_s, self.sweep) if busy else None

    @staticmethod
    def _expired(entries: dict["EdgeProtocol", float], cutoff: float) -> Iterator["EdgeProtocol"]:
        """Pop and yield the entries at or before ``cutoff``, oldest first (they were inserted in order)."""
        while entries:
            conn = next(iter(entries))
            if entries[conn] > cutoff:
                return
            del entries[conn]
            yield conn


JOIN_MAX = 16 * 1024  # a held head and a body up to this size are joined into one buffer; larger: writelines


class _OneWrite:
    """A connection's transport as its requests' cycles write to it: the head of a response of known length
    is held until the body's first write, and leaves with it (one send). uvicorn writes a response's head
    first, after any interim ``100 Continue``; a chunked response's head is written at once (its body may
    take long to come); the protocol marks where the next response starts (``fresh``)."""

    __slots__ = ("transport", "head", "fresh")

    def __init__(self) -> None:
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # (set at connection_made)
        self.head: bytes | None = None
        self.fresh = True  # the next write that is not an interim (1xx) answer is a response's head

    def write(self, data: bytes) -> None:
        head = self.head
        if head is not None:
            self.head = None
            if len(data) <= JOIN_MAX:
                self.transport.write(head + data)
            else:
                self.transport.writelines((head, data))
            return
        if self.fresh and data[9:10] != b"1":  # (b"HTTP/1.1 100 Continue" is not the head)
            self.fresh = False
            # (find, not `in`: on bytes `in` tries its operand as an integer first, raising and clearing a
            # TypeError each time in CPython 3.11, ~0.4 µs)
            if data.find(b"\r\ntransfer-encoding: chunked\r\n") < 0:
                self.head = data
                return
        self.transport.write(data)

    def flush(self) -> None:
        """Write a head still held (a response that ended without a body write: HEAD, or a connection closing)."""
        head = self.head
        if head is not None:
            self.head = None
            if not self.transport.is_closing():
                self.transport.write(head)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


_Base = HttpToolsProtocol  # (its methods called directly: no super() object on each request's five callbacks)


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol within the edge's bounds (see the module docstring)."""

    edge: Edge  # these three are set on the class Edge.protocol() makes
    waiting: dict["EdgeProtocol", float]
    max_header_bytes: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = "new"          # open, refusing, evicted, dropped, closed
        self.started = False        # bytes of a request arrived (since the last one ended)
        self.in_headers = True      # reading a header section
        self.header_bytes = 0       # of the header section being read
        self.headers_seen = 0       # header sections completed on this connection
        self.body_tracked = False   # in the edge's body deadlines
        self.lingers = False
        self.out = _OneWrite()      # what the requests' cycles write to

    def in_flight(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    # ---------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        _Base.connection_made(self, transport)
        self.out.transport = transport
        self.edge.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        _Base.connection_lost(self, exc)
        self.edge.gone(self)

    def data_received(self, data: bytes) -> None:
        if self.lingers:
            return
        if not self.in_headers:
            _Base.data_received(self, data)
            if self.body_tracked:  # more of a body: its pause deadline starts again
                reading = self.edge.reading
                reading.pop(self, None)
                reading[self] = self.edge.now
        else:
            room = self.max_header_bytes - self.header_bytes
            if len(data) <= room:
                self.header_bytes += len(data)
                _Base.data_received(self, data)
            else:  # feed only what the bound allows: the section may end within it
                seen = self.headers_seen
                if room > 0:
                    _Base.data_received(self, data[:room])
                if self.transport.is_closing():
                    return
                if self.headers_seen == seen:
                    self.refuse(431, "header_too_large", f"the request's header section exceeds http.max_header_bytes "
                                f"({self.max_header_bytes} bytes)", "header_too_large")
                    return
                self.data_received(data[room:])
                return
        if not self.in_headers and not self.body_tracked and not self.transport.is_closing() \
                and self.cycle is not None and self.cycle.more_body:
            self.body_tracked = True  # the body did not arrive with the headers: its deadlines run
            self.edge.reading[self] = self.edge.body_started[self] = self.edge.now

    # ---------------------------------------------------------------- parser callbacks
    def on_message_begin(self) -> None:
        _Base.on_message_begin(self)
        self.started = True
        if self not in self.waiting and self.state == "open":  # (a pipelined request: behind a response)
            self.waiting[self] = self.edge.now

    def on_headers_complete(self) -> None:
        self.in_headers = False
        self.headers_seen += 1
        self.waiting.pop(self, None)
        _Base.on_headers_complete(self)
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = self.out  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        _Base.on_message_complete(self)
        self.in_headers, self.header_bytes, self.started = True, 0, False
        if self.body_tracked:
            self.body_tracked = False
            self.edge.reading.pop(self, None)
            self.edge.body_started.pop(self, None)

    def on_response_complete(self) -> None:
        idle = not self.pipeline and not self.started
        out = self.out
        if out.head is not None:
            out.flush()
        out.fresh = True
        _Base.on_response_complete(self)
        if idle and self.state == "open" and not self.transport.is_closing():
            self.waiting[self] = self.edge.now  # the next request's deadline; idle: the first to give way

    # ---------------------------------------------------------------- deadlines and answers
    def header_timeout(self, now: float) -> None:
        if self.transport.is_closing():
            return
        if self.in_flight():  # a pipelined request waits behind a response: not the client's delay
            self.edge.waiting[self] = now
        elif not self.started:  # sent nothing (or idle): nothing to answer
            self.edge.closed["idle_timeout"] += 1
            self.transport.close()
        else:
            self.refuse(408, "request_timeout", "the request's headers did not arrive within http.header_timeout_s "
                        f"({self.edge.limits.header_timeout_s:g} s)", "header_timeout")

    def body_timeout(self, now: float, entries: dict["EdgeProtocol", float]) -> None:
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None:
            return
        if self.flow.read_paused or cycle.waiting_for_100_continue:  # TEA is not reading yet: not the client's delay
            entries[self] = now
            return
        self.edge.forget(self)
        self.body_tracked = False
        if cycle.response_started:
            self.edge.closed["body_timeout"] += 1
            self.transport.close()
            return
        self.refuse(408, "request_timeout", "the request body stopped arriving (http.body_timeout_s "
                    f"{self.edge.limits.body_timeout_s:g} s, http.body_total_timeout_s "
                    f"{self.edge.limits.body_total_timeout_s:g} s)", "body_timeout")

    def refuse(self, status: int, code: str, message: str, reason: str,
               headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """Answer ``status``, half-close, then read and drop the client's bytes for a moment before
        closing: closing with unread bytes would reset the connection and lose the answer."""
        edge = self.edge
        edge.forget(self)
        edge.closed[reason] += 1
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app, if it waits for the body, hears a disconnect
            self.cycle.message_event.set()
        self.lingers = True
        self.transport.write(answer(status, code, message, headers))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        edge.lingering[self] = self.loop.time() + edge.limits.linger_s


class _EdgeCollector:
    """Read at scrape time: the edge's hot path only counts in a plain Counter."""

    REASONS = ("header_too_large", "header_timeout", "idle_timeout", "body_timeout", "evicted", "over_capacity",
               "dropped")

    def __init__(self, edge: Edge) -> None:
        self.edge = edge

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield GaugeMetricFamily("tea_http_connections", "Open HTTP connections, both HTTP ports",
                                value=self.edge.open)
        closed = CounterMetricFamily("tea_http_connections_closed_total", "HTTP connections the edge answered "
                                     "or closed itself, by reason", labels=["reason"])
        for reason in self.REASONS:
            closed.add_metric([reason], self.edge.closed[reason])
        yield closed

    def describe(self) -> list[Any]:
        return []
