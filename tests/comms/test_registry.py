"""The unified registry over real HTTP: the seed functions' effects, transitions and audit rows,
system_entity_state, the hierarchy, registration gaps, the n8n webhook, persistence across a restart."""
from __future__ import annotations

import time

import httpx
import pytest

from tests.auth.conftest import bearer, create_token
from tests.conftest import BACKENDS, backend_settings


def entity(entity_id: str, entity_type: str = "team", **extra) -> dict:  # type: ignore[no-untyped-def]
    return {"entity_id": entity_id, "entity_type": entity_type, "entity_name": extra.pop("name", entity_id.title()),
            **extra}


@pytest.fixture(params=BACKENDS)
def c(request, serve):  # type: ignore[no-untyped-def]
    return serve(**backend_settings(request, request.param), processing__batch_timeout_ms=20, socket=False).client


def test_register_upserts_and_audits(c) -> None:
    first = c.post("/v1/registry", json=entity("svc", "service", capabilities=["a"], endpoint_url="http://svc:8080",
                                               metadata={"v": 1}, registered_by="factory", department="ops"))
    assert first.status_code == 201
    created = first.json()
    assert (created["current_state"], created["health_status"], created["activity_count"]) == ("registered", "unknown", 0)
    again = c.post("/v1/registry", json=entity("svc", "service", name="Service v2", metadata={"v": 2}))
    assert again.status_code == 200
    updated = again.json()
    assert updated["id"] == created["id"] and updated["entity_name"] == "Service v2"
    assert updated["metadata"] == {"v": 2}  # overwritten
    assert updated["capabilities"] == ["a"] and updated["endpoint_url"] == "http://svc:8080"  # COALESCE: kept
    assert updated["registered_at"] == created["registered_at"] and updated["last_updated"] >= created["last_updated"]
    audit = c.get("/v1/registry/audit", params={"entity_id": "svc"}).json()["rows"]
    assert [(a["action"], a["action_by"], a["details"]) for a in audit] == [("updated", "api", {"v": 2}),
                                                                           ("registered", "factory", {"v": 1})]
    assert c.get("/v1/registry/audit", params={"action": "registered"}).json()["rows"][0]["entity_id"] == "svc"
    # same id, another type: another entity
    assert c.post("/v1/registry", json=entity("svc", "team")).status_code == 201
    assert len(c.get("/v1/registry", params={"entity_type": "service"}).json()["entities"]) == 1


def test_state_changes_write_transitions_and_keep_health(c) -> None:
    c.post("/v1/registry", json=entity("alpha"))
    r = c.post("/v1/registry/team/alpha/state", json={"state": "active", "health_status": "healthy", "reason": "up"})
    assert r.status_code == 200
    checked = r.json()["last_health_check"]
    assert checked is not None and r.json()["health_status"] == "healthy"
    r = c.post("/v1/registry/team/alpha/state", json={"state": "paused", "updated_by": "ops"})
    assert r.json()["health_status"] == "healthy" and r.json()["last_health_check"] == checked  # kept
    rows = c.get("/v1/registry/transitions", params={"entity_id": "alpha"}).json()["rows"]
    assert [(t["from_state"], t["to_state"], t["health_status"], t["transitioned_by"], t["transition_reason"])
            for t in rows] == [("active", "paused", "healthy", "ops", None),
                               ("registered", "active", "healthy", "system", "up")]
    assert c.post("/v1/registry/team/ghost/state", json={"state": "active"}).status_code == 404
    assert c.post("/v1/registry/team/alpha/state", json={}).json()["details"]["field"] == "state"
    assert c.post("/v1/registry/robot/alpha/state", json={"state": "x"}).status_code == 400


def test_activity_delete_and_errors(c) -> None:
    c.post("/v1/registry", json=entity("beta"))
    c.post("/v1/registry/team/beta/activity", json={})
    after = c.post("/v1/registry/team/beta/activity", json={"is_error": True}).json()
    assert (after["activity_count"], after["error_count"]) == (2, 1) and after["last_activity"] is not None
    assert c.post("/v1/registry/team/nobody/activity").status_code == 404
    assert c.delete("/v1/registry/team/beta").status_code == 204
    assert c.get("/v1/registry/team/beta").status_code == 404
    assert c.delete("/v1/registry/team/beta").status_code == 404
    assert c.get("/v1/registry/audit", params={"entity_id": "beta"}).json()["rows"][0]["action"] == "deregistered"
    for bad, field in (({"entity_type": "team", "entity_name": "x"}, "entity_id"),
                       ({"entity_id": "x", "entity_type": "robot", "entity_name": "x"}, "entity_type"),
                       ({"entity_id": "x", "entity_type": "team"}, "entity_name"),
                       ({**entity("x"), "capabilities": "all"}, "capabilities"),
                       ({**entity("x"), "colour": "red"}, "colour"),
                       ({**entity("x"), "endpoint_url": "u" * 501}, "endpoint_url")):
        r = c.post("/v1/registry", json=bad)
        assert r.status_code == 400 and r.json()["details"]["field"] == field, (bad, r.text)
    assert c.post("/v1/registry", content=b"[1]", headers={"content-type": "application/json"}).status_code == 400


def test_entity_state_view(c) -> None:
    for name, state, health in (("a", "active", "healthy"), ("b", "active", "healthy"), ("c", "active", "degraded"),
                                ("d", "registered", None)):
        c.post("/v1/registry", json=entity(name))
        if health:
            c.post(f"/v1/registry/team/{name}/state", json={"state": state, "health_status": health})
    c.post("/v1/registry/team/a/activity")
    c.post("/v1/registry", json=entity("m", "mcp_server"))
    rows = c.get("/v1/registry/state").json()["rows"]
    assert [(r["entity_type"], r["current_state"], r["health_status"], r["count"], r["active_last_5min"],
             r["healthy_count"], r["unhealthy_count"]) for r in rows] == [
        ("mcp_server", "registered", "unknown", 1, 0, 0, 0),
        ("team", "active", "degraded", 1, 0, 0, 1),
        ("team", "active", "healthy", 2, 1, 2, 0),
        ("team", "registered", "unknown", 1, 0, 0, 0)]


def test_hierarchy_levels_and_paths(c) -> None:
    c.post("/v1/registry", json=entity("exec", department="board"))
    c.post("/v1/registry", json=entity("marketing", parent_entity_id="exec"))
    c.post("/v1/registry", json=entity("content", parent_entity_id="marketing"))
    c.post("/v1/registry", json=entity("sales", parent_entity_id="exec"))
    c.post("/v1/registry", json=entity("orphan", parent_entity_id="nobody"))  # its parent is not registered
    rows = c.get("/v1/registry/hierarchy").json()["rows"]
    assert [(r["entity_id"], r["level"], r["path"]) for r in rows] == [
        ("exec", 0, "exec"), ("marketing", 1, "exec > marketing"), ("content", 2, "exec > marketing > content"),
        ("sales", 1, "exec > sales")]
    assert rows[0]["department"] == "board" and rows[1]["parent_entity_id"] == "exec"


def test_gaps_list_missing_and_stale_entities(c) -> None:
    c.post("/v1/registry", json=entity("known-team"))
    c.post("/v1/registry", json=entity("github", "mcp_server"))
    c.post("/v1/registry", json=entity("idle-team"))
    calls = [{"protocol": "a2a", "source_id": "known-team", "source_type": "team", "target_id": "ghost-team",
              "target_type": "team", "operation": "send_task", "status": "success"},
             {"protocol": "mcp", "source_id": "ghost-team", "source_type": "team", "target_id": "slack",
              "target_type": "mcp", "operation": "tool_call", "status": "success"},
             {"protocol": "mcp", "source_id": "known-team", "source_type": "team", "target_id": "github",
              "target_type": "mcp", "operation": "tool_call", "status": "success"}]
    assert c.post("/v1/communications", json=calls).status_code == 200
    deadline = time.monotonic() + 15  # (each entity's activity is its own storage write)
    while (c.get("/v1/registry/team/known-team").json()["activity_count"] < 2
           or c.get("/v1/registry/mcp_server/github").json()["activity_count"] < 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    gaps = c.get("/v1/registry/gaps").json()["rows"]
    assert [(g["gap_type"], g["entity_identifier"]) for g in gaps] == [
        ("missing_team", "ghost-team"), ("missing_mcp", "slack"), ("stale_registration", "idle-team")]
    assert gaps[0]["details"]["communication_count"] == 2 and gaps[2]["details"]["last_activity"] is None


def test_n8n_webhook_has_the_seed_effects(c) -> None:
    workflow = {"id": "wf_001", "name": "Customer Onboarding", "tags": [{"name": "customer"}],
                "nodes": [{"type": "n8n-nodes-base.webhook", "name": "Start"},
                          {"type": "n8n-nodes-base.httpRequest", "name": "Create"},
                          {"type": "n8n-nodes-base.webhook", "name": "Again"}]}
    r = c.post("/v1/webhooks/n8n", json={"event": "workflow.created", "workflow": workflow})
    assert r.status_code == 200 and r.json()["status"] == "success" and r.json()["action"] == "registered"
    e = c.get("/v1/registry/n8n_workflow/wf_001").json()
    assert e["entity_name"] == "Customer Onboarding" and e["registration_source"] == "n8n"
    assert e["deployment_type"] == "n8n" and e["capabilities"] == ["n8n-nodes-base.httpRequest", "n8n-nodes-base.webhook"]
    assert e["tags"] == ["customer"]
    r = c.post("/v1/webhooks/n8n", json={"event": "workflow.updated", "workflow": {**workflow, "name": "Onboarding 2"}})
    assert r.json()["action"] == "updated" and c.get("/v1/registry/n8n_workflow/wf_001").json()["entity_name"] == "Onboarding 2"
    r = c.post("/v1/webhooks/n8n", json={"event": "workflow.executed", "workflow": {"id": "wf_001"},
                                         "execution": {"status": "error", "error": "node Create failed"}})
    assert r.json() == {"status": "success", "action": "execution_failed", "workflow_id": "wf_001"}
    e = c.get("/v1/registry/n8n_workflow/wf_001").json()
    assert e["health_status"] == "degraded" and (e["activity_count"], e["error_count"]) == (1, 1)
    c.post("/v1/webhooks/n8n", json={"event": "workflow.executed", "workflow": {"id": "wf_001"},
                                     "execution": {"status": "success"}})
    assert c.get("/v1/registry/n8n_workflow/wf_001").json()["health_status"] == "healthy"
    r = c.post("/v1/webhooks/n8n", json={"event": "workflow.deleted", "workflow": {"id": "wf_001"}})
    assert r.json()["action"] == "deleted"
    e = c.get("/v1/registry/n8n_workflow/wf_001").json()
    assert (e["current_state"], e["health_status"]) == ("deleted", "none")
    assert c.post("/v1/webhooks/n8n", json={"event": "workflow.deleted", "workflow": {"id": "nope"}}).status_code == 404
    bad = c.post("/v1/webhooks/n8n", json={"event": "workflow.renamed", "workflow": {"id": "wf_001"}})
    assert bad.status_code == 400 and bad.json()["status"] == "error"
    assert c.post("/v1/webhooks/n8n", json={"event": "workflow.created"}).status_code == 400


def test_registry_is_per_tenant(secure) -> None:
    live = secure(storage_backend="memory")
    acme, globex = (create_token(live.url, t)["token"] for t in ("acme", "globex"))
    with httpx.Client(base_url=live.url) as c:
        assert c.post("/v1/registry", json=entity("shared-name"), headers=bearer(acme)).status_code == 201
        assert c.post("/v1/registry", json=entity("shared-name"), headers=bearer(globex)).status_code == 201
        assert c.post("/v1/registry/team/shared-name/state", json={"state": "active"},
                      headers=bearer(acme)).status_code == 200
        assert c.get("/v1/registry/team/shared-name", headers=bearer(globex)).json()["current_state"] == "registered"
        assert [e["tenant_id"] for e in c.get("/v1/registry", headers=bearer(acme)).json()["entities"]] == ["acme"]
        assert c.post("/v1/registry", json={**entity("x"), "tenant_id": "globex"}, headers=bearer(acme)).status_code == 403
        assert c.get("/v1/registry/transitions", headers=bearer(globex)).json()["rows"] == []
        assert c.post("/v1/registry", json=entity("x")).status_code == 401


def test_the_registry_survives_a_restart(serve) -> None:
    live = serve(storage_backend="duckdb", socket=False)
    live.client.post("/v1/registry", json=entity("durable"))
    live.client.post("/v1/registry/team/durable/state", json={"state": "active", "health_status": "healthy"})
    live.stop()
    again = serve(storage_backend="duckdb", socket=False)
    e = again.client.get("/v1/registry/team/durable").json()
    assert (e["current_state"], e["health_status"]) == ("active", "healthy")
    assert len(again.client.get("/v1/registry/transitions").json()["rows"]) == 1
