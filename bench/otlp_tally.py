"""What the OTLP load processes share: their spec, their counts, and how they are run.

Load processes are ``spawn``ed, get ready (connect, build their span templates), then all start on
one signal. Each returns a dict in the shape ``bench.loadgen.merge`` sums (``ok`` = 200 / OK with
nothing rejected, ``partial`` = some spans rejected, ``busy`` = 429/503 or RESOURCE_EXHAUSTED/
UNAVAILABLE, ``other``, ``errors``), plus every non-OK status by name and the process's CPU time.
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from array import array
from collections import Counter
from dataclasses import dataclass

from bench import loadgen

BUSY = {"429", "503", "RESOURCE_EXHAUSTED", "UNAVAILABLE"}


@dataclass
class LoadSpec:
    transport: str      # "http" or "grpc"
    host: str
    port: int
    token: str
    concurrency: int    # in-flight requests per load process
    duration: float
    max_requests: int   # per load process; only bounds a runaway loop
    grpc_mode: str = "h2"  # "h2" (otlp_h2: gRPC's HTTP/2 framing by hand), "aio" (grpc.aio, one event loop),
    #                        "threads" (sync stub, a thread per call) or "raw" (grpc.aio sending the bodies'
    #                        bytes, no protobuf message on the client)
    channels: int = 1   # gRPC channels (TCP connections) per load process
    shape: str = "semconv"  # the spans sent (bench.otlp_shapes)
    tenants: int = 0    # the tenants the resources are spread over (0: the shape's own)
    signal: str = "traces"  # OTLP/HTTP only: traces (bench.otlp_spans) or metrics (bench.otlp_points)


class Tally:
    def __init__(self) -> None:
        self.sent = self.oks = self.partial = self.busy = self.other = self.errors = 0
        self.spans_acked = self.rejected_spans = 0
        self.statuses: Counter[str] = Counter()
        self.latencies = array("d")
        self.started = self.ended = self.cpu0 = 0.0

    def start(self) -> None:
        self.started, self.cpu0 = time.time(), time.process_time()

    def ok(self, latency: float, spans: int, rejected: int) -> None:
        if rejected:
            self.partial += 1
            self.rejected_spans += rejected
        else:
            self.oks += 1
        self.spans_acked += spans - rejected
        self.latencies.append(latency)

    def refused(self, status: str) -> None:
        self.statuses[status] += 1
        if status in BUSY:
            self.busy += 1
        else:
            self.other += 1

    def error(self, what: str) -> None:
        self.statuses[what] += 1
        self.errors += 1

    def finish(self) -> dict:
        self.ended = time.time()
        return {"sent": self.sent, "ok": self.oks, "partial": self.partial, "busy": self.busy, "other": self.other,
                "errors": self.errors, "events_acked": self.spans_acked, "rejected_spans": self.rejected_spans,
                "statuses": dict(self.statuses), "reconnects": 0, "started": self.started, "ended": self.ended,
                "cpu_s": time.process_time() - self.cpu0, "latencies": self.latencies.tobytes()}


def _worker(spec: LoadSpec, index: int, ready: mp.Queue, go: mp.Event, results: mp.Queue) -> None:
    """One load process; always answers on ``results`` (and ``ready``)."""
    async def started() -> None:
        ready.put("ready")
        if not await asyncio.get_running_loop().run_in_executor(None, go.wait, 60.0):
            raise TimeoutError("no start signal within 60 s")

    try:
        if spec.transport == "http":
            import uvloop
            from bench.otlp_http import run_http
            results.put(uvloop.run(run_http(spec, index, started)))
        elif spec.grpc_mode == "h2":
            import uvloop
            from bench.otlp_h2 import run_h2
            results.put(uvloop.run(run_h2(spec, index, started)))
        else:
            from bench.otlp_grpc import run_grpc
            results.put(run_grpc(spec, index, started))
    except BaseException as exc:  # report to the parent instead of dying silently
        ready.put(f"failed: {exc!r}")
        results.put({"error": repr(exc)})


def run_load(spec: LoadSpec, processes: int, on_start=None) -> dict:  # type: ignore[no-untyped-def]
    """``processes`` load processes against ``spec``; ``on_start(t)`` is called as they start."""
    ctx = mp.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [ctx.Process(target=_worker, args=(spec, i, ready, go, results), daemon=True)
               for i in range(processes)]
    for worker in workers:
        worker.start()
    outs: list[dict] = []
    try:
        loadgen._await_ready(ready, workers)
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
                worker.join(timeout=5)
    failed = [out["error"] for out in outs if "error" in out]
    if failed:
        raise RuntimeError(f"load processes failed: {failed}")
    merged = loadgen.merge(outs, processes, spec.concurrency)
    statuses: Counter[str] = Counter()
    for out in outs:
        statuses.update(out["statuses"])
    merged.update(statuses=dict(statuses), rejected_spans=sum(o["rejected_spans"] for o in outs),
                  load_cpu_s=round(sum(o["cpu_s"] for o in outs), 2), transport=spec.transport,
                  grpc_mode=spec.grpc_mode if spec.transport == "grpc" else None, channels=spec.channels)
    return merged
