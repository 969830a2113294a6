"""/v1/communications over real HTTP: the seed's rows in and out unchanged, per-item errors, filters,
views through the API, tenant isolation; the activity the records give registry entities."""
from __future__ import annotations

import uuid

import httpx
import pytest

from tests.auth.conftest import bearer, create_token
from tests.conftest import BACKENDS, backend_settings, wait_for

A2A = {"protocol": "a2a", "source_id": "marketing-team", "source_type": "team", "target_id": "sales-team",
       "target_type": "team", "operation": "send_task", "status": "success", "duration_ms": 420,
       "task_description": "Generate proposal", "correlation_id": "c-1", "metadata": {"priority": "high"}}
MCP = {"protocol": "mcp", "source_id": "marketing-team", "source_type": "team", "target_id": "github",
       "target_type": "mcp", "operation": "tool_call", "status": "error", "duration_ms": 1500, "tool_name": "create_issue",
       "tokens_used": 120, "estimated_cost": 0.01235, "error_message": "rate limited", "error_code": "429"}
N8N = {"protocol": "n8n", "source_id": "wf_001", "source_type": "workflow", "target_id": "crm", "target_type": "external",
       "operation": "workflow_step", "status": "timeout", "workflow_id": "wf_001", "workflow_name": "Onboarding",
       "workflow_node": "Create Account", "payload_size_bytes": 2048, "capabilities_required": ["crm.write"],
       "parent_correlation_id": "c-0", "message_type": "request", "tool_category": "crm"}


@pytest.fixture(params=BACKENDS)
def live(request, serve):  # type: ignore[no-untyped-def]
    return serve(**backend_settings(request, request.param), processing__batch_timeout_ms=20, socket=False)


def test_rows_go_in_and_come_back_as_the_seed_wrote_them(live) -> None:
    given_id = str(uuid.uuid4())
    c = live.client
    r = c.post("/v1/communications", json=[{**A2A, "id": given_id, "timestamp": "2026-11-22T09:00:00Z"}, MCP, N8N])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 3 and body["rejected"] == 0 and body["event_ids"][0] == given_id
    rows = wait_for(lambda: c.get("/v1/communications").json()["communications"], lambda rows: len(rows) == 3)
    by_protocol = {row["protocol"]: row for row in rows}
    a2a = by_protocol["a2a"]
    assert a2a["id"] == given_id and a2a["timestamp"] == "2026-11-22T09:00:00Z"
    for sent in (A2A, MCP, N8N):
        row = by_protocol[sent["protocol"]]
        for column, value in sent.items():
            expected = 0.0124 if column == "estimated_cost" else value  # DECIMAL(10,4), half away from zero
            assert row[column] == expected, column
    # every seed column is there, unsent ones as null (metadata as {})
    assert set(a2a) == {"id", "timestamp", "protocol", "source_id", "source_type", "target_id", "target_type",
                        "operation", "duration_ms", "status", "tool_name", "tool_category", "task_description",
                        "capabilities_required", "message_type", "workflow_id", "workflow_name", "workflow_node",
                        "payload_size_bytes", "error_message", "error_code", "correlation_id", "parent_correlation_id",
                        "tokens_used", "estimated_cost", "metadata", "created_at", "tenant_id"}
    assert by_protocol["n8n"]["metadata"] == {} and a2a["tool_name"] is None


def test_the_canonical_event_carries_the_promoted_columns(live) -> None:
    c = live.client
    event_id = c.post("/v1/communications", json=MCP).json()["event_ids"][0]
    event = wait_for(lambda: c.get(f"/v1/events/{event_id}"), lambda r: r.status_code == 200).json()
    assert (event["event_type"], event["source"], event["target"], event["method"], event["protocol"],
            event["status"], event["duration_ms"], event["tokens_used"], event["cost"], event["error_type"],
            event["source_protocol"]) == ("communication", "marketing-team", "github", "tool_call", "mcp", "error",
                                          1500.0, 120, 0.0124, "429", "elf")
    assert event["attributes"]["source_type"] == "team" and event["attributes"]["tool_name"] == "create_issue"


@pytest.mark.parametrize("bad, field", [
    ({**A2A, "protocol": "smtp"}, "protocol"), ({**A2A, "status": "ok"}, "status"),
    ({k: v for k, v in A2A.items() if k != "source_id"}, "source_id"), ({**A2A, "operation": "x" * 101}, "operation"),
    ({**A2A, "duration_ms": -1}, "duration_ms"), ({**A2A, "duration_ms": 1.5}, "duration_ms"),
    ({**A2A, "estimated_cost": 1_000_000}, "estimated_cost"), ({**A2A, "id": "not-a-uuid"}, "id"),
    ({**A2A, "team": "x"}, "team"), ({**A2A, "metadata": [1]}, "metadata"),
])
def test_each_bad_row_is_named_by_index_and_field(serve, bad, field) -> None:
    live = serve(storage_backend="memory", socket=False)
    r = live.client.post("/v1/communications", json=[A2A, bad, MCP])
    assert r.status_code == 207, r.text
    body = r.json()
    assert body["accepted"] == 2 and body["errors"][0]["index"] == 1 and body["errors"][0]["field"] == field
    alone = live.client.post("/v1/communications", json=bad)
    assert alone.status_code == 400 and alone.json()["details"]["errors"][0]["field"] == field


def test_malformed_bodies_get_clear_errors(serve) -> None:
    live = serve(storage_backend="memory", max_batch_events=5, socket=False)
    post = lambda body, ct="application/json": live.client.post("/v1/communications", content=body,  # noqa: E731
                                                                headers={"content-type": ct})
    assert post(b"").json()["error"] == "empty_body"
    assert post(b"{nope").json()["error"] == "invalid_json"
    assert post(b"[]").json()["error"] == "empty_batch"
    assert post(b"42").status_code == 400
    assert post(b"protocol=mcp", "application/x-www-form-urlencoded").status_code == 415
    too_many = live.client.post("/v1/communications", json=[A2A] * 6)
    assert too_many.status_code == 413 and too_many.json()["details"]["max_batch_events"] == 5
    unknown = live.client.post("/v1/communications", json={**A2A, "extra": 1}).json()
    assert "metadata" in unknown["details"]["errors"][0]["message"]


def test_filters_select_rows(live) -> None:
    c = live.client
    c.post("/v1/communications", json=[A2A, MCP, N8N, {**A2A, "source_id": "ops-team", "correlation_id": "c-2"}])
    wait_for(lambda: c.get("/v1/communications").json()["total_count"], lambda n: n == 4)
    ids = lambda **q: sorted(r["source_id"] + "/" + r["protocol"]  # noqa: E731
                             for r in c.get("/v1/communications", params=q).json()["communications"])
    assert ids(protocol="a2a") == ["marketing-team/a2a", "ops-team/a2a"]
    assert ids(status="success") == ["marketing-team/a2a", "ops-team/a2a"]
    assert ids(status="timeout") == ["wf_001/n8n"]
    assert ids(target_id="github") == ["marketing-team/mcp"]
    assert ids(source_id="ops-team", operation="send_task") == ["ops-team/a2a"]
    assert ids(correlation_id="c-1") == ["marketing-team/a2a"]
    page = c.get("/v1/communications", params={"limit": 3}).json()
    assert len(page["communications"]) == 3 and page["has_more"]
    rest = c.get("/v1/communications", params={"limit": 3, "cursor": page["next_cursor"]}).json()
    assert len(rest["communications"]) == 1
    assert c.get("/v1/communications", params={"sauce": "x"}).status_code == 400


def test_views_over_http_and_each_tenant_sees_its_own(secure) -> None:
    live = secure(storage_backend="duckdb")
    acme, globex = (create_token(live.url, t)["token"] for t in ("acme", "globex"))
    with httpx.Client(base_url=live.url) as c:
        assert c.post("/v1/communications", json=[A2A, MCP], headers=bearer(acme)).status_code == 200
        assert c.post("/v1/communications", json=[N8N], headers=bearer(globex)).status_code == 200
        health = c.get("/v1/communications/health", headers=bearer(acme)).json()["rows"]  # (read-your-writes)
        assert [(r["protocol"], r["total_requests_5min"], r["errors_5min"], r["error_rate"]) for r in health] == [
            ("a2a", 1, 0, 0.0), ("mcp", 1, 1, 100.0)]
        other = c.get("/v1/communications/health", headers=bearer(globex)).json()
        assert other["view"] == "system_health_overview" and [r["protocol"] for r in other["rows"]] == ["n8n"]
        pairs = c.get("/v1/communications/top-pairs", headers=bearer(acme)).json()["rows"]
        assert {(p["source"], p["target"]) for p in pairs} == {("marketing-team (team)", "sales-team (team)"),
                                                                ("marketing-team (team)", "github (mcp)")}
        for name in ("patterns", "realtime", "matrix"):
            rows = c.get(f"/v1/communications/{name}", headers=bearer(acme)).json()["rows"]
            assert len(rows) == 2, name
        assert c.get("/v1/communications/matrix", params={"start_time": "2020-01-01T00:00:00Z"},
                     headers=bearer(acme)).json()["rows"][0]["calls"] == 1
        assert c.get("/v1/communications", headers=bearer(globex)).json()["total_count"] == 1
        assert c.get("/v1/communications", params={"tenant_id": "acme"}, headers=bearer(globex)).status_code == 403
        assert c.get("/v1/communications/health").status_code == 401


def test_communications_move_registry_activity(live) -> None:
    c = live.client
    for body in ({"entity_id": "marketing-team", "entity_type": "team", "entity_name": "Marketing"},
                 {"entity_id": "github", "entity_type": "mcp_server", "entity_name": "GitHub"},
                 {"entity_id": "wf_001", "entity_type": "n8n_workflow", "entity_name": "Onboarding"}):
        assert c.post("/v1/registry", json=body).status_code == 201
    c.post("/v1/communications", json=[A2A, MCP, MCP, N8N])
    team = c.get("/v1/registry/team/marketing-team").json()  # (read-your-writes: the processor has passed them)
    assert (team["activity_count"], team["error_count"]) == (3, 2) and team["last_activity"] is not None
    github = c.get("/v1/registry/mcp_server/github").json()
    assert (github["activity_count"], github["error_count"]) == (2, 2)
    workflow = c.get("/v1/registry/n8n_workflow/wf_001").json()
    assert (workflow["activity_count"], workflow["error_count"]) == (1, 1)  # a timeout is a failure


def test_a_huge_array_is_refused_before_its_items_are_built(serve) -> None:
    import tracemalloc

    from tea.comms.records import split_body
    body = b"[" + b"{}," * 7_000_000 + b"{}]"  # 21 MB, 7 M items
    tracemalloc.start()
    items = split_body(body, 10_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(items) == 10_001 and peak < 16 * 2**20  # a list[Raw] of 7 M items would be ~400 MB
    live = serve(storage_backend="memory", max_batch_events=1000, max_body_bytes=32 * 2**20, socket=False)
    for path in ("/v1/communications", "/rest/v1/communication_telemetry"):
        r = live.client.post(path, content=body, headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 413, (path, r.text)
        assert "more than 1000" in r.text
