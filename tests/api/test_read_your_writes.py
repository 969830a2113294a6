"""Read-your-writes: a read sees every event this node acknowledged before it, on every backend and read
route, with no sleep between the write and the read — even with a writer (and processors) whose intervals
would otherwise keep them out of storage for a minute. Bounded by ``reads.max_wait_ms``, overridden per
request by ``TEA-Consistency``."""
from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tea.storage.memory import MemoryStorage
from tests.comms.test_communications import A2A, MCP
from tests.comms.test_postgrest import a2a_row
from tests.api.test_usage_signals import otlp_body
from tests.conftest import BACKENDS, backend_settings

SLOW = {"writer__flush_interval_ms": 60_000.0, "processing__batch_timeout_ms": 60_000.0}  # never by interval
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ENDPOINT_SPAN = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [
    {"traceId": TRACE, "spanId": "00000000000000aa", "name": "http.GET./api/x", "kind": 2,
     "startTimeUnixNano": str(time.time_ns()), "endTimeUnixNano": str(time.time_ns() + 10**6),
     "attributes": [{"key": "event.category", "value": {"stringValue": "endpoint_usage"}},
                    {"key": "http.method", "value": {"stringValue": "GET"}},
                    {"key": "http.route", "value": {"stringValue": "/api/x"}}]}]}]}]}


@pytest.fixture(params=BACKENDS)
def slow(request, serve):  # type: ignore[no-untyped-def]
    """A TEA on each backend whose writer and processors write only when a read asks them to."""
    return serve(**backend_settings(request, request.param), telemetron__tenant="iot", **SLOW)


def test_every_read_route_sees_the_write_before_it(slow) -> None:
    with httpx.Client(base_url=slow.url) as c:
        r = c.post("/v1/events", json=[
            {"event_type": "mcp_request", "event_id": "ryw-1", "tenant_id": "acme", "source": "gw",
             "method": "tools/list", "duration_ms": 8, "user_id": "u-1"},
            {"event_type": "mcp_request", "event_id": "ryw-2", "tenant_id": "acme", "source": "gw",
             "method": "tools/call", "duration_ms": 40, "trace_id": TRACE, "span_id": "00f067aa0ba902b7"}])
        assert r.status_code == 200 and r.json()["accepted"] == 2
        one = c.get("/v1/events/ryw-1", params={"tenant_id": "acme"})
        assert one.status_code == 200 and one.json()["method"] == "tools/list"
        assert "tea-consistency" not in one.headers
        assert c.get("/v1/events", params={"tenant_id": "acme"}).json()["total_count"] == 2
        assert c.get("/v1/stats", params={"tenant_id": "acme"}).json()["events_count"] == 2
        series = c.get("/v1/metrics", params={"tenant_id": "acme", "metrics": "requests", "granularity": "hour"})
        assert sum(p["requests"] for s in series.json()["series"] for p in s["points"]) == 2
        usage = c.get("/v1/usage", params={"tenant_id": "acme", "period": "day"}).json()
        assert sum(row["events"] for row in usage["rows"]) == 2
        for kind, n in (("traces", 2), ("metrics", 3), ("logs", 4)):  # OpenTelemetry: spans, points, log records
            assert c.post(f"/v1/{kind}", json=otlp_body(kind, time.time_ns(), n, "acme")).status_code == 200
        assert c.get(f"/v1/traces/{1:032x}").json()["span_count"] == 1
        assert len(c.get("/v1/logs", params={"tenant_id": "acme"}).json()["logs"]) == 4
        assert [m["name"] for m in c.get("/v1/otel/metrics/names").json()["metrics"]] == ["g"]
        assert c.post("/v1/traces", json=ENDPOINT_SPAN).status_code == 200  # a row the analytics processor derives
        assert {"table_name": "endpoint_usage", "count": 1} in c.get("/v1/analytics/summary").json()["rows"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # Telemetron's ingest and stats (its open tenant)
        assert c.post("/ingest", json={"sourceId": 1001, "type": "Heartbeat", "timestamp": now}).status_code == 202
        assert c.get("/stats/1001").json()["total_events"] == 1
        prom = c.get("/api/v1/query", params={"query": 'sum(tea_requests_total{method="tools/call"})'}).json()
        assert float(prom["data"]["result"][0]["value"][1]) == 1
        # a communication: the PostgREST table, and the registry's counts a processor derives from it
        assert c.post("/v1/registry", json={"entity_id": "github", "entity_type": "mcp_server",
                                            "entity_name": "GitHub"}).status_code == 201
        assert c.post("/v1/communications", json=[A2A, MCP]).status_code == 200
        rows = c.get("/rest/v1/communication_telemetry", params={"select": "source_id,target_id"}).json()
        assert sorted(r["target_id"] for r in rows) == ["github", "sales-team"]
        github = c.get("/v1/registry/mcp_server/github").json()
        assert (github["activity_count"], github["error_count"]) == (1, 1)


@pytest.mark.filterwarnings("ignore:The '(timeout|verify)' parameter is deprecated:DeprecationWarning")
def test_supabase_py_insert_then_select(slow) -> None:
    supabase = pytest.importorskip("supabase")
    client = supabase.create_client(slow.url, "anon-key")
    try:
        inserted = client.table("communication_telemetry").insert(a2a_row(source="ryw-team")).execute().data
        found = client.table("communication_telemetry").select("id,source_id").eq("id", inserted[0]["id"]).execute()
        assert found.data == [{"id": inserted[0]["id"], "source_id": "ryw-team"}]
    finally:
        client.postgrest.aclose()


def test_eventual_answers_with_what_is_stored(serve) -> None:
    live = serve(storage_backend="memory", **SLOW)
    with httpx.Client(base_url=live.url) as c:
        assert c.post("/v1/events", json={"event_type": "e", "event_id": "ev-1"}).status_code == 200
        started = time.monotonic()
        eventual = c.get("/v1/events/ev-1", headers={"TEA-Consistency": "eventual"})
        assert eventual.status_code == 404 and "tea-consistency" not in eventual.headers  # not stored yet
        assert time.monotonic() - started < 30  # (it did not wait for the 60 s interval)
        assert c.get("/v1/events/ev-1", headers={"TEA-Consistency": "read_your_writes"}).status_code == 200
        bad = c.get("/v1/events", headers={"TEA-Consistency": "strong"})
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_consistency"


def test_eventual_by_setting_and_read_your_writes_by_header(serve) -> None:
    live = serve(storage_backend="memory", reads__consistency="eventual", **SLOW)
    with httpx.Client(base_url=live.url) as c:
        assert c.post("/v1/events", json={"event_type": "e", "event_id": "ev-2"}).status_code == 200
        assert c.get("/v1/events/ev-2").status_code == 404
        assert c.get("/v1/events/ev-2", headers={"TEA-Consistency": "read_your_writes"}).status_code == 200


class DownStorage(MemoryStorage):
    """Real in-memory storage that refuses every write while ``down`` (a storage outage)."""

    def __init__(self) -> None:
        super().__init__(max_events=10_000)
        self.down = True

    async def write_batch(self, batch: Any) -> Any:
        if self.down:
            raise ConnectionError("storage is down")
        return await super().write_batch(batch)


def test_a_read_waits_at_most_max_wait_then_says_stale(serve) -> None:
    storage = DownStorage()
    live = serve(storage=storage, reads__max_wait_ms=300, writer__max_backoff_s=0.05)
    with httpx.Client(base_url=live.url, timeout=30) as c:
        assert c.post("/v1/events", json={"event_type": "e", "event_id": "down-1"}).status_code == 200
        r = c.get("/v1/events")
        assert r.status_code == 200 and r.headers["tea-consistency"] == "stale" and r.json()["total_count"] == 0
        pg = c.get("/rest/v1/communication_telemetry")
        assert pg.status_code == 200 and pg.headers["tea-consistency"] == "stale"
        eventual = c.get("/v1/events", headers={"TEA-Consistency": "eventual"})
        assert "tea-consistency" not in eventual.headers  # (it asked for no more than what is stored)
        storage.down = False
        r = c.get("/v1/events")
        assert "tea-consistency" not in r.headers and r.json()["total_count"] == 1
    metrics = httpx.get(live.url + "/metrics").text
    assert 'tea_read_waits_total{outcome="stale"}' in metrics
