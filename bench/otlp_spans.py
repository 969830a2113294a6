"""OTLP trace export bodies with unique ids, cheap enough to make one per request.

A template ``ExportTraceServiceRequest`` is serialized once: one resource (service.name, version,
environment, host, SDK, tenant.id), one scope, 100 SERVER spans in 25 traces of 4 — a root of
5–25 ms and three children of 0.5–4 ms (two children of the root, one grandchild) — named like
``GET /orders/{id}``, with 9–10 HTTP semconv attributes (http.request.method, http.route,
http.response.status_code as int, url.path, user.id, ...; ~5 % errors with error.type).
Trace ids are ``nonce(6) | counter(4) | trace index(1) | 5 random``: the nonce is random per body
factory (one per load process or thread), the counter counts requests. Every span's trace id sits
at a fixed offset in the serialized bytes, so a new body is the template with the 4 counter bytes
rewritten at 100 offsets (~40 µs), and (trace_id, span_id) — TEA's event id — is unique across
requests, processes and runs. Start times are "now" when the template is built; templates are
rebuilt every ``REFRESH_S`` seconds so spans stay recent in long runs.
"""
from __future__ import annotations

import os
import random
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

SPANS_PER_REQUEST = 100
SPANS_PER_TRACE = 4
PARENT = (None, 0, 0, 1)  # index of each span's parent within its trace
REFRESH_S = 30.0
COUNTER_AT = 6  # offset of the request counter inside a trace id

ROUTES = (("GET", "/orders/{id}", "/orders/{}"), ("GET", "/inventory/{sku}", "/inventory/SKU-{}"),
          ("GET", "/users/{id}", "/users/u{}"), ("POST", "/payments", "/payments"),
          ("GET", "/orders", "/orders"), ("PUT", "/carts/{id}", "/carts/{}"))
SERVICES = ("orders-api", "checkout-api", "catalog-api", "accounts-api")


def _kv(key: str, value: str | int | float | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _resource(variant: int) -> list[KeyValue]:
    return [_kv("service.name", SERVICES[variant % len(SERVICES)]), _kv("service.version", "2.14.1"),
            _kv("deployment.environment.name", "production"), _kv("host.name", f"web-{variant % 7:02d}"),
            _kv("telemetry.sdk.name", "opentelemetry"), _kv("telemetry.sdk.language", "python"),
            _kv("telemetry.sdk.version", "1.45.2"), _kv("tenant.id", f"tenant-{variant % 4}")]


def _span(rng: random.Random, trace_id: bytes, span_id: bytes, parent: bytes, start_ns: int) -> Span:
    method, route, path = rng.choice(ROUTES)
    status = 200 if rng.random() < 0.95 else rng.choice((404, 500, 503))
    duration_ns = rng.randrange(500_000, 4_000_000) if parent else rng.randrange(5_000_000, 25_000_000)
    attrs = [_kv("http.request.method", method), _kv("http.route", route),
             _kv("http.response.status_code", status), _kv("url.path", path.format(rng.randrange(100_000))),
             _kv("url.scheme", "https"), _kv("server.address", "api.example.com"),
             _kv("user.id", f"user-{rng.randrange(5000)}"), _kv("client.address", f"10.0.{rng.randrange(256)}.7"),
             _kv("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0")]
    if status >= 500:
        attrs.append(_kv("error.type", str(status)))
    return Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=f"{method} {route}",
                kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=start_ns, end_time_unix_nano=start_ns + duration_ns,
                attributes=attrs, status=Status(code=Status.STATUS_CODE_ERROR if status >= 500 else
                                                Status.STATUS_CODE_UNSET))


def template(nonce: bytes, variant: int, seed: int) -> tuple[bytes, list[int]]:
    """A serialized request (counter 0) and the offsets of the counter in each span's trace id."""
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(_resource(variant))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name, scope_spans.scope.version = "opentelemetry.instrumentation.asgi", "0.52b1"
    now_ns = time.time_ns()
    trace_ids = []
    for t in range(SPANS_PER_REQUEST // SPANS_PER_TRACE):
        trace_id = nonce + bytes(4) + bytes([t]) + rng.randbytes(5)
        trace_ids.append(trace_id)
        span_ids = [rng.randbytes(8) for _ in range(SPANS_PER_TRACE)]
        start = now_ns - rng.randrange(1_000_000_000)
        for i, parent in enumerate(PARENT):
            span = _span(rng, trace_id, span_ids[i], b"" if parent is None else span_ids[parent],
                         start + i * 100_000)
            scope_spans.spans.append(span)
    body = request.SerializeToString()
    offsets = []
    for trace_id in trace_ids:
        at = body.find(trace_id)
        while at >= 0:
            offsets.append(at + COUNTER_AT)
            at = body.find(trace_id, at + 1)
    if len(offsets) != SPANS_PER_REQUEST:
        raise AssertionError(f"found {len(offsets)} trace ids in the template, expected {SPANS_PER_REQUEST}")
    return body, offsets


class Bodies:
    """Serialized ExportTraceServiceRequests, never the same ids twice."""

    def __init__(self, process_index: int, variants: int = 8) -> None:
        self.nonce = os.urandom(4) + process_index.to_bytes(2, "big")
        self.variants = variants
        self.counter = 0
        self._build()

    def _build(self) -> None:
        self.built = time.monotonic()
        self.templates = [template(self.nonce, v, seed=v) for v in range(self.variants)]

    def next(self) -> bytes:
        self.counter += 1
        if self.counter % 256 == 0 and time.monotonic() - self.built > REFRESH_S:
            self._build()
        body, offsets = self.templates[self.counter % self.variants]
        buf = bytearray(body)
        counter = self.counter.to_bytes(4, "big")
        for at in offsets:
            buf[at:at + 4] = counter
        return bytes(buf)
