"""OTLP metric export bodies of 1 000 data points of every kind, cheap enough to make one per request.

A template ``ExportMetricsServiceRequest`` is serialized once: one resource (service.name, host,
tenant.id — one of 4 tenants — and ``bench.batch``), one scope, five metrics of 200 points each — a
cumulative monotonic sum (``http.server.requests``), a gauge (``queue.depth``), an explicit-bucket
histogram with 10 bounds (``http.server.duration``), an exponential histogram (``rpc.payload.size``,
scale 3, 8 buckets) and a summary with 3 quantiles (``gc.pause``) — each point with 2 attributes (a
route of 20 and a status of 3, so 200 series a metric), timestamps "now". TEA derives a point's id from
everything it carries, the resource included, so a new body is the template with the 8 hex characters
of ``bench.batch`` rewritten (one offset), and no point repeats across requests, processes and runs.
Templates are rebuilt every ``REFRESH_S`` seconds so points stay recent in long runs.
"""
from __future__ import annotations

import os
import time

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

POINTS_PER_REQUEST = 1000
PER_METRIC = 200
REFRESH_S = 30.0
MARK = "bbbbbbbb"


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def template(tenant: str, now_ns: int) -> tuple[bytes, int]:
    """(serialized request, offset of bench.batch's 8 characters)."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend([_kv("service.name", "bench-api"), _kv("host.name", "bench-host"),
                                   _kv("tenant.id", tenant), _kv("bench.batch", MARK)])
    sm = rm.scope_metrics.add()
    sm.scope.name = "bench"
    start = now_ns - 60 * 10**9
    counter, gauge, hist, exp, summary = (sm.metrics.add(name=n, unit=u) for n, u in (
        ("http.server.requests", "1"), ("queue.depth", "1"), ("http.server.duration", "ms"),
        ("rpc.payload.size", "By"), ("gc.pause", "ms")))
    counter.sum.aggregation_temporality, counter.sum.is_monotonic = 2, True
    hist.histogram.aggregation_temporality = exp.exponential_histogram.aggregation_temporality = 2
    for i in range(PER_METRIC):
        attrs = [_kv("http.route", f"/api/v1/r{i % 20}"), _kv("status", ("ok", "error", "timeout")[i % 3])]
        t = now_ns + i
        counter.sum.data_points.add(start_time_unix_nano=start, time_unix_nano=t, as_int=1000 + i).attributes.extend(attrs)
        gauge.gauge.data_points.add(time_unix_nano=t, as_double=i * 0.5).attributes.extend(attrs)
        hist.histogram.data_points.add(
            start_time_unix_nano=start, time_unix_nano=t, count=55, sum=1234.5, min=0.5, max=900.0,
            explicit_bounds=[5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000],
            bucket_counts=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0]).attributes.extend(attrs)
        p = exp.exponential_histogram.data_points.add(start_time_unix_nano=start, time_unix_nano=t, count=36,
                                                      sum=4096.0, scale=3, zero_count=0)
        p.positive.offset = 40
        p.positive.bucket_counts.extend([1, 2, 3, 4, 5, 6, 7, 8])
        p.attributes.extend(attrs)
        s = summary.summary.data_points.add(start_time_unix_nano=start, time_unix_nano=t, count=10, sum=25.0)
        s.quantile_values.add(quantile=0.5, value=2.0)
        s.quantile_values.add(quantile=0.9, value=4.0)
        s.quantile_values.add(quantile=0.99, value=6.5)
        s.attributes.extend(attrs)
    body = request.SerializeToString()
    return body, body.index(MARK.encode())


class Bodies:
    """Serialized ExportMetricsServiceRequests, never the same point twice."""

    items = POINTS_PER_REQUEST

    def __init__(self, process_index: int, variants: int = 4) -> None:
        self.prefix = os.urandom(1).hex() + f"{process_index:02x}"[-2:]  # (with 4 hex digits of the counter: 8)
        self.variants = variants
        self.counter = 0
        self._build()

    def _build(self) -> None:
        self.built = time.monotonic()
        now = time.time_ns()
        self.templates = [template(f"tenant-{v}", now) for v in range(self.variants)]

    def next(self) -> bytes:
        self.counter += 1
        if self.counter % 256 == 0 and time.monotonic() - self.built > REFRESH_S:
            self._build()
        body, at = self.templates[self.counter % self.variants]
        buf = bytearray(body)
        buf[at:at + 8] = (self.prefix + f"{self.counter:04x}"[-4:]).encode()
        return bytes(buf)
