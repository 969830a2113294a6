"""The MCP middleware: the official `mcp` client calls tools on an MCPServer (stdio and streamable HTTP), the
middleware records every request, and `tea serve` answers /v1/metrics per MCP method and per tool."""
from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import httpx
import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tea_client import TeaClient
from tea_client.mcp import TeaASGIMiddleware, TeaMiddleware, instrument, load_settings
from tests.client.conftest import AsgiServer, events
from tests.client.mcp_server import SLOW_MS, build
from tests.conftest import TeaProcess

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
# what exercise() makes: tools/call add ×3, slow ×2, refuse ×1 (isError), quota ×1 (JSON-RPC error);
# resources/read ×2 (one unknown: JSON-RPC error)
TOOLS = {"add": (3, 0), "slow": (2, 0), "refuse": (1, 1), "quota": (1, 1)}


async def exercise(client: Client) -> None:
    for a in range(3):
        assert (await client.call_tool("add", {"a": a, "b": 1})).structured_content == {"result": a + 1}
    for _ in range(2):
        await client.call_tool("slow", {})
    assert (await client.call_tool("refuse", {})).is_error
    with pytest.raises(MCPError):
        await client.call_tool("quota", {})
    await client.read_resource("notes://today")
    with pytest.raises(MCPError):
        await client.read_resource("notes://never")


def metrics(url: str, **params: str) -> Dict[str, Dict[str, float]]:
    """{group value: {metric: total or extreme over the day}} from GET /v1/metrics."""
    answer = httpx.get(url + "/v1/metrics", params={"granularity": "day", **params}, timeout=30)
    assert answer.status_code == 200, answer.text
    out: Dict[str, Dict[str, float]] = {}
    for series in answer.json()["series"]:
        [group] = series["group"].values()
        points = [p for p in series["points"] if p["requests"]]
        out[group] = {"requests": sum(p["requests"] for p in points), "errors": sum(p["errors"] for p in points),
                      "min_latency_ms": min(p["min_latency_ms"] for p in points),
                      "max_latency_ms": max(p["max_latency_ms"] for p in points)}
    return out


def check_recorded(url: str, source: str) -> List[dict]:
    """The metrics TEA answers about the exercise, per MCP method and per tool; the events themselves."""
    stored = events(url, expect=7, event_type="mcp_request", source=source, method="tools/call")
    stored += events(url, expect=2, event_type="mcp_request", source=source, method="resources/read")
    assert len(stored) == 9, [(e["method"], e["target"]) for e in stored]
    fields = dict(source=source, event_type="mcp_request", metrics="requests,errors,min_latency_ms,max_latency_ms")
    by_method = metrics(url, group_by="method", **fields)
    assert by_method["tools/call"]["requests"] == 7 and by_method["tools/call"]["errors"] == 2
    assert by_method["resources/read"]["requests"] == 2 and by_method["resources/read"]["errors"] == 1
    by_tool = metrics(url, group_by="target", method="tools/call", **fields)
    assert {tool: (m["requests"], m["errors"]) for tool, m in by_tool.items()} == TOOLS
    # durations: the slow tool sleeps SLOW_MS (asyncio may wake up to its clock resolution early); a loaded
    # machine may add to it
    assert SLOW_MS - 1 <= by_tool["slow"]["min_latency_ms"] <= by_tool["slow"]["max_latency_ms"] < SLOW_MS + 3000
    assert by_tool["add"]["max_latency_ms"] < SLOW_MS
    by_target = {e["target"]: e for e in stored}
    quota, refuse = by_target["quota"], by_target["refuse"]
    assert (quota["status"], quota["status_code"], quota["error_type"], quota["error_message"]) == (
        "error", -32042, "jsonrpc_error", "quota exhausted")
    assert refuse["status"] == "error" and refuse["error_type"] == "tool_error" and "not today" in refuse[
        "error_message"]
    missing = by_target["notes://never"]
    assert (missing["status_code"], missing["error_type"]) == (-32602, "invalid_params")
    for e in stored:
        assert e["protocol"] == "mcp" and e["request_size"] > 0 and e["response_size"] > 0
        assert e["attributes"]["mcp.method.name"] == e["method"]
    assert by_target["add"]["attributes"]["gen_ai.tool.name"] == "add"
    return stored


@pytest.fixture(scope="module")
def tea(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeaProcess]:
    """One `tea serve` for the module (each test records under its own server name)."""
    root = tmp_path_factory.mktemp("tea-mcp")
    process = TeaProcess(root / "data", root / "tea.log").start()
    yield process
    process.stop()


def test_stdio_server_instrumented_from_the_environment(tea: TeaProcess) -> None:
    env = {**os.environ, "TEA_ENDPOINT": tea.url, "TEA_AUTH_REQUIRED": "false", "PYTHONPATH": str(ROOT),
           "DO_NOT_TRACK": ""}
    params = StdioServerParameters(command=sys.executable, args=["-m", "tests.client.mcp_server"], env=env,
                                   cwd=str(ROOT))

    async def run() -> None:
        async with Client(params) as client:
            await exercise(client)

    asyncio.run(run())  # the server process exits with its client; its TeaClient flushes at exit
    stored = check_recorded(tea.url, "demo-stdio")
    assert {e["session_id"] for e in stored} == {stored[0]["session_id"]}
    assert stored[0]["session_id"].startswith("stdio-")  # stdio has no session id: one of ours per process
    assert {e["attributes"]["mcp.transport"] for e in stored} == {"stdio"}


def serve_mcp(app: Any) -> AsgiServer:
    return AsgiServer(app).start()


def jwt_for(user: str, tenant: str) -> str:
    claims = {"sub": user, "tenant": tenant, "org": "org-1", "exp": int(time.time()) + 600}
    return jwt.encode(claims, "an-mcp-servers-own-signing-key-32b", algorithm="HS256")


async def call_over_http(url: str, token: Optional[str], mode: str) -> None:
    headers = {"Authorization": "Bearer " + token} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            await exercise(client)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_streamable_http_server_with_jwt_users_and_tenants(tea: TeaProcess, mode: str) -> None:
    server = build("demo-http-" + mode)
    tea_client = TeaClient(tea.url, flush_interval_ms=50, close_at_exit=False)
    middleware = instrument(server, client=tea_client)
    assert isinstance(middleware, TeaMiddleware) and server.middleware[-1] is middleware
    mcp_http = serve_mcp(server.streamable_http_app())
    try:
        asyncio.run(call_over_http(mcp_http.url + "/mcp", jwt_for("alice", "acme"), mode))
    finally:
        mcp_http.stop()
    assert tea_client.flush(30) and tea_client.close(5)
    stored = check_recorded(tea.url, "demo-http-" + mode)
    assert {(e["user_id"], e["tenant_id"], e["organization"]) for e in stored} == {("alice", "acme", "org-1")}
    assert {e["attributes"]["mcp.transport"] for e in stored} == {"http"}
    sessions = {e["session_id"] for e in stored}
    if mode == "legacy":  # the handshake era has Mcp-Session-Id; one session for the whole client
        assert len(sessions) == 1 and None not in sessions
    else:  # the 2026-07-28 protocol is stateless over HTTP: no session
        assert sessions == {None}


@pytest.mark.parametrize("json_response", [True, False], ids=["json", "sse"])
def test_asgi_middleware_around_any_mcp_app(tea: TeaProcess, json_response: bool) -> None:
    tea_client = TeaClient(tea.url, flush_interval_ms=50, close_at_exit=False)
    name = "demo-asgi-%s" % ("json" if json_response else "sse")
    app = TeaASGIMiddleware(build(name).streamable_http_app(json_response=json_response), client=tea_client,
                            server_name=name, paths=["/mcp"])
    mcp_http = serve_mcp(app)
    try:
        asyncio.run(call_over_http(mcp_http.url + "/mcp", jwt_for("bob", "beta"), "legacy"))
    finally:
        mcp_http.stop()
    assert tea_client.flush(30) and tea_client.close(5)
    stored = check_recorded(tea.url, name)
    assert {(e["user_id"], e["tenant_id"]) for e in stored} == {("bob", "beta")}
    assert len({e["session_id"] for e in stored}) == 1 and stored[0]["session_id"]
    assert {e["attributes"]["http.response.status_code"] for e in stored} == {200}


def test_gateway_settings_precedence(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[mcp_gateway]\ntea_enabled = true\ntea_endpoint = "http://tea.internal:3001"\n'
                      'tea_auth_required = false\n')
    s = load_settings(config=str(config), env={})
    assert (s.enabled, s.endpoint, s.auth_required, s.token) == (True, "http://tea.internal:3001", False, None)
    s = load_settings(config=str(config), env={"TEA_ENDPOINT": "http://env:1", "TEA_AUTH_REQUIRED": "true",
                                               "TEA_TOKEN": "tk_x"})
    assert (s.endpoint, s.auth_required, s.token) == ("http://env:1", True, "tk_x")
    s = load_settings(tea_endpoint="http://arg:2", tea_enabled=False, env={"TEA_MCP_CONFIG": str(config)})
    assert (s.enabled, s.endpoint, s.auth_required) == (False, "http://arg:2", False)
    s = load_settings(env={})
    assert (s.enabled, s.endpoint, s.auth_required) == (True, "http://localhost:3001", True)
    assert load_settings(env={"DO_NOT_TRACK": "1"}).enabled is False
    with pytest.raises(ValueError, match="TEA_ENABLED"):
        load_settings(env={"TEA_ENABLED": "maybe"})


def test_instrument_needs_the_middleware_seam() -> None:
    with pytest.raises(TypeError, match="TeaASGIMiddleware"):
        instrument(object(), tea_enabled=False)


def test_auth_required_without_a_token_refuses_to_start(monkeypatch) -> None:
    for name in ("TEA_TOKEN", "TEA_MCP_CONFIG", "TEA_AUTH_REQUIRED", "TEA_ENABLED", "DO_NOT_TRACK"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="TEA_TOKEN"):
        TeaMiddleware(tea_endpoint="http://127.0.0.1:9")
    off = TeaMiddleware(tea_enabled=False)  # off: a pass-through, no client, no thread
    assert off.client is None


def test_low_level_server_over_streamable_http(tea: TeaProcess) -> None:
    import mcp_types
    from mcp.server.lowlevel import Server

    async def list_tools(ctx: Any, params: Any) -> Any:
        return mcp_types.ListToolsResult(tools=[mcp_types.Tool(name="echo", input_schema={"type": "object"})])

    async def call_tool(ctx: Any, params: Any) -> Any:
        text = (params.arguments or {}).get("text", "")
        return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=text or "empty")],
                                        is_error=not text)

    server = Server("demo-lowlevel", on_list_tools=list_tools, on_call_tool=call_tool)
    tea_client = TeaClient(tea.url, flush_interval_ms=50, close_at_exit=False)
    instrument(server, client=tea_client)
    mcp_http = serve_mcp(server.streamable_http_app())

    async def run() -> None:
        async with Client(mcp_http.url + "/mcp", mode="legacy") as client:
            assert not (await client.call_tool("echo", {"text": "hi"})).is_error
            assert (await client.call_tool("echo", {})).is_error

    try:
        asyncio.run(run())
    finally:
        mcp_http.stop()
    assert tea_client.flush(30) and tea_client.close(5)
    stored = events(tea.url, expect=2, source="demo-lowlevel", method="tools/call")
    assert sorted((e["target"], e["status"]) for e in stored) == [("echo", "error"), ("echo", "ok")]
    assert next(e for e in stored if e["status"] == "error")["error_type"] == "tool_error"
