"""Tenant isolation: for random data of tenants A and B, no read endpoint answers A's token with
anything of B; explicit cross-tenant reads are 403; writes land in the caller's tenant only."""
from __future__ import annotations

import csv
import io
import json
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.auth.conftest import admin_headers, bearer, create_token

T0_MS = 1_767_225_600_000


TENANTS = ("tenant-a", "tenant-b")
# what of B's data could show in a response: its tenant id and the markers its rows carry
NEEDLES = ("tenant-b", "src-b", "mark-b", "user-of-tenant-b")


@pytest.fixture(scope="module")
def world(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One server (DuckDB, auth on, alerts evaluated often) with tokens for tenants a and b, analytics
    rows of both (from OTLP spans); the rest of the data is added per example."""
    from tea.app import TeaApp
    from tests.auth.conftest import ADMIN_TOKEN
    from tests.conftest import LiveServer, make_settings
    from tests.otlp.test_analytics_projections import send
    settings = make_settings(tmp_path_factory.mktemp("tenancy"), auth_validation=True, admin_token=ADMIN_TOKEN,
                             writer__flush_interval_ms=10.0, processing__batch_timeout_ms=20.0,
                             alerts__interval_s=0.2)
    live = LiveServer(TeaApp(settings)).start()
    tokens = {t: create_token(live.url, t, "enterprise")["token"] for t in TENANTS}
    for tenant, mark in (("tenant-a", "mark-a"), ("tenant-b", "mark-b")):
        send(live, tokens[tenant], [
            ("user.activity", {"event.category": "user_activity", "event.type": "login", "user.id": mark,
                               "metadata.owner": tenant}),
            ("http.GET./api/" + mark, {"event.category": "endpoint_usage", "http.method": "GET",
                                       "http.route": "/api/" + mark, "http.status_code": 500, "duration_ms": 3.0}),
            ("feature." + mark, {"event.category": "feature_usage", "feature.name": mark, "feature.action": "used"})])
        telemetron = {"sourceId": 9002 if tenant == "tenant-b" else 9001, "type": "Heartbeat",
                      "timestamp": "2026-01-01T00:00:00Z"}
        assert httpx.post(live.url + "/ingest", json=telemetron, headers=bearer(tokens[tenant])).status_code == 202
    deadline = time.monotonic() + 20
    while sum(r["count"] for r in httpx.get(live.url + "/v1/analytics/summary",
                                             headers=admin_headers()).json()["rows"]) < 6:
        assert time.monotonic() < deadline, "analytics rows did not arrive"
        time.sleep(0.05)
    yield live, tokens
    live.stop()


def reads(tenant: str) -> list[tuple[str, dict]]:
    window = {"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z"}
    views = ("health", "patterns", "top-pairs", "realtime", "matrix")
    relations = ("communication_telemetry", "unified_registry", "registry_state_transitions", "registration_audit",
                 "system_health_overview", "communication_patterns", "top_communication_pairs",
                 "communication_metrics_realtime", "system_entity_state", "entity_hierarchy")
    return [("/v1/events", {"limit": "10000"}), ("/v1/metrics", {**window, "group_by": "tenant_id,source"}),
            ("/v1/stats", {}), ("/v1/usage", {**window, "period": "day"}), ("/v1/export", {}),
            ("/v1/export", {"format": "csv"}), ("/events", {"limit": "10000"}),
            ("/metrics", {"granularity": "hour", **window}), ("/v1/stats/src-b", {}), ("/v1/stats/src-a", {}),
            ("/tea/events", {"limit": "10000"}), ("/tea/metrics", {"granularity": "hour", **window}),
            ("/v1/traces", {"limit": "1000"}), ("/v1/traces/trace-b-0", {}),
            ("/v1/communications", {"limit": "10000"}), *((f"/v1/communications/{v}", {}) for v in views),
            ("/v1/registry", {}), ("/v1/registry/state", {}), ("/v1/registry/hierarchy", {}),
            ("/v1/registry/gaps", {}), ("/v1/registry/transitions", {}), ("/v1/registry/audit", {}),
            ("/v1/registry/team/src-b", {}),
            ("/v1/alerts/rules", {}), ("/v1/alerts/rules/rule-b-0", {}), ("/v1/alerts", {"limit": "10000"}),
            ("/v1/alerts/active", {}),
            *((f"/v1/analytics/{t}", {}) for t in ("user_activity", "endpoint_usage", "feature_usage")),
            ("/v1/analytics/summary", {}), ("/v1/analytics/recent-activity", {}), ("/v1/analytics/top-endpoints", {}),
            *((f"/rest/v1/{r}", {}) for r in relations), ("/rest/v1/rpc/check_registration_gaps", {}),
            ("/stats", {}), ("/stats/9002", {})]


def leaked(text: str, marker: str) -> bool:
    return marker in text


# per row: whose, what kind of data, a number (event offset, entity, rule, trace id…)
rows_strategy = st.lists(st.tuples(st.sampled_from(TENANTS), st.sampled_from(["event", "span", "comm", "entity",
                                                                              "rule"]),
                                   st.integers(0, 86_399_000), st.sampled_from(["m1", "m2"])), min_size=1, max_size=30)


def write(url: str, token: str, tenant: str, kind: str, n: int, method: str) -> None:
    mark = "b" if tenant == "tenant-b" else "a"
    if kind == "event":
        r = httpx.post(url + "/v1/events", json={"event_type": "iso", "timestamp": T0_MS + n, "method": method,
                                                  "source": f"src-{mark}", "user_id": f"user-of-{tenant}",
                                                  "attributes": {"owner": tenant}}, headers=bearer(token))
    elif kind == "span":
        r = httpx.post(url + "/v1/events", json={"event_type": "span", "trace_id": f"trace-{mark}-{n % 3}",
                                                  "span_id": f"span-{mark}-{n}", "method": f"op-mark-{mark}",
                                                  "source": f"src-{mark}", "duration_ms": 5}, headers=bearer(token))
    elif kind == "comm":  # now, so the seed's windowed views see it; errors so alerts fire
        r = httpx.post(url + "/v1/communications", json={
            "protocol": "mcp", "source_id": f"src-{mark}", "source_type": "team", "target_id": f"mcp-mark-{mark}",
            "target_type": "mcp", "operation": "tool_call", "status": "error" if n % 2 else "success",
            "duration_ms": 1500, "task_description": f"task of {tenant}"}, headers=bearer(token))
    elif kind == "entity":
        r = httpx.post(url + "/v1/registry", json={"entity_id": f"src-{mark}" if n % 2 else f"ent-mark-{mark}-{n % 5}",
                                                   "entity_type": "team", "entity_name": f"team of {tenant}",
                                                   "parent_entity_id": f"src-{mark}" if not n % 2 else None},
                       headers=bearer(token))
        if r.status_code in (200, 201):
            httpx.post(f"{url}/v1/registry/team/src-{mark}/state", json={"state": "active", "health_status":
                                                                         "degraded", "reason": f"for {tenant}"},
                       headers=bearer(token))
    else:
        r = httpx.post(url + "/v1/alerts/rules", json={"id": f"rule-{mark}-{n % 3}", "name": f"rule of {tenant}",
                                                       "kind": "error_rate", "params": {"threshold_percent": 1}},
                       headers=bearer(token))
        assert r.status_code in (201, 409), r.text
        return
    assert r.status_code in (200, 201), (kind, r.status_code, r.text)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy)
def test_no_read_endpoint_leaks_another_tenant(world, rows: list[tuple[str, str, int, str]]) -> None:
    live, tokens = world
    for tenant, kind, n, method in rows:
        write(live.url, tokens[tenant], tenant, kind, n, method)
    live.wait_stored(live.app.writer.consumed_events + live.app.writer.available())
    time.sleep(0.3)  # one alert evaluation over what was just stored
    a = bearer(tokens["tenant-a"])
    for path, params in reads("tenant-a"):
        r = httpx.get(live.url + path, params=params, headers=a)
        assert r.status_code in (200, 404), (path, r.status_code, r.text)
        if path.endswith(("src-b", "trace-b-0", "rule-b-0", "9002")):  # B's, asked by name: not found for A
            assert r.status_code == 404 and "total_events" not in r.text, (path, r.text)
            continue
        for needle in NEEDLES:
            assert not leaked(r.text, needle), (path, needle)
    # answers that are only counts: they must be A's own counts
    assert httpx.get(live.url + "/stats", headers=a).json() == {"sources_count": 1, "events_count": 1}
    summary = httpx.get(live.url + "/v1/analytics/summary", headers=a).json()["rows"]
    assert [r["count"] for r in summary] == [1, 1, 1]
    entities = httpx.get(live.url + "/v1/registry", headers=a).json()["entities"]
    state = httpx.get(live.url + "/v1/registry/state", headers=a).json()["rows"]
    assert sum(r["count"] for r in state) == len(entities)
    by_id = httpx.get(live.url + "/v1/events", params={"limit": "1"}, headers=bearer(tokens["tenant-b"])).json()
    if by_id["events"]:
        other = by_id["events"][0]["event_id"]
        assert httpx.get(f"{live.url}/v1/events/{other}", headers=a).status_code == 404


def test_explicit_cross_tenant_reads_are_403_and_admin_reads_everything(world) -> None:
    live, tokens = world
    for path in ("/v1/events", "/v1/metrics", "/v1/stats", "/v1/usage", "/v1/export", "/events"):
        r = httpx.get(live.url + path, params={"tenant_id": "tenant-b"}, headers=bearer(tokens["tenant-a"]))
        assert r.status_code == 403 and r.json()["error"] == "forbidden_tenant", path
    assert httpx.get(live.url + "/v1/events", params={"tenant_id": "tenant-a"},
                     headers=bearer(tokens["tenant-a"])).status_code == 200
    httpx.post(live.url + "/v1/events", json={"event_type": "x"}, headers=bearer(tokens["tenant-b"]))
    live.wait_stored(live.app.writer.consumed_events + live.app.writer.available())
    everything = httpx.get(live.url + "/v1/stats", headers=admin_headers()).json()
    mine = httpx.get(live.url + "/v1/stats", headers=bearer(tokens["tenant-a"])).json()
    assert everything["events_count"] > mine["events_count"]


def test_writes_land_in_the_callers_tenant_only(world) -> None:
    live, tokens = world
    batch = [{"event_type": "w", "event_id": "own"}, {"event_type": "w", "event_id": "same", "tenant_id": "tenant-a"},
             {"event_type": "w", "event_id": "theirs", "tenant_id": "tenant-b"},
             {"event_type": "w", "event_id": "system", "tenant_id": "_tea"}]
    r = httpx.post(live.url + "/v1/events", json=batch, headers=bearer(tokens["tenant-a"]))
    assert r.status_code == 207
    body = r.json()
    assert body["event_ids"] == ["own", "same"]
    assert [(e["index"], e["error"], e["field"]) for e in body["errors"]] == [
        (2, "forbidden_tenant", "tenant_id"), (3, "forbidden_tenant", "tenant_id")]
    live.wait_stored(live.app.writer.consumed_events + live.app.writer.available())
    own = httpx.get(f"{live.url}/v1/events/own", headers=bearer(tokens["tenant-a"])).json()
    assert own["tenant_id"] == "tenant-a"
    assert httpx.get(f"{live.url}/v1/events/theirs", headers=admin_headers()).status_code == 404


def test_csv_export_of_a_tenant_has_only_its_rows(world) -> None:
    live, tokens = world
    text = httpx.get(live.url + "/v1/export", params={"format": "csv"}, headers=bearer(tokens["tenant-a"])).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and {r["tenant_id"] for r in rows} == {"tenant-a"}
    lines = httpx.get(live.url + "/v1/export", headers=bearer(tokens["tenant-b"])).text.splitlines()
    assert {json.loads(line)["tenant_id"] for line in lines} <= {"tenant-b"}
