"""Each alert kind goes pending → firing → resolved under an injected clock, with history rows and
signed webhook notifications to a receiver on loopback."""
from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.alerts.conftest import Alerting, Receiver

BACKENDS = pytest.mark.parametrize("backend", ["memory", "duckdb"])


def comm(protocol: str, status: str = "success", duration_ms: int = 20, source: str = "sales-team") -> dict[str, Any]:
    return {"protocol": protocol, "source_id": source, "source_type": "team", "target_id": "github",
            "target_type": "mcp", "operation": "tool_call", "status": status, "duration_ms": duration_ms}


def post(a: Alerting, rows: list[dict[str, Any]], total: int) -> None:
    r = httpx.post(a.url + "/v1/communications", json=rows)
    assert r.status_code == 200, r.text
    a.live.wait_stored(total)


def rule(a: Alerting, **body: Any) -> dict[str, Any]:
    r = httpx.post(a.url + "/v1/alerts/rules", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def history(a: Alerting, **params: str) -> list[dict[str, Any]]:
    return httpx.get(a.url + "/v1/alerts", params=params).json()["alerts"]


def active(a: Alerting) -> list[dict[str, Any]]:
    return httpx.get(a.url + "/v1/alerts/active").json()["alerts"]


@BACKENDS
def test_error_rate_per_protocol(alerting, receiver, backend: str) -> None:
    hook: Receiver = receiver()
    a = alerting(backend, hook)
    r = rule(a, name="mcp errors", kind="error_rate", for_s=60, severity="critical",
             params={"threshold_percent": 5, "window_s": 300, "group_by": "protocol"})
    # mcp: 2 errors in 10 (20 %); a2a: all fine; a timeout is not an `error` (the seed's definition)
    post(a, [comm("mcp", "error")] * 2 + [comm("mcp")] * 8 + [comm("a2a")] * 9 + [comm("a2a", "timeout")], 20)

    made = a.evaluate()
    assert [(m["state"], m["group"], m["value"]) for m in made] == [("pending", "protocol=mcp", 20.0)]
    assert [x["state"] for x in active(a)] == ["pending"]
    a.clock.advance(30)
    assert a.evaluate() == []  # still pending: for_s not reached
    a.clock.advance(31)
    made = a.evaluate()
    assert [(m["state"], m["value"], m["threshold"]) for m in made] == [("firing", 20.0, 5.0)]
    firing = hook.wait_delivered(1)[0]
    assert firing["state"] == "firing" and firing["rule_id"] == r["id"] and firing["kind"] == "error_rate"
    assert firing["group"] == "protocol=mcp" and firing["tenant_id"] == "default" and firing["resolved_at"] is None
    assert firing["started_at"].endswith("Z") and firing["severity"] == "critical"

    post(a, [comm("mcp")] * 40, 60)  # 2 errors in 50: 4 % — back under 5 %
    made = a.evaluate()
    assert [(m["state"], m["value"]) for m in made] == [("resolved", 4.0)]
    resolved = hook.wait_delivered(2)[1]
    assert resolved["state"] == "resolved" and resolved["alert_id"] == firing["alert_id"]
    assert resolved["resolved_at"] and resolved["started_at"] == firing["started_at"]
    rows = history(a, rule_id=r["id"])
    assert [x["state"] for x in rows] == ["resolved", "firing", "pending"]
    assert len({x["alert_id"] for x in rows}) == 1 and active(a) == []
    assert [x["state"] for x in history(a, state="firing")] == ["firing"]


@BACKENDS
def test_latency_avg_and_p95(alerting, receiver, backend: str) -> None:
    hook = receiver()
    a = alerting(backend, hook)
    p95 = rule(a, name="p95", kind="latency", params={"stat": "p95", "threshold_ms": 500, "window_s": 120})
    avg = rule(a, name="avg", kind="latency", params={"stat": "avg", "threshold_ms": 1000, "window_s": 120,
                                                      "group_by": ["protocol", "source"]})
    # 18 fast calls and two of 3 s: the average (309 ms) is fine, the p95 (3 s) is not
    post(a, [comm("n8n", duration_ms=10)] * 18 + [comm("n8n", duration_ms=3000)] * 2, 20)
    made = a.evaluate()
    assert [(m["rule_id"], m["state"], m["group"]) for m in made] == [(p95["id"], "firing", "protocol=n8n")]
    assert made[0]["value"] == 3000.0
    # the slow calls from one source push its average over 1 s
    post(a, [comm("a2a", duration_ms=4000, source="slow-team")] * 3, 23)
    made = a.evaluate()
    assert {(m["rule_id"], m["state"], m["group"]) for m in made} == {
        (p95["id"], "firing", "protocol=a2a"), (avg["id"], "firing", "protocol=a2a,source=slow-team")}
    a.clock.advance(121)  # the window moves past every call: nothing observed, everything resolves
    made = a.evaluate()
    assert sorted((m["rule_id"], m["state"], m["group"]) for m in made) == sorted([
        (p95["id"], "resolved", "protocol=n8n"), (p95["id"], "resolved", "protocol=a2a"),
        (avg["id"], "resolved", "protocol=a2a,source=slow-team")])
    assert [n["state"] for n in hook.wait_delivered(6)].count("resolved") == 3
    assert active(a) == []


def register(a: Alerting, entity_id: str, entity_type: str = "team") -> None:
    r = httpx.post(a.url + "/v1/registry", json={"entity_id": entity_id, "entity_type": entity_type,
                                                 "entity_name": entity_id.title(), "registered_by": "test"})
    assert r.status_code == 201, r.text


def set_state(a: Alerting, entity_id: str, state: str, health: str | None, entity_type: str = "team") -> None:
    body = {"state": state, **({"health_status": health} if health else {})}
    r = httpx.post(f"{a.url}/v1/registry/{entity_type}/{entity_id}/state", json=body)
    assert r.status_code == 200, r.text


@BACKENDS
def test_no_activity(alerting, receiver, backend: str) -> None:
    hook = receiver()
    a = alerting(backend, hook)
    r = rule(a, name="quiet teams", kind="no_activity", for_s=0, params={"duration_s": 3600, "entity_type": "team"})
    register(a, "sales")        # never active: counts from registration
    register(a, "ops")
    register(a, "gh", "mcp_server")  # another type: not this rule's business
    register(a, "gone")
    set_state(a, "gone", "deleted", "none")  # deleted entities are ignored
    assert a.evaluate() == []
    a.clock.advance(1800)
    assert httpx.post(a.url + "/v1/registry/team/ops/activity", json={}).status_code == 200
    a.clock.advance(1801)
    made = a.evaluate()
    assert [(m["state"], m["group"], m["value"], m["labels"]["entity_name"]) for m in made] == [
        ("firing", "team/sales", 3601.0, "Sales")]
    a.clock.advance(1800)
    made = a.evaluate()  # ops is now idle for 3601 s as well
    assert [(m["state"], m["group"]) for m in made] == [("firing", "team/ops")]
    assert httpx.post(a.url + "/v1/registry/team/sales/activity", json={}).status_code == 200
    made = a.evaluate()
    assert [(m["state"], m["group"], m["value"]) for m in made] == [("resolved", "team/sales", 0.0)]
    assert [(n["state"], n["group"]) for n in hook.wait_delivered(3)] == [
        ("firing", "team/sales"), ("firing", "team/ops"), ("resolved", "team/sales")]
    assert [x["group"] for x in active(a)] == ["team/ops"]
    assert [x["state"] for x in history(a, rule_id=r["id"])] == ["resolved", "firing", "firing"]


@BACKENDS
def test_unhealthy_for_a_duration(alerting, receiver, backend: str) -> None:
    hook = receiver()
    a = alerting(backend, hook)
    r = rule(a, name="sick", kind="unhealthy", for_s=60, params={"duration_s": 600})
    register(a, "wf-1", "n8n_workflow")
    register(a, "wf-2", "n8n_workflow")
    set_state(a, "wf-1", "active", "degraded", "n8n_workflow")
    set_state(a, "wf-2", "active", "healthy", "n8n_workflow")
    a.clock.advance(300)
    set_state(a, "wf-1", "active", "unhealthy", "n8n_workflow")  # still unhealthy: the clock does not restart
    assert a.evaluate() == []
    a.clock.advance(301)
    made = a.evaluate()
    assert [(m["state"], m["group"], m["value"]) for m in made] == [("pending", "n8n_workflow/wf-1", 601.0)]
    a.clock.advance(60)
    made = a.evaluate()
    assert [(m["state"], m["value"], m["threshold"], m["unit"]) for m in made] == [("firing", 661.0, 600.0, "s")]
    set_state(a, "wf-1", "active", "healthy", "n8n_workflow")
    made = a.evaluate()
    assert [(m["state"], m["fired"]) for m in made] == [("resolved", True)]
    assert [n["state"] for n in hook.wait_delivered(2)] == ["firing", "resolved"]
    assert [x["state"] for x in history(a, rule_id=r["id"])] == ["resolved", "firing", "pending"]
    # unhealthy again: a new streak, a new alert that clears while pending (no notification)
    set_state(a, "wf-1", "active", "degraded", "n8n_workflow")
    a.clock.advance(600)
    assert [m["state"] for m in a.evaluate()] == ["pending"]
    set_state(a, "wf-1", "active", "healthy", "n8n_workflow")
    assert [(m["state"], m["fired"]) for m in a.evaluate()] == [("resolved", False)]
    assert len(hook.delivered()) == 2
