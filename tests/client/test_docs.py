"""Keep docs/sdk.md true: its Python examples run against a live TEA (with auth), in order, as pasted."""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.auth.conftest import ADMIN_TOKEN, admin_headers, create_token
from tests.client.conftest import events

DOC = (Path(__file__).resolve().parents[2] / "docs" / "sdk.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", DOC, re.S)


def test_the_python_examples_run(secure, tmp_path: Path) -> None:
    server = secure()
    token = create_token(server.url, "acme")
    env = {**os.environ, "TEA_ENDPOINT": server.url, "TEA_TOKEN": token["token"], "TEA_SECRET": token["secret"],
           "TEA_ADMIN_TOKEN": ADMIN_TOKEN, "DO_NOT_TRACK": ""}
    runnable = [block for block in BLOCKS if "(runs until stopped)" not in block and "(a template" not in block]
    assert len(runnable) >= 5
    for block in runnable:
        done = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=120, env=env,
                              cwd=tmp_path)
        assert done.returncode == 0, (block, done.stderr[-2000:])
        assert "Traceback" not in done.stderr and "refused" not in done.stderr, (block, done.stderr[-2000:])
    stored = {e["event_type"] for e in events(server.url, admin_headers(), expect=10, tenant_id="acme")}
    assert {"mcp_request", "order_placed", "job_done", "etl_step", "command_execution", "feature_used",
            "communication"} <= stored, stored


def test_the_mcp_server_example_records_its_calls(secure, tmp_path: Path) -> None:
    server = secure()
    token = create_token(server.url, "acme")
    [example] = [block for block in BLOCKS if block.startswith("# server.py")]
    (tmp_path / "server.py").write_text(example)
    env = {**os.environ, "TEA_ENDPOINT": server.url, "TEA_TOKEN": token["token"], "DO_NOT_TRACK": ""}

    async def call() -> None:
        params = StdioServerParameters(command=sys.executable, args=[str(tmp_path / "server.py")], env=env,
                                       cwd=str(tmp_path))
        async with Client(params) as client:
            assert (await client.call_tool("search", {"query": "tea"})).structured_content == {
                "result": "results for tea"}

    asyncio.run(call())
    [stored] = events(server.url, admin_headers(), expect=1, method="tools/call")
    assert (stored["source"], stored["target"], stored["status"]) == ("web-tools", "search", "ok")
    for command in re.findall(r"^curl -s .*/v1/metrics\?.*$", DOC, re.M):
        url = command.split("'")[1].replace("http://127.0.0.1:3001", server.url)
        answer = httpx.get(url, headers={"authorization": "Bearer " + token["token"]})
        assert answer.status_code == 200, answer.text
        groups = [series["group"] for series in answer.json()["series"]]
        assert {"method": "tools/call"} in groups or groups == [{"target": "search"}], groups
