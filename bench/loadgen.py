"""A small, fast HTTP/1.1 keep-alive load generator: uvloop + asyncio Protocols + httptools.

Each worker process opens ``connections`` keep-alive connections, waits for the common start
signal, then keeps one request in flight per connection until ``duration`` seconds pass or it
has sent ``max_requests``. Requests are pre-encoded bytes cycled from a few distinct bodies.
A 503 is counted apart and the connection backs off briefly before sending again.
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import time
from array import array
from dataclasses import dataclass, field

import httptools
import uvloop

BACKOFF_503_S = 0.05
MAX_RECONNECTS = 100  # per worker; a server that keeps dropping connections ends the run


@dataclass
class Spec:
    host: str
    port: int
    path: str
    bodies: list[bytes]
    events_per_body: int
    connections: int
    duration: float
    max_requests: int  # per worker process
    token: str | None = None  # sent as Authorization: Bearer


def encode_request(spec: Spec, body: bytes) -> bytes:
    auth = f"Authorization: Bearer {spec.token}\r\n" if spec.token else ""
    head = (f"POST {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


@dataclass
class Counts:
    sent: int = 0
    ok: int = 0          # 200
    partial: int = 0     # 207
    busy: int = 0        # 503
    other: int = 0       # any other status
    errors: int = 0      # connection errors, parse errors, connections lost mid-request
    events_acked: int = 0
    latencies: array = field(default_factory=lambda: array("d"))  # seconds, of 200s and 207s


def accepted_count(prefix: bytes, default: int) -> int:
    """``accepted`` from a body starting ``{"accepted":N,`` — cheap, no JSON decode."""
    if prefix.startswith(b'{"accepted":'):
        end = prefix.find(b",", 12)
        if end > 12:
            try:
                return int(prefix[12:end])
            except ValueError:
                pass
    return default


class Run:
    """One worker's shared state: the pre-encoded requests, the limits and the counts."""

    def __init__(self, spec: Spec, loop: asyncio.AbstractEventLoop) -> None:
        self.spec = spec
        self.loop = loop
        self.requests = [encode_request(spec, body) for body in spec.bodies]
        self.counts = Counts()
        self.deadline = 0.0
        self.reconnects = 0
        self.connections: list[Connection] = []

    def may_send(self) -> bool:
        return self.counts.sent < self.spec.max_requests and time.monotonic() < self.deadline

    def record(self, status: int, latency: float, prefix: bytes) -> None:
        counts = self.counts
        if status == 200:
            counts.ok += 1
            counts.events_acked += accepted_count(prefix, self.spec.events_per_body)
            counts.latencies.append(latency)
        elif status == 207:
            counts.partial += 1
            counts.events_acked += accepted_count(prefix, 0)
            counts.latencies.append(latency)
        elif status == 503:
            counts.busy += 1
        else:
            counts.other += 1


class Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, run: Run, index: int) -> None:
        self.run = run
        self.index = index  # where this connection starts cycling through the bodies
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = run.loop.create_future()
        self.in_flight = False
        self.sent_at = 0.0
        self.prefix = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.in_flight:
            self.run.counts.errors += 1
            self.in_flight = False
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.run.counts.errors += 1
            self.in_flight = False
            self.close()

    def on_message_begin(self) -> None:
        self.prefix = b""

    def on_body(self, body: bytes) -> None:
        if len(self.prefix) < 32:
            self.prefix += body[:32]

    def on_message_complete(self) -> None:
        self.in_flight = False
        status = self.parser.get_status_code()
        self.run.record(status, time.perf_counter() - self.sent_at, self.prefix)
        if not self.parser.should_keep_alive():
            self.close()
        elif status == 503:
            self.run.loop.call_later(BACKOFF_503_S, self.send_next)
        else:
            self.send_next()

    def send_next(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if not self.run.may_send():
            self.close()
            return
        requests = self.run.requests
        request = requests[self.index % len(requests)]
        self.index += 1
        self.run.counts.sent += 1
        self.in_flight = True
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _connect(run: Run, index: int) -> Connection:
    _, conn = await run.loop.create_connection(lambda: Connection(run, index), run.spec.host, run.spec.port)
    run.connections.append(conn)  # type: ignore[arg-type]
    return conn  # type: ignore[return-value]


async def _reconnect(run: Run, index: int) -> Connection | None:
    """A new connection while the run goes on; ``None`` when it is over or reconnects ran out."""
    while run.may_send() and run.reconnects < MAX_RECONNECTS:
        run.reconnects += 1
        try:
            return await _connect(run, index)
        except OSError:
            run.counts.errors += 1
            await asyncio.sleep(0.05)
    return None


async def _drive(run: Run, conn: Connection | None) -> None:
    while conn is not None:
        conn.send_next()
        await conn.closed
        conn = await _reconnect(run, conn.index)


async def _worker(spec: Spec, ready: mp.Queue, go: mp.Event) -> dict:
    loop = asyncio.get_running_loop()
    run = Run(spec, loop)
    conns = await asyncio.gather(*(_connect(run, i) for i in range(spec.connections)))
    ready.put("ready")
    if not await loop.run_in_executor(None, go.wait, 60.0):
        raise TimeoutError("no start signal within 60 s")
    started = time.time()
    run.deadline = time.monotonic() + spec.duration
    drives = asyncio.gather(*(_drive(run, conn) for conn in conns))
    try:
        await asyncio.wait_for(drives, spec.duration + 30.0)
    except asyncio.TimeoutError:  # the server stopped answering: whatever is in flight is an error
        run.counts.errors += sum(conn.in_flight for conn in run.connections)
    ended = time.time()
    for conn in run.connections:
        conn.close()
    counts = run.counts
    return {"sent": counts.sent, "ok": counts.ok, "partial": counts.partial, "busy": counts.busy,
            "other": counts.other, "errors": counts.errors, "events_acked": counts.events_acked,
            "reconnects": run.reconnects, "started": started, "ended": ended,
            "latencies": counts.latencies.tobytes()}


def worker_main(spec: Spec, ready: mp.Queue, go: mp.Event, results: mp.Queue) -> None:
    """Entry point of one load process; always answers on ``results`` (and ``ready``)."""
    try:
        results.put(uvloop.run(_worker(spec, ready, go)))
    except BaseException as exc:  # report to the parent instead of dying silently
        ready.put(f"failed: {exc!r}")
        results.put({"error": repr(exc)})


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def merge(outs: list[dict], processes: int, connections: int) -> dict:
    """One summary of all workers: sums, the common window, latency percentiles in ms."""
    keys = ("sent", "ok", "partial", "busy", "other", "errors", "events_acked", "reconnects")
    total = {key: sum(out[key] for out in outs) for key in keys}
    latencies: list[float] = []
    for out in outs:
        latencies.extend(array("d", out["latencies"]))
    latencies.sort()
    started = min(out["started"] for out in outs)
    ended = max(out["ended"] for out in outs)
    window = max(ended - started, 1e-9)
    total.update(processes=processes, connections_per_process=connections, started=started, ended=ended,
                 seconds=window, requests_per_s=(total["ok"] + total["partial"]) / window,
                 events_per_s=total["events_acked"] / window,
                 latency_ms={name: round(_percentile(latencies, q) * 1000, 3)
                             for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))})
    return total


def _await_ready(ready: mp.Queue, workers: list, timeout: float = 60.0) -> None:
    """Wait until every worker has connected; fail fast when one failed or died."""
    deadline = time.monotonic() + timeout
    waiting = len(workers)
    while waiting:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{waiting} load workers not ready within {timeout:.0f} s")
        try:
            signal = ready.get(timeout=0.5)
        except queue.Empty:
            if any(worker.exitcode is not None for worker in workers):
                raise RuntimeError("a load worker exited before it was ready") from None
            continue
        if signal != "ready":
            raise RuntimeError(f"a load worker failed to start: {signal}")
        waiting -= 1


def run_load(spec: Spec, processes: int, on_start=None) -> dict:
    """Run ``processes`` load workers against ``spec``; call ``on_start(t0)`` when they start."""
    ctx = mp.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [ctx.Process(target=worker_main, args=(spec, ready, go, results), daemon=True)
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    try:
        _await_ready(ready, workers)
        if on_start is not None:
            on_start(time.time())
        go.set()
        outs = [results.get(timeout=spec.duration + 90) for _ in workers]
    finally:
        go.set()
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
    failed = [out["error"] for out in outs if "error" in out]
    if failed:
        raise RuntimeError(f"load workers failed: {failed}")
    return merge(outs, processes, spec.connections)
