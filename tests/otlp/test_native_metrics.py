"""The native OTLP metrics mapper (tea/_otlpfast.c map_metrics) against the Python path it replaces:
for generated ExportMetricsServiceRequests — every kind of metric, odd values, attributes, resources and
principals — the NDJSON it hands the buffer, its counts, time range and refusals are byte-identical to
``pb_metrics`` + the ``Normaliser`` + ``encode_lines``, or it declines and the receiver falls back."""
from __future__ import annotations

import msgspec
from hypothesis import given, strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from tea.receive import otlp
from tea.receive.otlp_signals import pb_metrics
from tea.types import encode_lines
from tests.otlp.test_native import (ADMIN, NOW, PRINCIPALS, SLOW, TENANT, PLAIN_SCALAR, _any, doubles, key_values,
                                    normaliser, text)

assert otlp.NATIVE_METRICS, "the native metrics mapper is built with the trace mapper"


def python_path(n, body: bytes, principal):  # type: ignore[no-untyped-def]
    events = list(pb_metrics(ExportMetricsServiceRequest.FromString(body), principal.is_admin))
    only = principal.tenant_id if not principal.is_admin else None
    accepted, errors, low, high = n(events, None, "otlp", None, only, True)
    return (encode_lines(accepted) if accepted else b"", len(accepted), len(events), low, high,
            [(e.index, e.error, e.message, e.event_id, e.field) for e in errors])


def check(body: bytes, principal=ADMIN, n=None) -> bool:  # type: ignore[no-untyped-def]
    n = n or normaliser()
    mapped = otlp.map_native(n, body, principal, signal="metrics")
    if mapped is None:
        return False
    native = (mapped.ndjson, mapped.accepted, mapped.total, mapped.low, mapped.high,
              [(e.index, e.error, e.message, e.event_id, e.field) for e in mapped.errors])
    expected = python_path(n, body, principal)
    if native[0] != expected[0]:
        assert native[0].decode("utf-8", "replace").splitlines() == expected[0].decode("utf-8", "replace").splitlines()
    assert native == expected
    return True


counts = st.integers(0, 2**64 - 1) | st.sampled_from([0, 1, 7])
times = st.sampled_from([0, 1, 999, 1000, NOW * 1000, NOW * 1000 + 5, (NOW + 3 * 86400 * 10**6) * 1000, 2**64 - 1])
flags = st.sampled_from([0, 0, 1, 2**32 - 1])


def _common(draw, point) -> None:  # type: ignore[no-untyped-def]
    point.start_time_unix_nano = draw(times)
    point.time_unix_nano = draw(times)
    point.flags = draw(flags)
    point.attributes.extend(draw(key_values(4)))


@st.composite
def metrics(draw) -> metrics_pb2.Metric:  # type: ignore[no-untyped-def]
    m = metrics_pb2.Metric(name=draw(text), unit=draw(st.sampled_from(["", "ms", "By", "{request}"])),
                           description=draw(st.sampled_from(["", "what it counts"])))
    kind = draw(st.sampled_from(["gauge", "sum", "histogram", "exponential_histogram", "summary", None]))
    if kind is None:
        return m
    body = getattr(m, kind)
    if kind in ("sum", "histogram", "exponential_histogram"):
        body.aggregation_temporality = draw(st.sampled_from([0, 1, 2, 7]))
    if kind == "sum":
        body.is_monotonic = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        point = body.data_points.add()
        _common(draw, point)
        if kind in ("gauge", "sum"):
            which = draw(st.sampled_from(["double", "int", None]))
            if which == "double":
                point.as_double = draw(doubles)
            elif which == "int":
                point.as_int = draw(st.integers(-2**63, 2**63 - 1))
            continue
        point.count = draw(counts)
        if kind == "summary":
            point.sum = draw(doubles)
            for _ in range(draw(st.integers(0, 3))):
                point.quantile_values.add(quantile=draw(doubles), value=draw(doubles))
            continue
        for field in ("sum", "min", "max"):
            if draw(st.booleans()):
                setattr(point, field, draw(doubles))
        if kind == "histogram":
            bounds = draw(st.lists(doubles, max_size=4))
            point.explicit_bounds.extend(bounds)
            point.bucket_counts.extend(draw(st.lists(counts, min_size=len(bounds) + 1, max_size=len(bounds) + 1)))
        else:
            point.scale = draw(st.integers(-10, 20))
            point.zero_count = draw(counts)
            for side in ("positive", "negative"):
                if draw(st.booleans()):
                    buckets = getattr(point, side)
                    buckets.offset = draw(st.integers(-2**31, 2**31 - 1))
                    buckets.bucket_counts.extend(draw(st.lists(counts, max_size=4)))
    return m


@st.composite
def requests(draw) -> bytes:  # type: ignore[no-untyped-def]
    request = ExportMetricsServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rm = request.resource_metrics.add()
        for key, value in draw(st.lists(st.tuples(st.sampled_from(["service.name", "tenant.id", "host.name"]),
                                                  PLAIN_SCALAR), max_size=3, unique_by=lambda kv: kv[0])):
            rm.resource.attributes.add(key=key, value=_any(value))
        for _ in range(draw(st.integers(0, 2))):
            sm = rm.scope_metrics.add()
            if draw(st.booleans()):
                sm.scope.name = draw(text)
            sm.metrics.extend(draw(st.lists(metrics(), max_size=3)))
    return request.SerializeToString()


@SLOW
@given(body=requests(), principal=PRINCIPALS, skew=st.sampled_from([86400.0, 1.0]))
def test_generated_metric_requests_are_byte_identical_or_declined(body: bytes, principal, skew: float) -> None:
    check(body, principal, normaliser(skew))


def _point_request(kind: str, **point) -> bytes:  # type: ignore[no-untyped-def]
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name", value=_any("svc"))
    sm = rm.scope_metrics.add()
    sm.scope.name = "meter"
    m = sm.metrics.add(name="m", unit="1")
    body = getattr(m, kind)
    if kind == "sum":
        body.aggregation_temporality, body.is_monotonic = 2, True
    p = body.data_points.add(time_unix_nano=NOW * 1000, **point)
    p.attributes.add(key="k", value=_any("v"))
    return request.SerializeToString()


def test_every_kind_is_handled_natively() -> None:
    assert check(_point_request("gauge", as_double=1.5))
    assert check(_point_request("sum", as_int=42))
    assert check(_point_request("histogram", count=3, sum=6.0, min=1.0, max=3.0, explicit_bounds=[1.0, 2.0],
                                bucket_counts=[1, 1, 1]))
    assert check(_point_request("exponential_histogram", count=2, scale=2, zero_count=1,
                                positive=metrics_pb2.ExponentialHistogramDataPoint.Buckets(offset=-3,
                                                                                          bucket_counts=[1])))
    assert check(_point_request("summary", count=4, sum=10.0, quantile_values=[
        metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=2.0)]), TENANT)
    mapped = otlp.map_native(normaliser(), _point_request("sum", as_int=42), ADMIN, signal="metrics")
    line = msgspec.json.decode(mapped.ndjson)  # type: ignore[union-attr]
    assert line["attributes"]["metric"] == {"name": "m", "kind": "sum", "unit": "1", "temporality": "cumulative",
                                            "monotonic": True, "value": 42.0}
    assert (line["method"], line["source"], line["attributes"]["scope"]) == ("m", "svc", "meter")


def test_declined_cases() -> None:
    n = normaliser()
    with_exemplar = _point_request("gauge", as_double=1.0, exemplars=[metrics_pb2.Exemplar(as_double=1.0)])
    assert otlp.map_native(n, with_exemplar, ADMIN, signal="metrics") is None
    with_metadata = ExportMetricsServiceRequest.FromString(_point_request("gauge", as_double=1.0))
    with_metadata.resource_metrics[0].scope_metrics[0].metrics[0].metadata.add(key="a", value=_any("b"))
    assert otlp.map_native(n, with_metadata.SerializeToString(), ADMIN, signal="metrics") is None
