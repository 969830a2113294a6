"""OTLP/gRPC load from a lean client: gRPC over HTTP/2 (h2c, prior knowledge) framed by hand on asyncio
Protocols, like ``otlp_http`` does for HTTP/1.1 — so that on two cores the load process leaves TEA the CPU.

grpcio's own client spends ~190 µs (bytes in, ``raw``) to ~335 µs (stub, ``aio``) of CPU per 100-span call;
the HTTP/1.1 load generator ~65 µs. This one writes each call as one HEADERS frame (a header block encoded once
by ``hpack`` with never-indexed literals, so it can be resent as is) and DATA frames of the gRPC message (the
5-byte length prefix and the same bytes the OTLP/HTTP load posts), honours the server's flow-control windows and
frame size, answers SETTINGS and PING, and decodes every response header block with ``hpack`` (which keeps the
server's dynamic table in step) to read ``grpc-status``; an OK answer's message is parsed as an
``ExportTraceServiceResponse`` for ``partial_success.rejected_spans``. What TEA sees is the same gRPC call an
SDK exporter makes: ``TraceService/Export`` with ``authorization`` metadata, over one TCP connection per channel
with ``concurrency`` streams in flight spread over them.
"""
from __future__ import annotations

import asyncio
import collections
import struct
import time

import grpc
import hpack
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from bench.otlp_spans import SPANS_PER_REQUEST, Bodies
from bench.otlp_tally import BUSY, LoadSpec, Tally

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY = 0x4, 0x8, 0x20
SETTINGS_ENABLE_PUSH, SETTINGS_INITIAL_WINDOW, SETTINGS_MAX_FRAME = 0x2, 0x4, 0x5
MAX_WINDOW = 2**31 - 1
FRAME = struct.Struct(">IBI")     # length << 8 | type, flags, stream id
SETTING = struct.Struct(">HI")
BACKOFF_S = 0.05
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return FRAME.pack(len(payload) << 8 | kind, flags, stream) + payload


class Call:
    __slots__ = ("sent_at", "pending", "window", "headers", "message")

    def __init__(self, data: bytes, window: int) -> None:
        self.sent_at = time.perf_counter()
        self.pending = memoryview(data)   # the DATA not yet sent (flow control)
        self.window = window              # what the server lets this stream send
        self.headers: dict[bytes, bytes] = {}
        self.message = bytearray()


class Run:
    def __init__(self, spec: LoadSpec, process_index: int) -> None:
        self.spec = spec
        self.bodies = Bodies(process_index, shape=spec.shape, tenants=spec.tenants)
        self.tally = Tally()
        self.deadline = 0.0
        self.header_block = hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(name, value) for name, value in (
            (":method", "POST"), (":scheme", "http"), (":path", EXPORT), (":authority", f"{spec.host}:{spec.port}"),
            ("content-type", "application/grpc"), ("te", "trailers"), ("authorization", f"Bearer {spec.token}"))],
            huffman=False)

    def may_send(self) -> bool:
        return self.tally.sent < self.spec.max_requests and time.monotonic() < self.deadline


class Connection(asyncio.Protocol):
    def __init__(self, run: Run, slots: int, loop: asyncio.AbstractEventLoop) -> None:
        self.run, self.slots, self.loop = run, slots, loop
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = loop.create_future()   # the server's first SETTINGS arrived
        self.closed: asyncio.Future[None] = loop.create_future()
        self.buf = bytearray()
        self.decoder = hpack.Decoder()
        self.calls: dict[int, Call] = {}
        self.blocked: collections.deque[int] = collections.deque()
        self.next_stream = 1
        self.window = 65535               # the connection's send window
        self.initial_window = 65535       # the server's SETTINGS_INITIAL_WINDOW_SIZE
        self.max_frame = 16384            # the server's SETTINGS_MAX_FRAME_SIZE
        self.received = 0                 # DATA bytes since the last WINDOW_UPDATE we sent
        self.block = bytearray()          # a header block until its END_HEADERS ...
        self.block_stream = 0             # ... on this stream ...
        self.block_ends = False           # ... which it ends (trailers)

    # ---------------------------------------------------------------- asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        settings = SETTING.pack(SETTINGS_ENABLE_PUSH, 0) + SETTING.pack(SETTINGS_INITIAL_WINDOW, MAX_WINDOW)
        self.transport.write(PREFACE + frame(SETTINGS, 0, 0, settings)
                             + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - 65535)))

    def connection_lost(self, exc: Exception | None) -> None:
        for _ in self.calls:
            self.run.tally.error("connection lost")
        self.calls.clear()
        for future in (self.ready, self.closed):
            if not future.done():
                future.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        view, pos, size = memoryview(buf), 0, len(buf)
        try:
            while size - pos >= 9:
                head, flags, stream = FRAME.unpack_from(buf, pos)
                length, kind = head >> 8, head & 0xFF
                if size - pos - 9 < length:
                    break
                self.on_frame(kind, flags, stream & MAX_WINDOW, view[pos + 9:pos + 9 + length])
                pos += 9 + length
        except (hpack.HPACKError, ValueError, struct.error) as exc:
            self.run.tally.error(f"bad frame: {exc}")
            self.close()
        finally:
            view.release()
            del buf[:pos]

    # ---------------------------------------------------------------- frames in
    def on_frame(self, kind: int, flags: int, stream: int, payload: memoryview) -> None:
        if kind == DATA:
            self.received += len(payload)
            if self.received >= 1 << 30:
                self.write(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.received)))
                self.received = 0
            call = self.calls.get(stream)
            if call is not None:
                call.message += self.unpad(flags, payload)
                if flags & END_STREAM:
                    self.finish(stream)
        elif kind in (HEADERS, CONTINUATION):
            if kind == HEADERS:
                payload = self.unpad(flags, payload)
                if flags & PRIORITY:
                    payload = payload[5:]
                self.block_stream, self.block_ends = stream, bool(flags & END_STREAM)
            self.block += payload
            if flags & END_HEADERS:  # (decoded even for an unknown stream: the dynamic table must stay in step)
                headers = self.decoder.decode(bytes(self.block), raw=True)
                self.block.clear()
                call = self.calls.get(self.block_stream)
                if call is not None:
                    call.headers.update(headers)
                    if self.block_ends:
                        self.finish(self.block_stream)
        elif kind == SETTINGS:
            if not flags & ACK:
                for offset in range(0, len(payload) - len(payload) % 6, 6):
                    key, value = SETTING.unpack_from(payload, offset)
                    if key == SETTINGS_INITIAL_WINDOW:
                        for call in self.calls.values():
                            call.window += value - self.initial_window
                        self.initial_window = value
                    elif key == SETTINGS_MAX_FRAME:
                        self.max_frame = value
                self.write(frame(SETTINGS, ACK, 0))
                if not self.ready.done():
                    self.ready.set_result(None)
                self.unblock()
        elif kind == WINDOW_UPDATE:
            increment = struct.unpack_from(">I", payload)[0] & MAX_WINDOW
            if stream == 0:
                self.window += increment
                self.unblock()
            elif stream in self.calls:
                self.calls[stream].window += increment
                self.unblock()
        elif kind == PING:
            if not flags & ACK:
                self.write(frame(PING, ACK, 0, bytes(payload)))
        elif kind == RST_STREAM:
            if stream in self.calls:
                del self.calls[stream]
                self.run.tally.error(f"RST_STREAM {struct.unpack_from('>I', payload)[0]}")
                self.send()
        elif kind == GOAWAY:
            self.run.tally.error("GOAWAY")
            self.close()

    @staticmethod
    def unpad(flags: int, payload: memoryview) -> memoryview:
        if flags & PADDED:
            return payload[1:len(payload) - payload[0]]
        return payload

    def finish(self, stream: int) -> None:
        """The server ended ``stream``: count the call by its grpc-status, then start the next one."""
        call = self.calls.pop(stream, None)
        if call is None:
            return
        status, http = call.headers.get(b"grpc-status"), call.headers.get(b":status", b"?").decode()
        tally = self.run.tally
        if http != "200" or status is None:
            tally.refused(f"HTTP {http}" + (" without grpc-status" if status is None else ""))
            self.send()
        elif status == b"0":
            rejected = ExportTraceServiceResponse.FromString(bytes(call.message[5:])).partial_success.rejected_spans
            tally.ok(time.perf_counter() - call.sent_at, SPANS_PER_REQUEST, rejected)
            self.send()
        else:
            name = CODE_NAMES.get(int(status), status.decode())
            tally.refused(name)
            if name in BUSY:
                self.loop.call_later(BACKOFF_S, self.send)
            else:
                self.send()

    # ---------------------------------------------------------------- frames out
    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send(self) -> None:
        """Start one call, unless the run is over (then close once nothing is in flight)."""
        if self.transport is None or self.transport.is_closing():
            return
        run = self.run
        if not run.may_send():
            if not self.calls:
                self.close()
            return
        body = run.bodies.next()
        run.tally.sent += 1
        stream, self.next_stream = self.next_stream, self.next_stream + 2
        self.calls[stream] = Call(b"\0" + len(body).to_bytes(4, "big") + body, self.initial_window)
        self.write(frame(HEADERS, END_HEADERS, stream, run.header_block))
        self.flush(stream)

    def flush(self, stream: int) -> None:
        """Send what the windows allow of ``stream``'s DATA; the rest waits for a WINDOW_UPDATE."""
        call = self.calls[stream]
        pending, parts = call.pending, []
        while pending and self.window > 0 and call.window > 0:
            size = min(len(pending), self.max_frame, self.window, call.window)
            last = size == len(pending)
            parts += (FRAME.pack(size << 8 | DATA, END_STREAM if last else 0, stream), pending[:size])
            pending = pending[size:]
            self.window -= size
            call.window -= size
        call.pending = pending
        if parts and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(parts)
        if pending:
            self.blocked.append(stream)

    def unblock(self) -> None:
        """Send what waited for a window, in the order it began waiting."""
        waiting, self.blocked = self.blocked, collections.deque()
        for stream in waiting:
            if stream in self.calls:
                self.flush(stream)  # (waits again, in order, if the windows are still short)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _connect(run: Run, slots: int) -> Connection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: Connection(run, slots, loop), run.spec.host, run.spec.port)
    await asyncio.wait_for(conn.ready, 30)  # type: ignore[attr-defined]
    return conn  # type: ignore[return-value]


async def run_h2(spec: LoadSpec, process_index: int, started) -> dict:  # type: ignore[no-untyped-def]
    """Connect ``spec.channels`` connections, wait for ``started()``, keep ``spec.concurrency`` calls in flight
    over them for ``spec.duration``."""
    run = Run(spec, process_index)
    channels = max(1, min(spec.channels, spec.concurrency))
    slots = [spec.concurrency // channels + (i < spec.concurrency % channels) for i in range(channels)]
    conns = await asyncio.gather(*(_connect(run, n) for n in slots))
    await started()
    run.deadline = time.monotonic() + spec.duration
    run.tally.start()
    for conn in conns:
        for _ in range(conn.slots):
            conn.send()
    try:
        await asyncio.wait_for(asyncio.gather(*(c.closed for c in conns)), spec.duration + 30.0)
    except asyncio.TimeoutError:  # the server stopped answering
        run.tally.error("timeout at end of run")
        for conn in conns:
            conn.close()
    return run.tally.finish()
