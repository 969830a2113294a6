"""The audit log: what is recorded, how it is read, and that no secret ever lands in it or in logs."""
from __future__ import annotations

import logging
import time
from datetime import datetime
import uuid

import httpx

from tests.auth.conftest import ADMIN_TOKEN, admin_headers, bearer, create_token
from tests.auth.test_tokens_and_signing import signed_get, signed_post


def audit(url: str, **params: str) -> list[dict]:
    r = httpx.get(url + "/v1/audit", params=params, headers=admin_headers())
    assert r.status_code == 200, r.text
    return r.json()["entries"]


def test_audit_records_failures_admin_actions_and_cross_tenant_reads(secure, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    live = secure(storage_backend="duckdb")
    issued = create_token(live.url, "acme", "pro")
    token, secret = issued["token"], issued["secret"]
    assert httpx.get(live.url + "/v1/events", headers=bearer("tk_" + "0" * 32 + "_nope")).status_code == 401
    assert httpx.get(live.url + "/v1/events").status_code == 401
    httpx.delete(f"{live.url}/v1/tokens/{issued['token_id']}", headers=admin_headers())
    httpx.put(live.url + "/v1/retention/acme", json={"hours": 48}, headers=admin_headers())
    httpx.get(live.url + "/v1/events", params={"tenant_id": "acme"}, headers=admin_headers())
    failures = audit(live.url, action="auth_failure")
    assert len(failures) == 2 and all(not f["success"] and f["remote_addr"] == "127.0.0.1" for f in failures)
    assert {f["reason"] for f in failures} == {"Invalid token", "missing credentials: send Authorization: Bearer <token>"}
    assert [f["details"].get("token_prefix") for f in failures if f["reason"] == "Invalid token"] == ["tk_000000000"]
    [created] = audit(live.url, action="token_created")
    assert created["actor"] == "admin" and created["tenant_id"] == "acme"
    assert created["details"]["token_id"] == issued["token_id"]
    assert audit(live.url, action="token_revoked")[0]["details"]["token_id"] == issued["token_id"]
    [retention] = audit(live.url, action="retention_set")
    assert retention["tenant_id"] == "acme" and retention["details"]["hours"] == "48"
    reads = audit(live.url, action="admin_read")
    assert any(r["tenant_id"] == "acme" and r["details"]["path"] == "/v1/events" for r in reads)
    everything = httpx.get(live.url + "/v1/audit", headers=admin_headers()).text
    logs = caplog.text
    for secret_text in (token, secret, ADMIN_TOKEN):
        assert secret_text not in everything and secret_text not in logs
    assert httpx.get(live.url + "/v1/audit", headers=bearer(create_token(live.url, "x")["token"])).status_code == 403
    scrape = httpx.get(live.url + "/metrics").text
    assert 'tea_auth_attempts_total{method="token",result="failure"} 1.0' in scrape  # the unknown tk_ token
    assert 'tea_auth_attempts_total{method="none",result="failure"} 1.0' in scrape  # no credential at all
    assert 'method="unknown"' not in scrape


def test_signature_failures_are_audited_with_the_token_id_and_counted(secure) -> None:
    live = secure(storage_backend="memory")
    issued = create_token(live.url, "acme", "pro")
    token, secret = issued["token"], issued["secret"]
    body = b'[{"event_type":"audited"}]'
    assert signed_post(live.url, token, secret, body, signature="0" * 64).status_code == 401
    assert signed_post(live.url, token, secret, body, ts=str(int(time.time()) - 3600)).status_code == 403
    nonce = str(uuid.uuid4())
    assert signed_post(live.url, token, secret, body, nonce=nonce).status_code == 200
    assert signed_post(live.url, token, secret, body, nonce=nonce).status_code == 409
    assert signed_get(live.url, "/v1/events", token, secret, signature="f" * 64).status_code == 401
    assert httpx.get(live.url + "/v1/events", headers={**bearer("not-a-token")}).status_code == 401
    failures = audit(live.url, action="auth_failure")
    signed = [f for f in failures if f["details"]["auth_method"] == "hmac"]
    assert sorted((f["details"]["status"], f["reason"]) for f in signed) == [
        ("401", "Invalid HMAC signature"), ("401", "Invalid HMAC signature"),
        ("403", "Timestamp outside acceptable window"), ("409", "Duplicate nonce detected")]
    assert all(f["details"]["token_id"] == issued["token_id"] and f["actor"] == issued["token_id"]
               and f["tenant_id"] == "acme" and f["remote_addr"] == "127.0.0.1" for f in signed)
    [bearer_failure] = [f for f in failures if f["details"]["auth_method"] == "bearer"]
    assert "token_id" not in bearer_failure["details"] and bearer_failure["tenant_id"] is None
    scrape = httpx.get(live.url + "/metrics").text
    assert 'tea_auth_attempts_total{method="hmac",result="failure"} 4.0' in scrape
    assert 'tea_auth_attempts_total{method="hmac",result="success"} 1.0' in scrape
    assert 'tea_auth_attempts_total{method="bearer",result="failure"} 1.0' in scrape
    everything = httpx.get(live.url + "/v1/audit", headers=admin_headers()).text
    assert token not in everything and secret not in everything


ADMIN_READS = ["/v1/events", "/v1/usage", "/v1/stats", "/v1/traces", "/v1/communications",
               "/v1/communications/health", "/v1/registry", "/v1/registry/state", "/v1/registry/audit",
               "/v1/alerts/rules", "/v1/alerts", "/v1/alerts/active", "/v1/analytics/user_activity",
               "/v1/analytics/summary", "/rest/v1/communication_telemetry", "/rest/v1/unified_registry",
               "/rest/v1/system_health_overview", "/stats", "/v1/dlq", "/events"]


def test_every_admin_read_is_audited_once_per_request(secure) -> None:
    live = secure(storage_backend="duckdb")
    token = create_token(live.url, "acme")["token"]
    for path in ADMIN_READS:
        r = httpx.get(live.url + path, headers=admin_headers())
        assert r.status_code == 200, (path, r.text)
        assert httpx.get(live.url + path, headers=bearer(token)).status_code in (200, 403)  # a tenant's: not audited
    r = httpx.get(live.url + "/rest/v1/communication_telemetry", params={"tenant_id": "eq.acme"},
                  headers=admin_headers())
    assert r.status_code == 200
    reads = audit(live.url, action="admin_read", limit="1000")
    per_path: dict[str, int] = {}
    for row in reads:
        per_path[row["details"]["path"]] = per_path.get(row["details"]["path"], 0) + 1
    assert per_path == {**dict.fromkeys(ADMIN_READS, 1), "/rest/v1/communication_telemetry": 2}
    assert all(row["actor"] == "admin" for row in reads)
    assert [row["tenant_id"] for row in reads if row["details"]["path"] == "/rest/v1/communication_telemetry"] \
        == ["acme", None]  # newest first; PostgREST's tenant_id=eq.X names the tenant


def test_audit_filters_and_counters(secure) -> None:
    live = secure(storage_backend="duckdb")
    for tenant in ("acme", "beta", "beta"):
        create_token(live.url, tenant)
    for _ in range(3):
        assert httpx.get(live.url + "/v1/events", headers=bearer("tk_unknown")).status_code == 401
    everything = audit(live.url)
    assert len(everything) == 6 and [e["at"] for e in everything] == sorted((e["at"] for e in everything),
                                                                           reverse=True)
    assert {e["tenant_id"] for e in audit(live.url, tenant_id="beta")} == {"beta"}
    assert len(audit(live.url, tenant_id="beta", action="token_created")) == 2
    assert len(audit(live.url, limit="4")) == 4
    at = [datetime.fromisoformat(e["at"].replace("Z", "+00:00")) for e in everything]
    oldest, newest = everything[-1]["at"], everything[0]["at"]
    assert audit(live.url, end_time=oldest) == []  # end_time is exclusive
    assert audit(live.url, start_time=newest) == [e for e, t in zip(everything, at) if t == at[0]]
    assert audit(live.url, start_time=oldest, end_time=newest) == [e for e, t in zip(everything, at)
                                                                   if at[-1] <= t < at[0]]
    assert audit(live.url, start_time="2000-01-01T00:00:00Z", end_time="2000-01-02T00:00:00Z") == []
    assert len(audit(live.url, start_time="2000-01-01T00:00:00Z")) == 6
    for bad in ({"limit": "0"}, {"limit": "10001"}, {"start_time": "yesterday"}, {"who": "x"}):
        r = httpx.get(live.url + "/v1/audit", params=bad, headers=admin_headers())
        assert r.status_code == 400, bad
    scrape = httpx.get(live.url + "/metrics").text
    assert 'tea_audit_records_total{action="token_created"} 3.0' in scrape
    assert 'tea_audit_records_total{action="auth_failure"} 3.0' in scrape
    assert "tea_audit_dropped_total" in scrape and 'tea_audit_dropped_total{reason=' not in scrape  # none dropped
    assert "tea_audit_purged_total 0.0" in scrape


def test_dev_mode_is_explicit_and_loud(serve, caplog) -> None:
    caplog.set_level(logging.WARNING)
    live = serve(storage_backend="memory", auth_validation=False)
    assert httpx.post(live.url + "/v1/events", json={"event_type": "x", "tenant_id": "chosen"}).status_code == 200
    assert httpx.get(live.url + "/health").json()["auth"] == "disabled"
    assert "DEVELOPMENT MODE" in caplog.text


def test_dev_mode_repeats_its_warning(settings_factory, caplog) -> None:
    from tea.app import TeaApp
    from tests.conftest import LiveServer
    caplog.set_level(logging.WARNING, logger="tea.app")
    app = TeaApp(settings_factory(storage_backend="memory", auth_validation=False))
    app.dev_warning_every_s = 0.05  # hourly in production
    live = LiveServer(app).start()
    try:
        time.sleep(0.5)
        warnings = [r for r in caplog.records if "DEVELOPMENT MODE" in r.getMessage()]
        assert len(warnings) >= 4 and all(r.levelno == logging.WARNING for r in warnings)
    finally:
        live.stop()
