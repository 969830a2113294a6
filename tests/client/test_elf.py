"""The ElfAutomations drop-in: the seed's calls, unchanged, land in TEA's communications as the seed's rows."""
from __future__ import annotations

import asyncio
import inspect

import httpx

from tea_client import TeaClient
from tea_client.elf import TelemetryClient, TelemetryTimer
from tests.client.conftest import wait_until


def rows(url: str, expect: int) -> list:
    def fetch() -> list:
        return httpx.get(url + "/v1/communications", params={"limit": "1000"}).json()["communications"]
    wait_until(lambda: len(fetch()) >= expect)
    return fetch()


def test_the_seeds_calls_become_its_rows(serve) -> None:
    server = serve()
    telemetry_client = TelemetryClient(server.url, flush_interval_ms=50, close_at_exit=False)

    async def agent() -> None:  # exactly as the seed's callers write it
        start = telemetry_client.start_timer()
        await telemetry_client.record_a2a(source_team="marketing-team", target_team="sales-team",
                                          task_description="Generate proposal " * 50, status="success",
                                          duration_ms=telemetry_client.calculate_duration_ms(start),
                                          correlation_id="c-1")
        await telemetry_client.record_mcp(source_id="marketing-team", mcp_name="github", tool_name="create_issue",
                                          status="error", duration_ms=1500, tokens_used=120,
                                          error_message="rate limited", metadata={"attempt": 2})

    asyncio.run(agent())
    # and from synchronous code, without await
    result = telemetry_client.record_n8n(workflow_id="wf_001", workflow_name="Customer Onboarding",
                                         node_name="Create Account", target_service="crm", duration_ms=80.4)
    assert inspect.isawaitable(result) and asyncio.iscoroutine(result)
    asyncio.run(telemetry_client.record_a2a("x", "y", operation="discover_teams"))  # asyncio.run takes it too
    assert telemetry_client.flush(30)
    by_protocol = {r["protocol"]: r for r in rows(server.url, 4) if r["operation"] != "discover_teams"}

    a2a = by_protocol["a2a"]
    assert {k: a2a[k] for k in ("source_id", "source_type", "target_id", "target_type", "operation", "status",
                                "correlation_id")} == {
        "source_id": "marketing-team", "source_type": "team", "target_id": "sales-team", "target_type": "team",
        "operation": "send_task", "status": "success", "correlation_id": "c-1"}
    assert len(a2a["task_description"]) == 500 and a2a["metadata"] == {}  # the seed's truncation and default

    mcp = by_protocol["mcp"]
    assert {k: mcp[k] for k in ("source_type", "target_id", "target_type", "operation", "tool_name", "status",
                                "duration_ms", "tokens_used", "error_message", "metadata")} == {
        "source_type": "team", "target_id": "github", "target_type": "mcp", "operation": "tool_call",
        "tool_name": "create_issue", "status": "error", "duration_ms": 1500, "tokens_used": 120,
        "error_message": "rate limited", "metadata": {"attempt": 2}}
    assert len(mcp["correlation_id"]) == 36  # a fresh uuid4, as the seed makes

    n8n = by_protocol["n8n"]
    assert {k: n8n[k] for k in ("source_id", "source_type", "target_id", "target_type", "operation", "workflow_id",
                                "workflow_name", "workflow_node", "duration_ms")} == {
        "source_id": "wf_001", "source_type": "workflow", "target_id": "crm", "target_type": "external",
        "operation": "workflow_step", "workflow_id": "wf_001", "workflow_name": "Customer Onboarding",
        "workflow_node": "Create Account", "duration_ms": 80}
    # the seed's views see them
    health = httpx.get(server.url + "/v1/communications/health").json()["rows"]
    assert {row["protocol"] for row in health} == {"a2a", "mcp", "n8n"}


def test_without_an_endpoint_it_is_off_like_the_seed_without_credentials(monkeypatch) -> None:
    monkeypatch.delenv("TEA_ENDPOINT", raising=False)
    quiet = TelemetryClient(close_at_exit=False)
    asyncio.run(quiet.record_mcp(source_id="a", mcp_name="b"))
    assert quiet.client.enabled is False and quiet.stats()["recorded"] == 0


def test_shares_a_client_and_times_with_the_seeds_timer(peer) -> None:
    tea = peer([])
    shared = TeaClient(tea.url, flush_interval_ms=50, close_at_exit=False)
    elf = TelemetryClient(client=shared)
    with TelemetryTimer(elf) as timer:
        pass
    assert timer.duration_ms >= 0 and elf.client is shared
    elf.record_a2a("a", "b", duration_ms=timer.duration_ms)
    assert shared.flush(10) and shared.close(1)
    [(_, headers, body)] = tea.requests
    assert body[0]["protocol"] == "a2a" and len(body[0]["id"]) == 36 and body[0]["timestamp"].endswith("Z")
