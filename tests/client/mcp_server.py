"""The MCP server of the middleware tests (the official SDK's MCPServer, FastMCP's name before mcp 2).

``python -m tests.client.mcp_server`` runs it over stdio, instrumented from the environment (TEA_ENDPOINT,
TEA_AUTH_REQUIRED=false), as a deployed server would be."""
from __future__ import annotations

import asyncio

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError

SLOW_MS = 120


def build(name: str) -> MCPServer:
    server = MCPServer(name)

    @server.tool()
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool()
    async def slow() -> str:
        await asyncio.sleep(SLOW_MS / 1000)
        return "late"

    @server.tool()
    def refuse() -> str:
        raise ToolError("not today")  # a tool result with isError

    @server.tool()
    def quota() -> str:
        raise MCPError(code=-32042, message="quota exhausted")  # a JSON-RPC error

    @server.resource("notes://today")
    def today() -> str:
        return "nothing planned"

    return server


if __name__ == "__main__":
    from tea_client.mcp import instrument

    server = build("demo-stdio")
    instrument(server, flush_interval_ms=50)
    server.run("stdio")
