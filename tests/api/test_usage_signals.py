"""Usage per signal on every backend: events, spans, metric points and log records counted apart, per tenant
and period, the billable sum following ``usage.billable``; tokens and cost beside them; the CLI's CSV."""
from __future__ import annotations

import csv
import io
import time

import pytest

from tests.conftest import BACKENDS, backend_settings


def otlp_body(kind: str, now_ns: int, n: int, tenant: str) -> dict:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}},
                               {"key": "tenant.id", "value": {"stringValue": tenant}}]}
    if kind == "metrics":
        points = [{"timeUnixNano": str(now_ns + i), "asDouble": float(i),
                   "attributes": [{"key": "i", "value": {"intValue": str(i)}}]} for i in range(n)]
        return {"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": [
            {"name": "g", "gauge": {"dataPoints": points}}]}]}]}
    if kind == "logs":
        return {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": [
            {"timeUnixNano": str(now_ns + i), "severityNumber": 9, "body": {"stringValue": f"line {i}"}}
            for i in range(n)]}]}]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [
        {"traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": "op", "startTimeUnixNano": str(now_ns),
         "endTimeUnixNano": str(now_ns + 1000), "attributes": [
             {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
             {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1000"}},
             {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "100"}}]} for i in range(n)]}]}]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_usage_counts_each_signal_and_the_billable_ones(request: pytest.FixtureRequest, serve, backend: str) -> None:
    live = serve(**backend_settings(request, backend), usage__billable=("events", "log_records"),
                 socket=False)
    now_ns = time.time_ns()
    client = live.client
    for tenant, (events, spans, points, logs) in {"acme": (3, 2, 5, 4), "beta": (1, 0, 2, 0)}.items():
        if events:
            r = client.post("/v1/events", json=[{"event_type": "x", "tenant_id": tenant, "method": "m",
                                                 "tokens_used": 7, "cost": 0.5} for _ in range(events)])
            assert r.status_code == 200, r.text
        for kind, n in (("traces", spans), ("metrics", points), ("logs", logs)):
            if n:
                assert client.post(f"/v1/{kind}", json=otlp_body(kind, now_ns, n, tenant)).status_code == 200
    live.wait_stored(17)
    body = client.get("/v1/usage", params={"period": "day"}).json()
    rows = {r["tenant_id"]: r for r in body["rows"]}
    assert body["billable_signals"] == ["events", "log_records"]
    acme = rows["acme"]
    assert {k: acme[k] for k in ("events", "spans", "metric_points", "log_records", "billable")} == {
        "events": 3, "spans": 2, "metric_points": 5, "log_records": 4, "billable": 7}
    # tokens and cost: the events' own and the spans' (priced from the shipped table: gpt-4o)
    assert (acme["tokens"], acme["input_tokens"], acme["output_tokens"]) == (3 * 7 + 2 * 1100, 2000, 200)
    assert acme["cost"] == pytest.approx(3 * 0.5 + 2 * (1000 * 0.0025 / 1000 + 100 * 0.01 / 1000))
    assert acme["requests_by_method"] == {"m": 3, "op": 2}  # metric names and log records are no requests
    beta = rows["beta"]
    assert (beta["events"], beta["spans"], beta["metric_points"], beta["log_records"], beta["billable"]) == \
        (1, 0, 2, 0, 1)
    table = {r["tenant_id"]: r for r in csv.DictReader(io.StringIO(
        client.get("/v1/usage", params={"format": "csv"}).text))}
    assert table["acme"]["metric_points"] == "5" and table["acme"]["billable"] == "7"
