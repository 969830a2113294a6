"""A small, realistic tenant for the Control Center's tests and screenshots, sent through TEA's own API:
MCP requests over the last day, agent communications, an OpenTelemetry trace with logs, registry
entities and an alert rule that fires. Deterministic (seeded), so the pages show the same things."""
from __future__ import annotations

import random
import time
from typing import Any

import httpx

METHODS = ("tools/call", "tools/list", "resources/read", "prompts/get", "initialize")
TARGETS = ("github", "web-search", "postgres", "slack")
SOURCES = ("gateway-eu", "gateway-us", "agent-runner")
TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPANS = (  # span id, parent, name, service, start offset ms, duration ms, error
    ("eee19b7ec3c1b174", None, "POST /api/orders", "checkout", 0, 120, False),
    ("b7ad6b7169203331", "eee19b7ec3c1b174", "chat gpt-4o", "checkout", 10, 80, False),
    ("c1d2e3f405060708", "b7ad6b7169203331", "tools/call search", "mcp-gateway", 20, 35, False),
    ("a1b2c3d4e5f60718", "eee19b7ec3c1b174", "SELECT orders", "orders-db", 92, 18, True),
)
PAIR = ("planner-agent", "github")  # a pair the agents matrix must show


def events(tenant: str, now_ms: int, n: int = 240, rng: random.Random | None = None) -> list[dict[str, Any]]:
    rng = rng or random.Random(7)
    out = []
    for i in range(n):
        error = rng.random() < 0.06
        tokens = int(rng.lognormvariate(6, 0.7)) if rng.random() < 0.5 else None
        out.append({
            "event_type": "mcp_request", "tenant_id": tenant, "timestamp": now_ms - int(rng.random() * 86_000_000),
            "source": rng.choice(SOURCES), "method": rng.choices(METHODS, (8, 4, 3, 2, 1))[0],
            "target": rng.choice(TARGETS), "protocol": "mcp", "user_id": f"u-{rng.randrange(12)}",
            "status": "error" if error else "ok", "status_code": 500 if error else 200,
            "duration_ms": round(rng.lognormvariate(3.2, 0.7), 2), "tokens_used": tokens,
            "cost": round(tokens * 0.00002, 6) if tokens else None,
            "error_type": "upstream_error" if error else None, "attributes": {"seq": i}})
    return out


def communications(now_ms: int, rng: random.Random | None = None) -> list[dict[str, Any]]:
    rng = rng or random.Random(11)
    pairs = [("planner-agent", "agent", "github", "mcp", "mcp", "tool_call"),
             ("planner-agent", "agent", "research-agent", "agent", "a2a", "send_task"),
             ("research-agent", "agent", "web-search", "mcp", "mcp", "tool_call"),
             ("marketing-team", "team", "sales-team", "team", "a2a", "send_task"),
             ("wf_001", "workflow", "crm", "external", "n8n", "workflow_step")]
    out = []
    for i in range(60):
        source, stype, target, ttype, protocol, op = pairs[i % len(pairs)]
        status = "error" if rng.random() < 0.1 else "success"
        out.append({"protocol": protocol, "source_id": source, "source_type": stype, "target_id": target,
                    "target_type": ttype, "operation": op, "status": status,
                    "timestamp": now_ms - int(rng.random() * 3_000_000), "duration_ms": int(rng.lognormvariate(5, 0.6)),
                    "tokens_used": rng.randrange(50, 900), "estimated_cost": round(rng.random() / 50, 4)})
    return out


def otlp_trace(now_ms: int, tenant: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One trace (its spans as OTLP/HTTP JSON) and two logs of it."""
    def resource(service: str) -> dict[str, Any]:
        return {"attributes": [{"key": "service.name", "value": {"stringValue": service}},
                               {"key": "tenant.id", "value": {"stringValue": tenant}}]}

    start_ns = (now_ms - 600_000) * 1_000_000
    spans = []
    for span_id, parent, name, service, offset, duration, error in SPANS:
        span: dict[str, Any] = {
            "traceId": TRACE_ID, "spanId": span_id, "name": name, "kind": 2,
            "startTimeUnixNano": str(start_ns + offset * 1_000_000),
            "endTimeUnixNano": str(start_ns + (offset + duration) * 1_000_000),
            "attributes": [{"key": "service.component", "value": {"stringValue": service}}],
            "status": {"code": 2, "message": "deadlock detected"} if error else {"code": 1}}
        if parent:
            span["parentSpanId"] = parent
        if name.startswith("chat"):
            span["events"] = [{"name": "first token", "timeUnixNano": str(start_ns + 40_000_000)}]
        spans.append((service, span))
    resource_spans = []
    for service in dict.fromkeys(s for s, _ in spans):
        resource_spans.append({"resource": resource(service),
                               "scopeSpans": [{"scope": {"name": "seed"}, "spans": [sp for s, sp in spans if s == service]}]})
    logs = {"resourceLogs": [{"resource": resource("orders-db"),
                              "scopeLogs": [{"logRecords": [
                                  {"timeUnixNano": str(start_ns + 95_000_000), "severityNumber": 17, "severityText": "ERROR",
                                   "body": {"stringValue": "deadlock detected on orders"}, "traceId": TRACE_ID,
                                   "spanId": "a1b2c3d4e5f60718"},
                                  {"timeUnixNano": str(start_ns + 25_000_000), "severityNumber": 9, "severityText": "INFO",
                                   "body": {"stringValue": "search returned 12 results"}, "traceId": TRACE_ID,
                                   "spanId": "c1d2e3f405060708"}]}]}]}
    return {"resourceSpans": resource_spans}, logs


def registry() -> list[dict[str, Any]]:
    return [
        {"entity_id": "executive-team", "entity_type": "team", "entity_name": "Executive"},
        {"entity_id": "marketing-team", "entity_type": "team", "entity_name": "Marketing",
         "parent_entity_id": "executive-team", "department": "marketing"},
        {"entity_id": "planner-agent", "entity_type": "service", "entity_name": "Planner agent",
         "parent_entity_id": "marketing-team"},
        {"entity_id": "github", "entity_type": "mcp_server", "entity_name": "GitHub MCP"},
    ]


def seed(url: str, tenant: str = "acme", headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Send it all to the TEA at ``url`` (as ``headers`` allow); returns what was sent."""
    now_ms = int(time.time() * 1000)
    sent = {"events": events(tenant, now_ms), "communications": communications(now_ms)}
    spans, logs = otlp_trace(now_ms, tenant)
    with httpx.Client(base_url=url, headers=headers or {}, timeout=30) as c:
        for path, body in (("/v1/events", sent["events"]), ("/v1/communications", sent["communications"])):
            params = {"tenant_id": tenant} if path == "/v1/communications" else None
            r = c.post(path, json=body, params=params)
            assert r.status_code == 200, (path, r.status_code, r.text)
        for path, body in (("/v1/traces", spans), ("/v1/logs", logs)):
            r = c.post(path, json=body)
            assert r.status_code == 200, (path, r.status_code, r.text)
        for entity in registry():
            r = c.post("/v1/registry", json={**entity, "tenant_id": tenant})
            assert r.status_code in (200, 201), r.text
        r = c.post("/v1/registry/team/marketing-team/state", params={"tenant_id": tenant},
                   json={"state": "active", "health_status": "degraded", "reason": "slow responses"})
        assert r.status_code == 200, r.text
        rule = {"id": "ui-errors", "name": "Any MCP error (UI seed)", "kind": "error_rate", "severity": "warning",
                "for_s": 0, "params": {"threshold_percent": 1, "window_s": 86400, "protocol": "mcp",
                                       "group_by": ["target"], "min_events": 1}, "tenant_id": tenant}
        r = c.post("/v1/alerts/rules", json=rule)
        assert r.status_code in (201, 409), r.text
    sent["trace_id"] = TRACE_ID
    return sent

