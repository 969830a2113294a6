"""OTLP/gRPC load with grpcio's own client: ``TraceServiceStub(channel).Export(request, metadata=...)`` from one
load process (``--grpc-mode aio|threads|raw``; the default ``h2`` is the lean client of ``otlp_h2``).

Three ways to keep ``concurrency`` calls in flight: ``aio`` — grpc.aio, one asyncio loop, that many
tasks spread over ``channels`` channels; ``threads`` — the sync stub, one thread per call slot; ``raw`` —
grpc.aio calling the same method with the body's bytes as they are (no protobuf message on the client).
In ``aio`` and ``threads`` every call sends a new ``ExportTraceServiceRequest`` (parsed from an
``otlp_spans.Bodies`` body, so the stub serializes a real message, as an SDK exporter does); ``raw`` sends
the bytes the OTLP/HTTP load generator posts, which halves the client's CPU per call (~190 against ~335 µs
against a no-op server) — on two cores the client's CPU is CPU TEA does not get. Channels use a local
subchannel pool, so ``channels`` means that many TCP connections.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                      ExportTraceServiceResponse)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from bench.otlp_spans import SPANS_PER_REQUEST, Bodies
from bench.otlp_tally import BUSY, LoadSpec, Tally

OPTIONS = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_send_message_length", 64 << 20),
           ("grpc.max_receive_message_length", 64 << 20)]
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
CALL_TIMEOUT_S = 30.0
BACKOFF_S = 0.05


def _record(tally: Tally, started: float, response: Any, error: grpc.RpcError | None) -> bool:
    """Counts one call; True when the caller should back off."""
    if error is None:
        tally.ok(time.perf_counter() - started, SPANS_PER_REQUEST, response.partial_success.rejected_spans)
        return False
    code = error.code() if hasattr(error, "code") else None
    name = code.name if code is not None else type(error).__name__
    tally.refused(name)
    return name in BUSY


async def _aio(spec: LoadSpec, index: int, started) -> dict:  # type: ignore[no-untyped-def]
    target = f"{spec.host}:{spec.port}"
    channels = [grpc.aio.insecure_channel(target, options=OPTIONS) for _ in range(spec.channels)]
    stubs = [TraceServiceStub(channel) for channel in channels]
    raw = spec.grpc_mode == "raw"
    raw_calls = [channel.unary_unary(EXPORT, request_serializer=None,
                                     response_deserializer=ExportTraceServiceResponse.FromString)
                 for channel in channels]
    metadata = (("authorization", f"Bearer {spec.token}"),)
    bodies, tally = Bodies(index, shape=spec.shape, tenants=spec.tenants), Tally()
    await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), 30)
    await started()
    deadline = time.monotonic() + spec.duration
    tally.start()

    async def caller(slot: int) -> None:
        export = raw_calls[slot % len(stubs)] if raw else stubs[slot % len(stubs)].Export
        while tally.sent < spec.max_requests and time.monotonic() < deadline:
            request = bodies.next() if raw else ExportTraceServiceRequest.FromString(bodies.next())
            tally.sent += 1
            t0 = time.perf_counter()
            try:
                response = await export(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as exc:
                if _record(tally, t0, None, exc):
                    await asyncio.sleep(BACKOFF_S)
                continue
            _record(tally, t0, response, None)

    await asyncio.gather(*(caller(slot) for slot in range(spec.concurrency)))
    out = tally.finish()
    for channel in channels:
        await channel.close()
    return out


def _threads(spec: LoadSpec, index: int, started) -> dict:  # type: ignore[no-untyped-def]
    target = f"{spec.host}:{spec.port}"
    channels = [grpc.insecure_channel(target, options=OPTIONS) for _ in range(spec.channels)]
    for channel in channels:
        grpc.channel_ready_future(channel).result(timeout=30)
    stubs = [TraceServiceStub(channel) for channel in channels]
    metadata = (("authorization", f"Bearer {spec.token}"),)
    tally, lock = Tally(), threading.Lock()
    pools = [Bodies(index * 256 + slot, shape=spec.shape, tenants=spec.tenants) for slot in range(spec.concurrency)]  # own nonce per thread
    asyncio.run(started())
    deadline = time.monotonic() + spec.duration
    tally.start()

    def caller(slot: int) -> None:
        stub, bodies = stubs[slot % len(stubs)], pools[slot]
        while time.monotonic() < deadline:
            with lock:
                if tally.sent >= spec.max_requests:
                    return
                tally.sent += 1
            request = ExportTraceServiceRequest.FromString(bodies.next())
            t0 = time.perf_counter()
            response, error = None, None
            try:
                response = stub.Export(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as exc:
                error = exc
            with lock:
                busy = _record(tally, t0, response, error)
            if busy:
                time.sleep(BACKOFF_S)

    threads = [threading.Thread(target=caller, args=(slot,), daemon=True) for slot in range(spec.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(spec.duration + CALL_TIMEOUT_S + 10)
    out = tally.finish()
    for channel in channels:
        channel.close()
    return out


def run_grpc(spec: LoadSpec, index: int, started) -> dict:  # type: ignore[no-untyped-def]
    if spec.grpc_mode == "threads":
        return _threads(spec, index, started)
    return asyncio.run(_aio(spec, index, started))
