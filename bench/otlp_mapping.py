"""The in-process ceiling of TEA's OTLP steps, on one core, no HTTP/gRPC: protobuf parse
(``ExportTraceServiceRequest.FromString``), mapping (``tea.receive.otlp_map.pb_spans``) and the
NDJSON encoding the buffer appends (``tea.types.encode_lines``), over the same kind of requests
the load processes send. Each step is timed over all requests, best of ``rounds``. ``cpu_reference_us``
(``sum(range(10_000))``, best of 20) says how fast this machine's core was at the time: loopback
VMs vary, so compare runs by it."""
from __future__ import annotations

import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.otlp_spans import SPANS_PER_REQUEST, Bodies


def _best(rounds: int, step, items: list) -> tuple[float, list]:  # type: ignore[no-untyped-def]
    best, out = float("inf"), []
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = [step(item) for item in items]
        best = min(best, time.perf_counter() - t0)
    return best, out


def cpu_reference_us() -> float:
    best = float("inf")
    for _ in range(20):
        t0 = time.perf_counter()
        sum(range(10_000))
        best = min(best, time.perf_counter() - t0)
    return round(best * 1e6, 1)


def ceiling(requests: int = 300, rounds: int = 3, shape: str = "semconv") -> dict:
    from tea.receive.otlp_map import pb_spans
    from tea.types import encode_lines
    factory = Bodies(254, shape=shape)
    bodies = [factory.next() for _ in range(requests)]
    spans = requests * SPANS_PER_REQUEST
    parse_s, messages = _best(rounds, ExportTraceServiceRequest.FromString, bodies)
    map_s, events = _best(rounds, lambda m: list(pb_spans(m, False)), messages)
    encode_s, lines = _best(rounds, encode_lines, events)
    per_span = {"parse": parse_s / spans * 1e6, "map": map_s / spans * 1e6, "encode": encode_s / spans * 1e6}
    native = _native(rounds, bodies, spans)
    if native is not None:  # tea._otlpfast: map + normalise + encode in one call, from the bytes
        per_span["native"] = native
    return {"cpu_reference_us": cpu_reference_us(), "requests": requests, "spans": spans,
            "body_bytes": sum(map(len, bodies)) // requests, "stored_line_bytes": sum(map(len, lines)) // spans,
            "us_per_span": {k: round(v, 2) for k, v in per_span.items()},
            "spans_per_s": {k: round(1e6 / v) for k, v in per_span.items()},
            "parse_map_encode_spans_per_s": round(1e6 / sum(v for k, v in per_span.items() if k != "native"))}


def _native(rounds: int, bodies: list[bytes], spans: int) -> float | None:
    """µs per span of ``tea.receive.otlp.map_native`` (the native mapper incl. normalisation and NDJSON),
    or None when tea._otlpfast is not built."""
    from tea.auth.principal import SCOPES, Principal
    from tea.pipeline.normalise import Normaliser
    from tea.receive.otlp import NATIVE_AVAILABLE, map_native
    if not NATIVE_AVAILABLE:
        return None
    normaliser, admin = Normaliser(), Principal(tenant_id=None, scopes=frozenset(SCOPES))
    seconds, out = _best(rounds, lambda body: map_native(normaliser, body, admin), bodies)
    return seconds / spans * 1e6 if all(m is not None for m in out) else None
