"""OTLP trace export bodies with unique ids, cheap enough to make one per request.

A template ``ExportTraceServiceRequest`` of 100 spans is serialized once, of one of the shapes in
``otlp_shapes`` (the default, ``semconv``: one resource (service.name, version, environment, host,
SDK, tenant.id), one scope, 100 SERVER spans in 25 traces of 4 — a root of 5–25 ms and three
children of 0.5–4 ms — named like ``GET /orders/{id}``, with 9–10 HTTP semconv attributes
(http.request.method, http.route, http.response.status_code as int, url.path, user.id, ...; ~5 %
errors with error.type)).
Trace ids are ``nonce(6) | counter(4) | trace index(1) | 5 random``: the nonce is random per body
factory (one per load process or thread), the counter counts requests. Every span's trace id sits
at a fixed offset in the serialized bytes, so a new body is the template with the 4 counter bytes
rewritten at 100 offsets (~40 µs), and (trace_id, span_id) — TEA's event id — is unique across
requests, processes and runs. Start times are "now" when the template is built; templates are
rebuilt every ``REFRESH_S`` seconds (~25 ms of the load process's CPU each time) so spans' times follow
the clock as an SDK's do: a request's spans started within the last second or so, not up to half a
minute before (a write's duplicate check reads the stored spans of its own times).
"""
from __future__ import annotations

import os
import random
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import otlp_shapes

SPANS_PER_REQUEST = 100
REFRESH_S = 1.0
COUNTER_AT = 6  # offset of the request counter inside a trace id


def template(nonce: bytes, variant: int, seed: int, shape: str = "semconv",
             tenants: int = 0) -> tuple[bytes, list[int]]:
    """A serialized request (counter 0) of ``shape`` and the offsets of the counter in each span's trace id. With
    ``tenants``, resource ``k`` of the ``variant``-th template belongs to tenant ``(variant * resources + k) % tenants``
    (else to the shape's own)."""
    rng = random.Random(seed)
    ids = otlp_shapes.TraceIds(nonce, rng)
    request = ExportTraceServiceRequest()
    groups = otlp_shapes.BUILDERS[shape](rng, variant, ids, time.time_ns())
    for k, (resource, (scope_name, scope_version), spans) in enumerate(groups):
        if tenants:
            resource = [otlp_shapes.kv("tenant.id", f"tenant-{(variant * len(groups) + k) % tenants}")
                        if a.key == "tenant.id" else a for a in resource]
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend(resource)
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name, scope_spans.scope.version = scope_name, scope_version
        scope_spans.spans.extend(spans)
    body = request.SerializeToString()
    offsets = []
    for trace_id in ids.issued:
        at = body.find(trace_id)
        while at >= 0:
            offsets.append(at + COUNTER_AT)
            at = body.find(trace_id, at + 1)
    if len(offsets) != SPANS_PER_REQUEST:
        raise AssertionError(f"found {len(offsets)} trace ids in the {shape} template, expected {SPANS_PER_REQUEST}")
    return body, offsets


class Bodies:
    """Serialized ExportTraceServiceRequests, never the same ids twice."""

    def __init__(self, process_index: int, variants: int = 8, shape: str = "semconv", tenants: int = 0) -> None:
        self.nonce = os.urandom(4) + process_index.to_bytes(2, "big")
        self.variants = max(variants, tenants)  # (a template of one resource a tenant: every tenant gets requests)
        self.shape = shape
        self.tenants = tenants
        self.counter = 0
        self._build()

    def _build(self) -> None:
        self.built = time.monotonic()
        self.templates = [template(self.nonce, v, seed=v, shape=self.shape, tenants=self.tenants) for v in range(self.variants)]

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
