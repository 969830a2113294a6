"""OTLP metrics and logs with the real OpenTelemetry SDK, its exporters configured only through OTEL_*
variables, over gRPC and HTTP/protobuf: counters, up-down counters, histograms, observable gauges and
log records read back exactly (GET /v1/otel/metrics/points, /v1/otel/metrics, /v1/logs), tenant-scoped."""
from __future__ import annotations

import time

import httpx
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from tests.auth.conftest import bearer, create_token
from tests.conftest import free_port

BOUNDS = [0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0, 10000.0]


@pytest.fixture
def otel(secure, monkeypatch):  # type: ignore[no-untyped-def]
    port = free_port()
    live = secure(storage_backend="duckdb", otlp__grpc_port=port)
    live.grpc_port = port
    live.token = create_token(live.url, "acme")["token"]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer {live.token}")
    return live


def exporters(live, monkeypatch, transport: str):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", transport)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{live.grpc_port}" if transport == "grpc"
                       else live.url)
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    return OTLPMetricExporter(), OTLPLogExporter()


def export(live, monkeypatch, transport: str, service: str) -> str:  # type: ignore[no-untyped-def]
    metric_exporter, log_exporter = exporters(live, monkeypatch, transport)
    resource = Resource.create({"service.name": service})
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
    meters = MeterProvider(resource=resource, metric_readers=[reader])
    meter = meters.get_meter("tests")
    jobs = meter.create_counter("jobs_done", unit="1", description="jobs")
    jobs.add(5, {"queue": "emails"})
    jobs.add(3, {"queue": "emails"})
    jobs.add(2, {"queue": "sms"})
    depth = meter.create_up_down_counter("queue_depth")
    depth.add(10, {"queue": "emails"})
    depth.add(-4, {"queue": "emails"})
    duration = meter.create_histogram("job_duration", unit="ms")
    for value in (3, 7, 120):
        duration.record(value, {"queue": "emails"})

    def temperature(options: CallbackOptions):  # type: ignore[no-untyped-def]
        yield Observation(21.5, {"room": "a"})
    meter.create_observable_gauge("temperature", [temperature], unit="Cel")
    meters.shutdown()  # (exports once, now)
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    logger = logs.get_logger("tests")
    tracer = TracerProvider(resource=resource).get_tracer("tests")
    with tracer.start_as_current_span("job") as span:
        logger.emit(timestamp=time.time_ns(), severity_number=SeverityNumber.ERROR, severity_text="ERROR",
                    body=f"Payment FAILED for order o-1 ({transport})", attributes={"order": "o-1", "attempt": 2})
        trace_id = format(span.get_span_context().trace_id, "032x")
    logger.emit(timestamp=time.time_ns(), severity_number=SeverityNumber.INFO, severity_text="INFO",
                body={"event": "done", "items": [1, 2]}, attributes={"order": "o-2"})
    logs.shutdown()
    return trace_id


def points(client: httpx.Client, name: str, service: str) -> list[dict]:
    r = client.get("/v1/otel/metrics/points", params={"name": name, "service": service})
    assert r.status_code == 200, r.text
    return r.json()["points"]


@pytest.mark.parametrize("transport", ["grpc", "http/protobuf"])
def test_sdk_metrics_and_logs_read_back_exactly(otel, monkeypatch, transport: str) -> None:
    service = f"worker-{transport}"
    trace_id = export(otel, monkeypatch, transport, service)
    otel.wait_stored(7)  # 5 points (two counter series, the up-down counter, the histogram, the gauge), 2 records
    with httpx.Client(base_url=otel.url, headers=bearer(otel.token)) as client:
        jobs = {p["attributes"]["queue"]: p["metric"] for p in points(client, "jobs_done", service)}
        assert {q: (m["kind"], m["temporality"], m["monotonic"], m["value"], m["unit"]) for q, m in jobs.items()} == {
            "emails": ("sum", "cumulative", True, 8.0, "1"), "sms": ("sum", "cumulative", True, 2.0, "1")}
        [depth] = points(client, "queue_depth", service)
        assert (depth["metric"]["kind"], depth["metric"]["monotonic"], depth["metric"]["value"]) == ("sum", False, 6.0)
        [hist] = points(client, "job_duration", service)
        m = hist["metric"]
        assert (m["kind"], m["unit"], m["count"], m["sum"], m["min"], m["max"]) == ("histogram", "ms", 3, 130.0, 3.0, 120.0)
        assert m["bounds"] == BOUNDS and sum(m["counts"]) == 3 and m["counts"][1] == 1 and m["counts"][2] == 1
        [gauge] = points(client, "temperature", service)
        assert (gauge["metric"]["kind"], gauge["metric"]["value"], gauge["attributes"]) == ("gauge", 21.5, {"room": "a"})
        assert gauge["tenant_id"] == "acme" and gauge["service"] == service and gauge["scope"] == "tests"

        def series(name: str, agg: str, **extra: str) -> dict:
            r = client.get("/v1/otel/metrics", params={"name": name, "agg": agg, "service": service, **extra})
            assert r.status_code == 200, r.text
            return {tuple(s["group"].values()): [p["value"] for p in s["points"] if p["value"]] for s in r.json()["series"]}
        assert series("jobs_done", "last", group_by="queue") == {("emails",): [8.0], ("sms",): [2.0]}
        assert series("jobs_done", "increase") == {(): [10.0]}  # the counters began within the range
        assert series("job_duration", "count") == {(): [3.0]} and series("job_duration", "avg") == {(): [130 / 3]}
        assert series("job_duration", "p50") == {(): [7.5]}  # rank 1.5 of 3, in the (5, 10] bucket
        assert series("temperature", "max") == {(): [21.5]}

        r = client.get("/v1/logs", params={"service": service, "body": f"payment failed for order o-1 ({transport})"})
        [failed] = r.json()["logs"]
        assert (failed["severity_number"], failed["severity_text"], failed["trace_id"]) == (17, "ERROR", trace_id)
        assert failed["attributes"] == {"order": "o-1", "attempt": 2} and failed["tenant_id"] == "acme"
        r = client.get("/v1/logs", params={"service": service, "attributes": '{"order": "o-2"}'})
        [done] = r.json()["logs"]
        assert done["body"] == {"event": "done", "items": [1, 2]} and done["trace_id"] is None
        newest = client.get("/v1/logs", params={"service": service}).json()["logs"]
        assert [log["severity_number"] for log in newest] == [9, 17]
        assert client.get("/v1/logs", params={"service": service, "min_severity": "13"}).json()["logs"] == [failed]
        assert client.get(f"/v1/traces/{trace_id}/logs").json()["logs"] == [failed]
        names = {n["name"]: n for n in client.get("/v1/otel/metrics/names").json()["metrics"]}
        assert {"jobs_done", "queue_depth", "job_duration", "temperature"} <= set(names)
        assert names["jobs_done"]["kinds"] == ["sum"] and names["jobs_done"]["series"] >= 2
        def prom(query: str) -> dict:
            r = client.get("/api/v1/query", params={"query": query})
            assert r.status_code == 200 and r.json()["status"] == "success", r.text
            return {tuple(sorted((k, v) for k, v in s["metric"].items() if k in ("queue", "room", "__name__"))):
                    float(s["value"][1]) for s in r.json()["data"]["result"]}
        job = f'job="{service}"'
        assert prom(f"jobs_done_total{{{job}}}") == {(("__name__", "jobs_done_total"), ("queue", "emails")): 8.0,
                                                     (("__name__", "jobs_done_total"), ("queue", "sms")): 2.0}
        assert prom(f"sum(queue_depth{{{job}}})") == {(): 6.0} and prom(f'temperature{{{job},room="a"}}') == {
            (("__name__", "temperature"), ("room", "a")): 21.5}
        assert prom(f"histogram_quantile(0.5, sum by (le) (job_duration_bucket{{{job}}}))") == {(): 7.5}
        assert prom(f"job_duration_count{{{job}}} / job_duration_sum{{{job}}}") == {(("queue", "emails"),): 3 / 130}
    other = create_token(otel.url, "beta")["token"]
    with httpx.Client(base_url=otel.url, headers=bearer(other)) as client:  # another tenant sees none of it
        assert points(client, "jobs_done", service) == []
        assert client.get("/v1/logs", params={"service": service}).json()["logs"] == []
