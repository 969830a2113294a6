"""Tenant isolation: for random data of tenants A and B, no read endpoint answers A's token with
anything of B; explicit cross-tenant reads are 403; writes land in the caller's tenant only."""
from __future__ import annotations

import csv
import io
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.auth.conftest import admin_headers, bearer, create_token

T0_MS = 1_767_225_600_000


@pytest.fixture(scope="module")
def world(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One server (DuckDB, auth on) with tokens for tenants a and b; data is added per example."""
    from tea.app import TeaApp
    from tests.auth.conftest import ADMIN_TOKEN
    from tests.conftest import LiveServer, make_settings
    settings = make_settings(tmp_path_factory.mktemp("tenancy"), auth_validation=True, admin_token=ADMIN_TOKEN,
                             writer__flush_interval_ms=10.0)
    live = LiveServer(TeaApp(settings)).start()
    tokens = {t: create_token(live.url, t, "enterprise")["token"] for t in ("tenant-a", "tenant-b")}
    yield live, tokens
    live.stop()


def reads(tenant: str) -> list[tuple[str, dict]]:
    window = {"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z"}
    return [("/v1/events", {"limit": "10000"}), ("/v1/metrics", {**window, "group_by": "tenant_id,source"}),
            ("/v1/stats", {}), ("/v1/usage", {**window, "period": "day"}), ("/v1/export", {}),
            ("/v1/export", {"format": "csv"}), ("/events", {"limit": "10000"}),
            ("/metrics", {"granularity": "hour", **window}), ("/v1/stats/src-b", {}), ("/v1/stats/src-a", {})]


def leaked(text: str, marker: str) -> bool:
    return marker in text


events_strategy = st.lists(st.tuples(st.sampled_from(["tenant-a", "tenant-b"]), st.integers(0, 86_399_000),
                                     st.sampled_from(["m1", "m2"])), min_size=1, max_size=40)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=events_strategy)
def test_no_read_endpoint_leaks_another_tenant(world, rows: list[tuple[str, int, str]]) -> None:
    live, tokens = world
    for tenant, offset, method in rows:
        marker = "src-a" if tenant == "tenant-a" else "src-b"
        event = {"event_type": "iso", "timestamp": T0_MS + offset, "method": method, "source": marker,
                 "user_id": f"user-of-{tenant}", "attributes": {"owner": tenant}}
        r = httpx.post(live.url + "/v1/events", json=event, headers=bearer(tokens[tenant]))
        assert r.status_code == 200
    live.wait_stored(live.app.writer.consumed_events + live.app.writer.available())
    for path, params in reads("tenant-a"):
        r = httpx.get(live.url + path, params=params, headers=bearer(tokens["tenant-a"]))
        assert r.status_code in (200, 404), (path, r.status_code, r.text)
        if path.endswith("src-b"):  # B's source, asked by name: A must not learn that it exists
            assert r.status_code == 404 and "total_events" not in r.text
            continue
        for needle in ("tenant-b", "src-b", "user-of-tenant-b"):
            assert not leaked(r.text, needle), (path, needle)
    by_id = httpx.get(live.url + "/v1/events", params={"limit": "1"}, headers=bearer(tokens["tenant-b"])).json()
    if by_id["events"]:
        other = by_id["events"][0]["event_id"]
        assert httpx.get(f"{live.url}/v1/events/{other}", headers=bearer(tokens["tenant-a"])).status_code == 404


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
