"""The rules API: validation naming the field, defaults, settings rules, deletion, tenant isolation."""
from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tea.errors import ConfigError
from tea.settings import load
from tests.alerts.test_kinds import comm, post
from tests.auth.conftest import ADMIN_TOKEN, bearer, create_token

ADMIN = bearer(ADMIN_TOKEN)


@pytest.mark.parametrize("body, field", [
    ({"kind": "latency", "params": {"threshold_ms": 5}}, "name"),
    ({"name": "x", "kind": "cpu"}, "kind"),
    ({"name": "x", "kind": "error_rate", "params": {}}, "params.threshold_percent"),
    ({"name": "x", "kind": "error_rate", "params": {"threshold_percent": 101}}, "params.threshold_percent"),
    ({"name": "x", "kind": "error_rate", "params": {"threshold_percent": 5, "window_s": 0}}, "params.window_s"),
    ({"name": "x", "kind": "latency", "params": {"threshold_ms": "slow"}}, "params.threshold_ms"),
    ({"name": "x", "kind": "latency", "params": {"threshold_ms": 5, "stat": "p99"}}, "params.stat"),
    ({"name": "x", "kind": "latency", "params": {"threshold_ms": 5, "group_by": "colour"}}, "params.group_by"),
    ({"name": "x", "kind": "no_activity", "params": {"duration_s": 60, "entity": "x"}}, "params.entity"),
    ({"name": "x", "kind": "unhealthy", "params": {"duration_s": 60, "statuses": []}}, "params.statuses"),
    ({"name": "x", "kind": "unhealthy", "params": {"duration_s": 60}, "for_s": -1}, "for_s"),
    ({"name": "x", "kind": "unhealthy", "params": {"duration_s": 60}, "severity": "meh"}, "severity"),
    ({"name": "x", "kind": "unhealthy", "params": {"duration_s": 60}, "id": "has space"}, "id"),
    ({"name": "x", "kind": "unhealthy", "params": {"duration_s": 60}, "colour": "red"}, "colour"),
])
def test_invalid_rules_name_the_field(alerting, body: dict[str, Any], field: str) -> None:
    a = alerting()
    r = httpx.post(a.url + "/v1/alerts/rules", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_rule" and r.json()["details"]["field"] == field, r.text
    assert f"`{field}`" in r.json()["message"]


def test_rule_crud_and_defaults(alerting) -> None:
    settings_rule = {"id": "ops-latency", "name": "ops p95", "kind": "latency",
                     "params": {"stat": "p95", "threshold_ms": 200}}
    a = alerting(alerts__default_rules=True, alerts__rules=(settings_rule,))
    with httpx.Client(base_url=a.url) as c:
        rules = c.get("/v1/alerts/rules").json()["rules"]
        assert [(r["id"], r["source"], r["kind"]) for r in rules] == [
            ("default-error-rate", "default", "error_rate"), ("default-no-activity", "default", "no_activity"),
            ("default-latency", "default", "latency"), ("default-unhealthy", "default", "unhealthy"),
            ("ops-latency", "settings", "latency")]
        by_id = {r["id"]: r for r in rules}
        assert by_id["default-error-rate"]["params"]["threshold_percent"] == 5
        assert by_id["default-error-rate"]["params"]["window_s"] == 300
        assert by_id["default-error-rate"]["params"]["group_by"] == ["protocol"]
        assert by_id["default-no-activity"]["params"]["duration_s"] == 3600
        assert (by_id["default-latency"]["params"]["stat"], by_id["default-latency"]["params"]["threshold_ms"]) == (
            "avg", 1000)
        assert by_id["default-unhealthy"]["params"]["duration_s"] == 600
        for rule_id in ("default-latency", "ops-latency"):
            r = c.delete(f"/v1/alerts/rules/{rule_id}")
            assert r.status_code == 409 and r.json()["error"] == "rule_not_deletable", r.text
        created = c.post("/v1/alerts/rules", json={"id": "my-rule", "name": "mine", "kind": "no_activity",
                                                   "params": {"duration_s": 60}})
        assert created.status_code == 201 and created.json()["source"] == "api"
        assert created.json()["tenant_id"] == "default" and created.json()["for_s"] == 0
        assert c.post("/v1/alerts/rules", json={"id": "my-rule", "name": "again", "kind": "no_activity",
                                                "params": {"duration_s": 60}}).status_code == 409
        assert c.post("/v1/alerts/rules", json={"id": "default-latency", "name": "clash", "kind": "no_activity",
                                                "params": {"duration_s": 60}}).status_code == 409
        assert c.get("/v1/alerts/rules/my-rule").json()["name"] == "mine"
        assert c.get("/v1/alerts/rules/default-unhealthy").json()["source"] == "default"
        assert c.delete("/v1/alerts/rules/my-rule").status_code == 204
        assert c.get("/v1/alerts/rules/my-rule").status_code == 404
        assert c.delete("/v1/alerts/rules/my-rule").status_code == 404
        assert c.get("/v1/alerts", params={"state": "burning"}).status_code == 400
        assert c.get("/v1/alerts", params={"colour": "x"}).status_code == 400


def test_default_error_rate_counts_status_error_only(alerting) -> None:
    a = alerting(alerts__default_rules=True)
    # 1 error + 1 timeout in 20: the seed's errors_5min counts status = 'error' only → 5 %, not above 5 %
    post(a, [comm("mcp", "error"), comm("mcp", "timeout")] + [comm("mcp")] * 18, 20)
    assert [m["rule_id"] for m in a.evaluate()] == []
    post(a, [comm("mcp", "error")], 21)
    made = a.evaluate()
    assert [(m["rule_id"], m["state"], m["value"]) for m in made] == [("default-error-rate", "firing", 9.52)]


def test_deleting_or_disabling_a_rule_resolves_its_alerts(alerting) -> None:
    a = alerting()
    with httpx.Client(base_url=a.url) as c:
        for rule_id in ("one", "two"):
            assert c.post("/v1/alerts/rules", json={"id": rule_id, "name": rule_id, "kind": "error_rate",
                                                    "params": {"threshold_percent": 1}}).status_code == 201
        assert c.post("/v1/alerts/rules", json={"id": "off", "name": "off", "kind": "error_rate", "enabled": False,
                                                "params": {"threshold_percent": 1}}).status_code == 201
        post(a, [comm("mcp", "error")], 1)
        assert sorted((m["rule_id"], m["state"]) for m in a.evaluate()) == [("one", "firing"), ("two", "firing")]
        assert c.delete("/v1/alerts/rules/one").status_code == 204
        made = a.evaluate()
        assert [(m["rule_id"], m["state"], m["reason"]) for m in made] == [
            ("one", "resolved", "the rule was deleted or disabled")]
        assert [x["rule_id"] for x in c.get("/v1/alerts/active").json()["alerts"]] == ["two"]


def test_rules_and_alerts_are_per_tenant(alerting) -> None:
    a = alerting("duckdb", auth_validation=True, admin_token=ADMIN_TOKEN)
    acme, globex = (bearer(create_token(a.url, t)["token"]) for t in ("acme", "globex"))
    rule = {"name": "errors", "kind": "error_rate", "params": {"threshold_percent": 10}}
    with httpx.Client(base_url=a.url) as c:
        assert c.post("/v1/alerts/rules", json=rule).status_code == 401
        mine = c.post("/v1/alerts/rules", json=rule, headers=acme).json()
        assert mine["tenant_id"] == "acme"
        assert c.post("/v1/alerts/rules", json={**rule, "tenant_id": "globex"}, headers=acme).status_code == 403
        assert [r["id"] for r in c.get("/v1/alerts/rules", headers=globex).json()["rules"]] == []
        assert c.get(f"/v1/alerts/rules/{mine['id']}", headers=globex).status_code == 404
        assert c.delete(f"/v1/alerts/rules/{mine['id']}", headers=globex).status_code == 404
        # globex's errors do not trip acme's rule; acme's do
        assert c.post("/v1/communications", json=[comm("mcp", "error")], headers=globex).status_code == 200
        a.live.wait_stored(1)
        assert a.evaluate() == []
        assert c.post("/v1/communications", json=[comm("a2a", "error")], headers=acme).status_code == 200
        a.live.wait_stored(2)
        made = a.evaluate()
        assert [(m["tenant_id"], m["group"]) for m in made] == [("acme", "protocol=a2a")]
        assert len(c.get("/v1/alerts", headers=acme).json()["alerts"]) == 1
        assert c.get("/v1/alerts", headers=globex).json()["alerts"] == []
        assert c.get("/v1/alerts/active", headers=globex).json()["alerts"] == []
        assert c.get("/v1/alerts", params={"tenant_id": "acme"}, headers=globex).status_code == 403
        assert [x["tenant_id"] for x in c.get("/v1/alerts/active", headers=ADMIN).json()["alerts"]] == ["acme"]
        assert c.get("/v1/alerts/rules", headers=ADMIN).json()["rules"][0]["id"] == mine["id"]


def test_settings_rules_and_urls_are_checked_at_start() -> None:
    good = json.dumps([{"id": "r1", "name": "r1", "kind": "no_activity", "params": {"duration_s": 60}}])
    assert load({}, env={"TEA_ALERTS__RULES": good}).alerts.rules[0]["id"] == "r1"
    with pytest.raises(ConfigError, match="invalid TEA_ALERTS__RULES"):
        load({}, env={"TEA_ALERTS__RULES": "{not json"})
    from tea.alerts import build_alerts
    from tea.comms.registry import Registry
    from tea.storage.memory import MemoryStorage

    storage = MemoryStorage()
    for env, fragment in [
        ({"TEA_ALERTS__RULES": json.dumps([{"name": "x", "kind": "latency", "params": {"threshold_ms": 1}}])},
         r"alerts.rules\[0\]: needs an `id`"),
        ({"TEA_ALERTS__RULES": json.dumps([{"id": "x", "name": "x", "kind": "latency", "params": {}}])},
         r"alerts.rules\[0\]: invalid rule: .*`params.threshold_ms`"),
        ({"TEA_ALERTS__WEBHOOK_URLS": "ftp://example.com"}, "invalid alerts.webhook_urls"),
    ]:
        with pytest.raises(ConfigError, match=fragment):
            build_alerts(load({}, env=env), storage, Registry(storage))
    masked = dict((k, v) for k, v, _ in load({}, env={"TEA_ALERTS__WEBHOOK_SECRET": "s3cret"}).effective())
    assert masked["alerts.webhook_secret"] == "********"


def test_acknowledging_an_open_alert(alerting) -> None:
    a = alerting("duckdb", auth_validation=True, admin_token=ADMIN_TOKEN)
    acme, globex = (bearer(create_token(a.url, t)["token"]) for t in ("acme", "globex"))
    rule = {"id": "errs", "name": "errors", "kind": "error_rate", "params": {"threshold_percent": 10}}
    with httpx.Client(base_url=a.url) as c:
        assert c.post("/v1/alerts/rules", json=rule, headers=acme).status_code == 201
        assert c.post("/v1/communications", json=[comm("mcp", "error")], headers=acme).status_code == 200
        a.live.wait_stored(1)
        [made] = a.evaluate()
        alert_id = made["alert_id"]
        path = f"/v1/alerts/{alert_id}/acknowledge"
        assert c.post(path, json={"note": "on it"}).status_code == 401
        assert c.post(path, json={"note": "on it"}, headers=globex).status_code == 404  # not globex's alert
        assert c.post("/v1/alerts/nope/acknowledge", headers=acme).json()["error"] == "alert_not_found"
        assert c.post(path, json={"note": 5}, headers=acme).json()["details"] == {"field": "note"}
        acked = c.post(path, json={"note": "on it"}, headers=acme)
        assert acked.status_code == 200, acked.text
        body = acked.json()
        assert body["state"] == "firing" and body["acknowledgement_note"] == "on it"
        assert body["acknowledged_by"].startswith("tok_") and body["acknowledged_at"].endswith("Z")
        # it stays open, acknowledged, through the next evaluations; its resolution row keeps the marks
        assert a.evaluate() == []
        [open_alert] = c.get("/v1/alerts/active", headers=acme).json()["alerts"]
        assert open_alert["acknowledged_at"] == body["acknowledged_at"]
        a.clock.advance(400)  # the rule's 5-minute window passes: the error is out of it
        [resolved] = a.evaluate()
        assert resolved["state"] == "resolved" and resolved["acknowledgement_note"] == "on it"
        assert c.post(path, headers=acme).status_code == 404  # no longer open
        audit = c.get("/v1/audit", params={"action": "alert_acknowledged"}, headers=ADMIN).json()["entries"]
        assert [(e["tenant_id"], e["details"]["alert_id"]) for e in audit] == [("acme", alert_id)]
