"""The map_metrics seeds: ExportMetricsServiceRequests as the OpenTelemetry SDK encodes them, and protobuf it
never writes, pinned to the fuzz clock so that every seed is deterministic.

- SDK exports (``encode_metrics``, what OTLPMetricExporter sends over HTTP and gRPC): several resources
  (``tenant.id``, ``service.name`` of each value kind) and meters (versions, schema URLs, scope attributes);
  counters and up-down counters (sums, monotonic or not, cumulative and delta), synchronous and observable
  gauges, explicit-bucket and exponential histograms; int and double points; exemplars (points recorded in a
  sampled span); attributes of every value kind the SDK takes.
- Protobuf the SDK never writes: summaries, AnyValues of every kind (arrays, maps, bytes, nested, empty) as
  point attributes, unset and unknown temporalities, points without values or times, huge scales and bucket
  offsets, metric metadata, a metric without data, clock-skewed and out-of-range times, unknown fields.

Each body is written with a few configuration bytes in front (fuzz/oracle.py). ``python -m fuzz.seeds_metrics
DIR``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.sdk.metrics import (AlwaysOffExemplarFilter, Counter, Histogram, MeterProvider,
                                       TraceBasedExemplarFilter, UpDownCounter)
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.metrics import Observation

from fuzz.seeds import NOW_NS, _Ids, write_bodies

SCALARS = {"s": "text \u00e9\u2028\U0001F600 \"q\" \\ \n\x01", "b": True, "i": -(2**63), "f": 1e-5,
           "nan": float("nan"), "inf": float("-inf"), "empty": "", "long": "x" * 1100,
           "sa": ("a", "b"), "ia": (1, 2, 3), "fa": (0.5, 1e300), "ba": (True, False)}
DELTA = {Counter: AggregationTemporality.DELTA, UpDownCounter: AggregationTemporality.DELTA,
         Histogram: AggregationTemporality.DELTA}


def _record(provider: MeterProvider, scope: str, seed: int) -> None:
    """Every instrument the SDK has, with int and double values; some inside a sampled span (exemplars)."""
    tracer = TracerProvider(id_generator=_Ids(seed)).get_tracer("t")
    meter = provider.get_meter(scope, "1.2.3", schema_url="https://opentelemetry.io/schemas/1.27.0",
                               attributes={"scope.attr": "v", "n": 1})
    other = provider.get_meter(scope + ".extra")
    requests = meter.create_counter("http.server.requests", unit="{request}", description="requests served")
    requests.add(3, {"http.request.method": "GET", "http.response.status_code": 200})
    requests.add(1, {"http.request.method": "POST", "http.response.status_code": 503, "error.type": "503"})
    meter.create_counter("bytes.sent", unit="By").add(1.5, SCALARS)
    active = other.create_up_down_counter("sessions.active")
    active.add(5)
    active.add(-7, {"mcp.session.id": "sess-1"})
    meter.create_gauge("queue.depth").set(17, {"queue": "a"})
    meter.create_gauge("cpu.ratio", unit="1").set(0.25)
    other.create_observable_gauge("temperature", callbacks=[lambda _: [Observation(21.5, {"room": "x"}),
                                                                         Observation(-3, {"room": "y"})]])
    duration = meter.create_histogram("http.server.duration", unit="ms")
    latency = meter.create_histogram("gen_ai.client.latency", unit="s")
    with tracer.start_as_current_span("request"):  # sampled: exemplars, when the filter is trace-based
        duration.record(12, {"http.route": "/orders/{id}"})
        duration.record(7.5, {"http.route": "/orders/{id}"})
        latency.record(0.02, {"gen_ai.request.model": "gpt-4o"})
        requests.add(2, {"http.request.method": "GET", "http.response.status_code": 200})
    for v in (0.001, 3.0, 1e6, 0.0):
        latency.record(v, {"gen_ai.request.model": "gpt-4o"})


def _sdk(seed: int, resources: list[dict[str, Any]], delta: bool, exemplars: bool = False) -> bytes:
    metrics = []
    for i, attributes in enumerate(resources):
        reader = InMemoryMetricReader(preferred_temporality=DELTA if delta else {})
        detected = Resource.create(attributes).attributes  # the SDK's own attributes, less its random instance id
        views = [View(instrument_name="gen_ai.client.latency", aggregation=ExponentialBucketHistogramAggregation(20)),
                 View(instrument_name="*")]
        provider = MeterProvider(metric_readers=[reader], views=views, exemplar_filter=(TraceBasedExemplarFilter() if exemplars else AlwaysOffExemplarFilter()),
                                 resource=Resource({k: v for k, v in detected.items() if k != "service.instance.id"}))
        _record(provider, f"meter{i}", seed * 100 + i)
        data = reader.get_metrics_data()
        provider.shutdown()
        metrics.extend(data.resource_metrics)
    from opentelemetry.sdk.metrics.export import MetricsData
    return _pinned(encode_metrics(MetricsData(metrics)))


def _points(request: ExportMetricsServiceRequest) -> Iterator[Any]:
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind:
                    yield from getattr(m, kind).data_points


def _pinned(request: ExportMetricsServiceRequest) -> bytes:
    """The request with its times moved to the fuzz clock: points 10 s before it, exemplars 5 s before."""
    for j, point in enumerate(_points(request)):
        point.start_time_unix_nano = NOW_NS - 60_000_000_000 if point.start_time_unix_nano else 0
        point.time_unix_nano = NOW_NS - 10_000_000_000 + j * 1000
        for exemplar in point.exemplars:
            exemplar.time_unix_nano = NOW_NS - 5_000_000_000
    return request.SerializeToString()


def sdk_exports() -> Iterator[bytes]:
    yield _sdk(1, [{"service.name": "checkout", "tenant.id": "acme"}], delta=False)
    yield _sdk(2, [{"service.name": "agent", "deployment.environment.name": "prod"},
                   {"service.name": "gateway", "tenant.id": "t9"}], delta=True)
    yield _sdk(4, [{"service.name": "exemplars"}], delta=False, exemplars=True)
    yield _sdk(3, [{"service.name": 5, "tenant.id": 42}, {"tenant.id": "_internal"}, {}], delta=False)


def _kv(key: str, value: common_pb2.AnyValue) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=value)


def _values() -> list[common_pb2.KeyValue]:
    """An attribute of every AnyValue kind, nested ones and an empty one included."""
    av = common_pb2.AnyValue
    nested = av(array_value=common_pb2.ArrayValue(values=[av(), av(bytes_value=b"\x01\x02"), av(kvlist_value=(
        common_pb2.KeyValueList(values=[_kv("", av()), _kv("x", av(double_value=float("nan")))])))]))
    return [_kv("s", av(string_value="v\u00e9")), _kv("b", av(bool_value=False)), _kv("i", av(int_value=-1)),
            _kv("d", av(double_value=1.5e-5)), _kv("by", av(bytes_value=b"\x00\xff")), _kv("n", nested),
            _kv("empty", av()), _kv("tenant.id", nested)]


def _request(kinds: list[tuple[str, dict[str, Any]]], **metric: Any) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add(schema_url="https://example.com/r")
    rm.resource.attributes.add(key="service.name", value=common_pb2.AnyValue(string_value="shapes"))
    rm.resource.entity_refs.add(type="host", id_keys=["host.name"], description_keys=["os"])
    sm = rm.scope_metrics.add(schema_url="https://example.com/s")
    sm.scope.name, sm.scope.version = "shapes", "0"
    for i, (kind, fields) in enumerate(kinds):
        m = sm.metrics.add(name=f"m{i}", unit="1", **metric)
        body = getattr(m, kind)
        for key, value in fields.items():
            if key != "point":
                setattr(body, key, value)
        point = body.data_points.add(time_unix_nano=NOW_NS - 10**9, **fields.get("point", {}))
        point.attributes.extend(_values())
    return request


def protobuf_shapes() -> Iterator[bytes]:
    """What the SDK never sends, but a client may."""
    quantiles = [metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=q, value=v)
                 for q, v in ((0.0, 1.0), (0.5, 2.5), (0.99, float("inf")), (1.0, float("nan")))]
    buckets = metrics_pb2.ExponentialHistogramDataPoint.Buckets
    shapes: list[list[tuple[str, dict[str, Any]]]] = [
        [("summary", {"point": {"count": 4, "sum": 10.0, "quantile_values": quantiles}}),
         ("summary", {"point": {}})],
        [("gauge", {"point": {}}), ("sum", {"aggregation_temporality": 0, "point": {"as_int": -(2**63)}}),
         ("sum", {"aggregation_temporality": 7, "is_monotonic": True, "point": {"as_double": float("nan")}})],
        [("histogram", {"aggregation_temporality": 1, "point": {
            "count": 2**64 - 1, "sum": -0.0, "min": float("-inf"), "max": 5e-324, "explicit_bounds": [1.0, 1e300],
            "bucket_counts": [0, 2**64 - 1, 3], "flags": 1}}),
         ("histogram", {"point": {"count": 0}})],
        [("exponential_histogram", {"aggregation_temporality": 2, "point": {
            "scale": -(2**31), "zero_count": 1, "zero_threshold": 1e-9, "min": 1.0,
            "positive": buckets(offset=2**31 - 1, bucket_counts=[1, 0, 2**63]),
            "negative": buckets(offset=-(2**31), bucket_counts=[])}}),
         ("exponential_histogram", {"point": {"scale": 20, "positive": buckets()}})],
    ]
    for kinds in shapes:
        yield _request(kinds).SerializeToString()
    with_metadata = _request([("gauge", {"point": {"as_double": 1.0}})])
    with_metadata.resource_metrics[0].scope_metrics[0].metrics[0].metadata.add(
        key="a", value=common_pb2.AnyValue(string_value="b"))
    yield with_metadata.SerializeToString()
    duplicates = _request([("sum", {"aggregation_temporality": 1, "point": {"as_int": 3}})])
    next(_points(duplicates)).attributes.extend([_kv("s", common_pb2.AnyValue(int_value=1))])
    yield duplicates.SerializeToString()
    timed = _request([("gauge", {"point": {"as_int": 1, "start_time_unix_nano": 999, "flags": 2**32 - 1}})] * 3)
    times = (NOW_NS + 2 * 10**9, NOW_NS + 2 * 86400 * 10**9, 2**64 - 1)
    for point, t in zip(_points(timed), times):
        point.time_unix_nano = t
    yield timed.SerializeToString()
    empty = ExportMetricsServiceRequest()
    empty.resource_metrics.add().scope_metrics.add().metrics.add(name="no data")
    empty.resource_metrics[0].scope_metrics[0].metrics.add(name="no time").gauge.data_points.add(as_double=2.0)
    yield empty.SerializeToString()
    # unknown fields of every wire type, where the native mapper skips them
    yield empty.SerializeToString() + b"\x78\x01\x81\x01" + bytes(8) + b"\x8a\x01\x02ab\x95\x01" + bytes(4)


def bodies() -> Iterator[bytes]:
    yield b""
    yield from sdk_exports()
    yield from protobuf_shapes()


def write(directory: Path) -> int:
    return write_bodies(directory, bodies(), ExportMetricsServiceRequest)


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "build/fuzz/seeds/map_metrics")), "seeds")
