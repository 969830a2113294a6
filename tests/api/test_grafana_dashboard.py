"""The shipped Grafana dashboard (examples/grafana/tea-overview.json) uses only what TEA answers: every query
of every panel runs as Grafana sends it (a POST form range query, and an instant query) over MCP and GenAI
traffic, and answers series; its totals agree with /v1/metrics."""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

DASHBOARD = Path(__file__).parent.parent.parent / "examples" / "grafana" / "tea-overview.json"


def queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in board["panels"] for target in panel.get("targets", [])]


def traffic(now_ms: int) -> list[dict]:
    rng = random.Random(5)
    events = []
    for i in range(600):
        tool = rng.choice(["search", "fetch", "summarize"])
        model = rng.choice(["gpt-4o", "claude-sonnet-4"])
        events.append({"event_type": "mcp_request", "tenant_id": rng.choice(["acme", "beta"]),
                       "timestamp": now_ms - rng.randrange(50 * 60_000), "method": rng.choice(["tools/call", "tools/list"]),
                       "status": rng.choice(["ok", "ok", "error"]), "duration_ms": rng.lognormvariate(3, 1),
                       "attributes": {"gen_ai.tool.name": tool, "gen_ai.request.model": model,
                                      "gen_ai.usage.input_tokens": rng.randrange(100, 2000),
                                      "gen_ai.usage.output_tokens": rng.randrange(10, 500)}})
    return events


def test_the_dashboard_json_is_a_grafana_dashboard() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["__inputs"][0]["pluginId"] == "prometheus" and board["uid"] == "tea-overview"
    titles = {p["title"] for p in board["panels"]}
    assert {"Requests/s by method", "Error rate", "p95 latency by method", "Tokens/s by model",
            "Cost per hour by model", "Tool calls/s by tool"} <= titles
    assert len(queries()) >= 12


def test_every_dashboard_query_answers(serve) -> None:
    live = serve(storage_backend="duckdb", socket=False)
    now_ms = int(time.time() * 1000)
    client = live.client
    events = traffic(now_ms)
    assert client.post("/v1/events", json=events).status_code == 200
    live.wait_stored(len(events))
    end = now_ms // 1000 + 60
    for title, expr in queries():
        ranged = client.post("/api/v1/query_range", data={"query": expr, "start": end - 3600, "end": end,
                                                          "step": "60"})
        assert ranged.status_code == 200 and ranged.json()["status"] == "success", (title, expr, ranged.text)
        result = ranged.json()["data"]["result"]
        assert result and all(s["values"] for s in result), (title, expr)
        instant = client.get("/api/v1/query", params={"query": expr, "time": end})
        assert instant.status_code == 200 and instant.json()["data"]["result"], (title, expr, instant.text)
    # the hour's tool calls, as the dashboard's panel adds them up, against /v1/metrics
    calls = client.get("/api/v1/query", params={
        "query": 'sum by (tool) (increase(tea_requests_total{method="tools/call"}[1h]))', "time": end}).json()
    v1 = client.get("/v1/metrics", params={"method": "tools/call", "group_by": "tool", "metrics": "requests",
                                            "granularity": "hour", "start_time": (end - 3600) * 1000,
                                            "end_time": end * 1000}).json()
    want = {s["group"]["tool"]: sum(p["requests"] for p in s["points"]) for s in v1["series"]}
    assert {s["metric"]["tool"]: float(s["value"][1]) for s in calls["data"]["result"]} == pytest.approx(want)
