"""OTLP/HTTP protobuf load: one load process, ``concurrency`` keep-alive connections.

Like bench/loadgen.py (uvloop, asyncio Protocols, httptools, one request in flight per
connection), but every request is a new body from ``otlp_spans.Bodies`` (never the same ids
twice), sent as ``application/x-protobuf`` to ``/v1/traces``, and each 200 answer is decoded as an
``ExportTraceServiceResponse`` to read ``partial_success.rejected_spans``.
"""
from __future__ import annotations

import asyncio
import time

import httptools
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from bench.otlp_spans import SPANS_PER_REQUEST, Bodies
from bench.otlp_tally import LoadSpec, Tally

BACKOFF_S = 0.05        # after a 429/503
MAX_RECONNECTS = 20     # per load process


class Run:
    def __init__(self, spec: LoadSpec, process_index: int) -> None:
        self.spec = spec
        if spec.signal == "metrics":
            from bench.otlp_points import Bodies as PointBodies
            self.bodies = PointBodies(process_index)
            self.items = PointBodies.items
        else:
            self.bodies = Bodies(process_index, shape=spec.shape, tenants=spec.tenants)  # type: ignore[assignment]
            self.items = SPANS_PER_REQUEST
        self.head = (f"POST /v1/{spec.signal} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
                     f"Authorization: Bearer {spec.token}\r\nContent-Type: application/x-protobuf\r\n"
                     "Content-Length: ").encode("ascii")
        self.tally = Tally()
        self.deadline = 0.0
        self.reconnects = 0

    def may_send(self) -> bool:
        return self.tally.sent < self.spec.max_requests and time.monotonic() < self.deadline

    def request(self) -> bytes:
        body = self.bodies.next()
        return b"".join((self.head, str(len(body)).encode(), b"\r\n\r\n", body))


class Connection(asyncio.Protocol):
    def __init__(self, run: Run, loop: asyncio.AbstractEventLoop) -> None:
        self.run, self.loop = run, loop
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self.in_flight = False
        self.sent_at = 0.0
        self.body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.in_flight:
            self.run.tally.error("connection lost")
            self.in_flight = False
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.run.tally.error("bad response")
            self.in_flight = False
            self.close()

    def on_message_begin(self) -> None:
        self.body = bytearray()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.in_flight = False
        status = self.parser.get_status_code()
        latency = time.perf_counter() - self.sent_at
        if status == 200:
            # (ExportMetricsServiceResponse has the same layout: partial_success = 1, its rejected count = 1)
            rejected = ExportTraceServiceResponse.FromString(bytes(self.body)).partial_success.rejected_spans
            self.run.tally.ok(latency, self.run.items, rejected)
        else:
            self.run.tally.refused(str(status))
        if not self.parser.should_keep_alive():
            self.close()
        elif status in (429, 503):
            self.loop.call_later(BACKOFF_S, self.send_next)
        else:
            self.send_next()

    def send_next(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if not self.run.may_send():
            self.close()
            return
        request = self.run.request()
        self.run.tally.sent += 1
        self.in_flight = True
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _connect(run: Run) -> Connection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: Connection(run, loop), run.spec.host, run.spec.port)
    return conn  # type: ignore[return-value]


async def _drive(run: Run, conn: Connection | None) -> None:
    while conn is not None:
        conn.send_next()
        await conn.closed
        conn = None
        while run.may_send() and run.reconnects < MAX_RECONNECTS and conn is None:
            run.reconnects += 1
            try:
                conn = await _connect(run)
            except OSError:
                run.tally.error("connect failed")
                await asyncio.sleep(BACKOFF_S)


async def run_http(spec: LoadSpec, process_index: int, started) -> dict:  # type: ignore[no-untyped-def]
    """Connect, wait for ``started()`` (the common start signal), load for ``spec.duration``."""
    run = Run(spec, process_index)
    conns = await asyncio.gather(*(_connect(run) for _ in range(spec.concurrency)))
    await started()
    run.deadline = time.monotonic() + spec.duration
    run.tally.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(_drive(run, c) for c in conns)), spec.duration + 30.0)
    except asyncio.TimeoutError:  # the server stopped answering
        run.tally.error("timeout at end of run")
    out = run.tally.finish()
    out["reconnects"] = run.reconnects
    return out
