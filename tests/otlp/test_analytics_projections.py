"""The seed Telemetry Processor's tables, fed by spans shaped like its producers' (CONTRACTS.md 1.4)."""
from __future__ import annotations

import hashlib
import time

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.auth.conftest import bearer, create_token


def send(live, token: str, spans: list[tuple[str, dict]]) -> None:  # type: ignore[no-untyped-def]
    provider = TracerProvider(resource=Resource.create({"service.name": "rhesis-backend",
                                                        "service.namespace": "rhesis", "deployment.type": "cloud",
                                                        "service.version": "1.0"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=live.url + "/v1/traces", headers={"authorization": f"Bearer {token}"})))
    tracer = provider.get_tracer("rhesis")
    for name, attributes in spans:
        with tracer.start_as_current_span(name, attributes=attributes):
            pass
    provider.shutdown()


def wait_rows(live, token: str, table: str, n: int) -> list[dict]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = httpx.get(f"{live.url}/v1/analytics/{table}", headers=bearer(token)).json()["rows"]
        if len(rows) >= n:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"{table}: fewer than {n} rows")


@pytest.fixture
def live(secure):  # type: ignore[no-untyped-def]
    server = secure(storage_backend="duckdb", processing__batch_timeout_ms=20.0)
    server.token = create_token(server.url, "acme", "enterprise")["token"]
    return server


def test_producer_spans_land_in_the_right_tables_with_the_exact_columns(live) -> None:
    token = live.token
    send(live, token, [
        ("user.activity", {"event.category": "user_activity", "event.type": "login", "user.id": "a1b2c3d4e5f6a7b8",
                           "organization.id": "0011223344556677", "session.id": "s-1",
                           "metadata.ip_country": "DE", "metadata.password": "x"}),
        ("feature.test_run", {"event.category": "feature_usage", "feature.name": "test_run", "feature.action": "created",
                              "user.id": "a1b2c3d4e5f6a7b8", "organization.id": "0011223344556677",
                              "metadata.count": "3"}),
        ("http.GET./api/tests", {"_rhesis.telemetry_enabled": True, "event.category": "endpoint_usage",
                                 "http.method": "GET", "http.route": "/api/tests", "http.url": "http://x/api/tests",
                                 "http.status_code": 200, "duration_ms": 12.5, "user.id": "a1b2c3d4e5f6a7b8"}),
        ("page", {"feature.name": "page_view", "feature.action": "viewed", "page.path": "/home"}),  # fallback
        ("fallback-login", {"event.type": "logout", "user.id": "u"}),                              # fallback
        ("fallback-http", {"http.method": "POST", "http.url": "http://x/api/run"}),                # fallback
        ("unrouted", {"something": "else"}),
    ])
    [activity_logout, activity_login] = wait_rows(live, token, "user_activity", 2)
    assert activity_login["event_type"] == "login" and activity_login["session_id"] == "s-1"
    assert activity_login["user_id"] == "a1b2c3d4e5f6a7b8" and activity_login["organization_id"] == "0011223344556677"
    assert activity_login["deployment_type"] == "cloud"  # from the resource
    meta = activity_login["event_metadata"]
    assert meta["metadata.ip_country"] == "DE" and "metadata.password" not in meta and "event.category" not in meta
    assert meta["service.name"] == "rhesis-backend" and "user.id" not in meta
    assert activity_login["timestamp"].endswith("Z") and activity_logout["event_type"] == "logout"
    endpoints = wait_rows(live, token, "endpoint_usage", 2)
    run = [r for r in endpoints if r["endpoint"] == "/api/tests"][0]
    assert (run["method"], run["status_code"], run["duration_ms"]) == ("GET", 200, 12.5)
    assert "http.route" not in run["event_metadata"] and run["event_metadata"]["_rhesis.telemetry_enabled"] is True
    assert [r for r in endpoints if r["endpoint"] == "http://x/api/run"][0]["method"] == "POST"
    features = wait_rows(live, token, "feature_usage", 2)
    assert {(f["feature_name"], f["action"]) for f in features} == {("test_run", "created"), ("page_view", "viewed")}
    summary = httpx.get(live.url + "/v1/analytics/summary", headers=bearer(token)).json()["rows"]
    assert summary == [{"table_name": "user_activity", "count": 2}, {"table_name": "endpoint_usage", "count": 2},
                       {"table_name": "feature_usage", "count": 2}]
    recent = httpx.get(live.url + "/v1/analytics/recent-activity", headers=bearer(token)).json()["rows"]
    assert {(r["event_type"], r["count"]) for r in recent} == {("login", 1), ("logout", 1)}
    top = httpx.get(live.url + "/v1/analytics/top-endpoints", headers=bearer(token)).json()["rows"]
    assert {(t["endpoint"], t["method"], t["hits"]) for t in top} == {("/api/tests", "GET", 1),
                                                                       ("http://x/api/run", "POST", 1)}
    filtered = httpx.get(live.url + "/v1/analytics/feature_usage", params={"feature_name": "page_view"},
                         headers=bearer(token)).json()["rows"]
    assert len(filtered) == 1
    other = create_token(live.url, "globex", "enterprise")["token"]
    assert httpx.get(live.url + "/v1/analytics/summary", headers=bearer(other)).json()["rows"][0]["count"] == 0


def test_server_side_id_hashing(secure) -> None:
    live = secure(storage_backend="memory", otlp__hash_ids=True, processing__batch_timeout_ms=20.0)
    token = create_token(live.url, "acme", "enterprise")["token"]
    send(live, token, [("user.activity", {"event.category": "user_activity", "event.type": "login",
                                          "user.id": "alice@example.com", "organization.id": "0011223344556677"})])
    [row] = wait_rows(live, token, "user_activity", 1)
    assert row["user_id"] == hashlib.sha256(b"alice@example.com").hexdigest()[:16]
    assert row["organization_id"] == "0011223344556677"  # already a 16-hex hash: kept


def test_the_same_request_sent_three_times_gives_its_rows_once(live) -> None:
    """A client resending one OTLP request (same span ids): 10 events and 10 rows, however the resends fall into
    the processor's batches — each resend here is processed on its own before the next is sent."""
    token = live.token
    spans = [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": f"{i + 1:016x}", "name": "http.GET./api/tests",
              "kind": 2, "startTimeUnixNano": str(time.time_ns()), "endTimeUnixNano": str(time.time_ns() + 10**6),
              "attributes": [{"key": "event.category", "value": {"stringValue": "endpoint_usage"}},
                             {"key": "http.method", "value": {"stringValue": "GET"}},
                             {"key": "http.route", "value": {"stringValue": f"/api/tests/{i}"}}]} for i in range(10)]
    body = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": spans}]}]}
    for _ in range(3):
        assert httpx.post(live.url + "/v1/traces", json=body, headers=bearer(token)).status_code == 200
        deadline = time.monotonic() + 20
        while any(c["lag_events"] for c in httpx.get(live.url + "/health").json()["consumers"].values()):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    summary = httpx.get(live.url + "/v1/analytics/summary", headers=bearer(token)).json()["rows"]
    assert summary[1] == {"table_name": "endpoint_usage", "count": 10}
    assert httpx.get(live.url + "/v1/events", params={"event_type": "span"},
                     headers=bearer(token)).json()["total_count"] == 10


def test_numbers_the_columns_cannot_hold_leave_the_row_stored(live) -> None:
    """An endpoint span whose status code overflows INTEGER (or whose duration overflows DOUBLE) still gives its
    row, without that value — never a refused write that sets the batch's rows aside — and the span keeps it."""
    token = live.token
    now = time.time_ns()
    huge = {"http.status_code": {"intValue": str(2**40)}, "duration_ms": {"intValue": str(2**62)}}
    spans = [{"traceId": "7c8efff798038103d269b633813fc60c", "spanId": f"{i + 1:016x}", "name": "http.GET./api/x",
              "kind": 2, "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 10**6),
              "attributes": [{"key": "event.category", "value": {"stringValue": "endpoint_usage"}},
                             {"key": "http.method", "value": {"stringValue": "GET"}},
                             {"key": "http.route", "value": {"stringValue": f"/api/x/{i}"}},
                             *({"key": k, "value": v} for k, v in huge.items() if i == 0)]} for i in range(3)]
    body = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": spans}]}]}
    assert httpx.post(live.url + "/v1/traces", json=body, headers=bearer(token)).status_code == 200
    rows = sorted(wait_rows(live, token, "endpoint_usage", 3), key=lambda r: r["endpoint"])
    assert [(r["endpoint"], r["status_code"]) for r in rows] == [("/api/x/0", None), ("/api/x/1", None),
                                                                  ("/api/x/2", None)]
    span = httpx.get(live.url + "/v1/events", params={"event_type": "span", "limit": 10},
                     headers=bearer(token)).json()["events"]
    assert [e["attributes"]["http.status_code"] for e in span if "http.status_code" in e["attributes"]] == [2**40]
