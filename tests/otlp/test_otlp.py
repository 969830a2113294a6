"""OTLP with real clients: the OpenTelemetry Python SDK's gRPC and HTTP/protobuf exporters sending
traces, logs and metrics into a live TEA; JSON bodies; auth; size limits; partial success; traces API."""
from __future__ import annotations

import gzip
import json
import time

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_svc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from tests.auth.conftest import ADMIN_TOKEN, bearer, create_token
from tests.conftest import free_port


@pytest.fixture
def otel(secure):  # type: ignore[no-untyped-def]
    port = free_port()
    live = secure(storage_backend="duckdb", otlp__grpc_port=port)
    live.grpc_port = port
    live.token = create_token(live.url, "acme", "enterprise")["token"]
    return live


def exporters(live, transport: str, token: str):  # type: ignore[no-untyped-def]
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter(endpoint=f"127.0.0.1:{live.grpc_port}", insecure=True,
                                headers=(("authorization", f"Bearer {token}"),))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
    return HttpSpanExporter(endpoint=live.url + "/v1/traces", headers={"authorization": f"Bearer {token}"})


def emit_trace(exporter, service: str = "checkout") -> str:  # type: ignore[no-untyped-def]
    provider = TracerProvider(resource=Resource.create({"service.name": service, "deployment.type": "cloud"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("POST /orders", attributes={"http.request.method": "POST",
                                                                  "http.route": "/orders",
                                                                  "http.response.status_code": 201}) as root:
        with tracer.start_as_current_span("tools/call", attributes={
                "mcp.method.name": "tools/call", "gen_ai.tool.name": "search", "mcp.session.id": "sess-1",
                "gen_ai.request.model": "m-1", "gen_ai.usage.input_tokens": 120,
                "gen_ai.usage.output_tokens": 30}):
            time.sleep(0.002)
        with tracer.start_as_current_span("db") as db:
            db.set_status(Status(StatusCode.ERROR, "deadlock"))
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_traces_land_as_events_and_trace_trees(otel, transport: str) -> None:
    trace_id = emit_trace(exporters(otel, transport, otel.token))
    otel.wait_stored(3)
    spans = httpx.get(otel.url + "/v1/events", params={"trace_id": trace_id}, headers=bearer(otel.token)).json()
    by_method = {e["method"]: e for e in spans["events"]}
    assert set(by_method) == {"POST /orders", "tools/call", "db"}
    http_span = by_method["POST /orders"]
    assert http_span["tenant_id"] == "acme" and http_span["source"] == "checkout"
    assert http_span["status_code"] == 201 and http_span["protocol"] == "http" and http_span["event_type"] == "span"
    assert http_span["attributes"]["span.kind"] == "internal"
    assert http_span["attributes"]["resource"]["deployment.type"] == "cloud"
    mcp = by_method["tools/call"]
    assert mcp["tokens_used"] == 150 and mcp["session_id"] == "sess-1" and mcp["protocol"] == "mcp"
    assert mcp["attributes"]["gen_ai.request.model"] == "m-1" and mcp["duration_ms"] >= 2
    assert by_method["db"]["status"] == "error" and by_method["db"]["error_message"] == "deadlock"
    tree = httpx.get(f"{otel.url}/v1/traces/{trace_id}", headers=bearer(otel.token)).json()
    assert tree["span_count"] == 3 and tree["error_count"] == 1
    [root] = tree["spans"]
    assert root["name"] == "POST /orders" and sorted(c["name"] for c in root["children"]) == ["db", "tools/call"]
    assert all(c["offset_ms"] >= 0 for c in root["children"])
    listed = httpx.get(otel.url + "/v1/traces", params={"service": "checkout", "status": "error"},
                       headers=bearer(otel.token)).json()["traces"]
    assert [t["trace_id"] for t in listed] == [trace_id] and listed[0]["root_span"] == "POST /orders"
    assert httpx.get(otel.url + "/v1/traces", params={"min_duration_ms": "60000"},
                     headers=bearer(otel.token)).json()["traces"] == []


def test_sdk_logs_and_metrics_over_grpc_and_http(otel) -> None:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    resource = Resource.create({"service.name": "worker"})
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(
        endpoint=f"127.0.0.1:{otel.grpc_port}", insecure=True, headers=(("x-api-key", otel.token),))))
    logs.get_logger("otel-test").emit(timestamp=time.time_ns(), severity_number=SeverityNumber.ERROR,
                                       severity_text="ERROR", body="payment failed for order o-1",
                                       attributes={"order": "o-1"})
    logs.shutdown()
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=otel.url + "/v1/metrics",
                                                              headers={"authorization": f"Bearer {otel.token}"}),
                                           export_interval_millis=60_000)
    meters = MeterProvider(resource=resource, metric_readers=[reader])
    counter = meters.get_meter("tests").create_counter("jobs_done", unit="1")
    counter.add(5, {"queue": "emails"})
    histogram = meters.get_meter("tests").create_histogram("job_seconds", unit="s")
    histogram.record(0.25)
    meters.shutdown()
    otel.wait_stored(3)
    # log records and metric points have tables of their own: they are not events
    assert httpx.get(otel.url + "/v1/events", params={"source": "worker"}, headers=bearer(otel.token)).json()["events"] == []
    [log] = httpx.get(otel.url + "/v1/logs", params={"service": "worker"}, headers=bearer(otel.token)).json()["logs"]
    assert (log["severity_number"], log["severity_text"], log["body"]) == (17, "ERROR", "payment failed for order o-1")
    assert log["attributes"] == {"order": "o-1"}

    def metric(name: str) -> dict:
        [point] = httpx.get(otel.url + "/v1/otel/metrics/points", params={"name": name},
                            headers=bearer(otel.token)).json()["points"]
        return point
    assert metric("jobs_done")["metric"]["value"] == 5 and metric("jobs_done")["attributes"] == {"queue": "emails"}
    assert (metric("job_seconds")["metric"]["count"], metric("job_seconds")["metric"]["sum"]) == (1, 0.25)


def json_body(trace_hex: str = "5b8efff798038103d269b633813fc60c") -> dict:
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]},
                               "scopeSpans": [{"scope": {"name": "web"}, "spans": [{
                                   "traceId": trace_hex.upper(), "spanId": "EEE19B7EC3C1B174", "name": "GET /cart",
                                   "kind": 2, "startTimeUnixNano": str(time.time_ns()),
                                   "endTimeUnixNano": str(time.time_ns() + 5_000_000),
                                   "attributes": [{"key": "http.method", "value": {"stringValue": "GET"}},
                                                  {"key": "http.status_code", "value": {"intValue": "200"}},
                                                  {"key": "tags", "value": {"arrayValue": {"values": [
                                                      {"stringValue": "a"}, {"intValue": "2"}]}}}],
                                   "status": {"code": 1}}]}]}]}


def test_json_and_gzip_over_http(otel) -> None:
    raw = json.dumps(json_body()).encode()
    r = httpx.post(otel.url + "/v1/traces", content=gzip.compress(raw), headers={
        **bearer(otel.token), "content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json" and r.json() == {}
    otel.wait_stored(1)
    [span] = httpx.get(otel.url + "/v1/events", params={"source": "js"}, headers=bearer(otel.token)).json()["events"]
    assert span["trace_id"] == "5b8efff798038103d269b633813fc60c" and span["method"] == "GET" and span["status"] == "ok"
    assert span["attributes"]["tags"] == ["a", 2] and span["attributes"]["scope"] == "web"


def test_errors_are_google_rpc_status_and_only_some_retryable(otel, secure) -> None:
    r = httpx.post(otel.url + "/v1/traces", content=b"\x0a\xff\xff", headers={
        **bearer(otel.token), "content-type": "application/x-protobuf"})
    assert r.status_code == 400 and "retry-after" not in r.headers
    status = status_pb2.Status.FromString(r.content)
    assert status.code == 3 and "invalid OTLP protobuf" in status.message
    r = httpx.post(otel.url + "/v1/traces", json=json_body(), headers={"authorization": "Bearer tk_" + "0" * 40})
    assert r.status_code == 401 and r.json()["code"] == 16
    r = httpx.post(otel.url + "/v1/traces", content=b"x", headers={**bearer(otel.token), "content-type": "text/xml"})
    assert r.status_code == 415
    small = secure(storage_backend="memory", otlp__max_message_bytes=2048)
    token = create_token(small.url, "acme")["token"]
    r = httpx.post(small.url + "/v1/traces", content=b"\x00" * 5000, headers={
        **bearer(token), "content-type": "application/x-protobuf"})
    assert r.status_code == 413


def test_partial_success_names_refused_spans(otel) -> None:
    request = trace_svc.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    now = time.time_ns()
    for i, start in enumerate([now, now + 3 * 86400 * 10**9]):  # the second is days in the future: clock skew
        span = scope.spans.add(trace_id=bytes(16 * [i + 1]), span_id=bytes(8 * [i + 1]), name=f"s{i}",
                               start_time_unix_nano=start, end_time_unix_nano=start + 1000)
        span.attributes.add(key="k", value=common_pb2.AnyValue(string_value="v"))
    r = httpx.post(otel.url + "/v1/traces", content=request.SerializeToString(), headers={
        **bearer(otel.token), "content-type": "application/x-protobuf"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    response = trace_svc.ExportTraceServiceResponse.FromString(r.content)
    assert response.partial_success.rejected_spans == 1 and "clock_skew" in response.partial_success.error_message
    channel = grpc.insecure_channel(f"127.0.0.1:{otel.grpc_port}")
    stub = trace_grpc.TraceServiceStub(channel)
    answer = stub.Export(request, metadata=(("authorization", f"Bearer {otel.token}"),))
    assert answer.partial_success.rejected_spans == 1
    with pytest.raises(grpc.RpcError) as info:
        stub.Export(request, metadata=(("x-api-key", "tk_wrong"),))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as info:
        stub.Export(request)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    big = trace_svc.ExportTraceServiceRequest()
    big.resource_spans.add().scope_spans.add().spans.add(name="x" * (5 * 1024 * 1024))
    with pytest.raises(grpc.RpcError) as info:
        stub.Export(big, metadata=(("authorization", f"Bearer {otel.token}"),))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    raw = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")  # bytes as they are
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\x0a\x05\x0a", metadata=(("authorization", f"Bearer {otel.token}"),))  # a truncated message
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "invalid OTLP protobuf" in info.value.details()
    ok = trace_svc.ExportTraceServiceResponse.FromString(
        raw(request.SerializeToString(), metadata=(("authorization", f"Bearer {otel.token}"),)))
    assert ok.partial_success.rejected_spans == 1
    channel.close()


def test_tenants_come_from_the_principal_and_in_dev_mode_from_the_resource(serve) -> None:
    port = free_port()
    live = serve(storage_backend="memory", otlp__grpc_port=port)  # development mode
    body = json_body()
    body["resourceSpans"][0]["resource"]["attributes"].append({"key": "tenant.id", "value": {"stringValue": "t9"}})
    assert httpx.post(live.url + "/v1/traces", json=body).status_code == 200
    live.wait_stored(1)
    assert httpx.get(live.url + "/v1/events").json()["events"][0]["tenant_id"] == "t9"


def test_traces_are_tenant_scoped(otel) -> None:
    trace_id = emit_trace(exporters(otel, "http", otel.token))
    otel.wait_stored(3)
    other = create_token(otel.url, "globex", "enterprise")["token"]
    assert httpx.get(f"{otel.url}/v1/traces/{trace_id}", headers=bearer(other)).status_code == 404
    assert httpx.get(otel.url + "/v1/traces", headers=bearer(other)).json()["traces"] == []
    assert httpx.get(f"{otel.url}/v1/traces/{trace_id}", headers=bearer(ADMIN_TOKEN)).status_code == 200
    span = trace_pb2.Span()  # keep the import honest: the proto classes are the real ones
    assert span.DESCRIPTOR.full_name == "opentelemetry.proto.trace.v1.Span"


def test_a_taken_grpc_port_is_an_error_not_a_shared_listener(tmp_path) -> None:
    """gRPC's default SO_REUSEPORT would let a second `tea serve` silently share 4317 with the first."""
    import asyncio
    import socket

    from tea.app import TeaApp
    from tea.receive.otlp import start_grpc
    from tests.conftest import make_settings

    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    app = TeaApp(make_settings(tmp_path, storage_backend="memory"))

    async def attempt() -> None:
        await start_grpc(app, "127.0.0.1", port, 4 << 20)

    try:
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            asyncio.run(attempt())
    finally:
        taken.close()
