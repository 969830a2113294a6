"""docs/ui.md's live-tail example, run as written (but for the address) against a live server: the
stream it opens shows an event posted after it."""
from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import time
from pathlib import Path

import httpx

PAGE = Path(__file__).parent.parent.parent / "docs" / "ui.md"
ADMIN = "docs-admin-" + "d" * 32


def test_the_curl_example_streams(serve) -> None:
    [command] = [line for block in re.findall(r"```sh\n(.*?)```", PAGE.read_text(), re.S)
                 for line in block.splitlines() if line.startswith("curl -sN")]
    live = serve(storage_backend="memory", auth_validation=True, admin_token=ADMIN)
    token = httpx.post(live.url + "/v1/tokens", json={"tenant_id": "acme"},
                       headers={"authorization": f"Bearer {ADMIN}"}).json()["token"]
    proc = subprocess.Popen(["bash", "-c", "exec " + command.replace("http://127.0.0.1:3001", live.url)],
                            stdout=subprocess.PIPE, bufsize=0, env={**os.environ, "TEA_TOKEN": token})
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        lines: list[bytes] = []
        deadline = time.monotonic() + 20
        posted = False
        while not any(line.startswith(b"data: ") for line in lines):
            assert time.monotonic() < deadline, lines
            if not posted and any(line.startswith(b": open") for line in lines):
                r = httpx.post(live.url + "/v1/events", json=[{"event_type": "other"}, {"event_type": "mcp_request"}],
                               headers={"authorization": f"Bearer {token}"})
                assert r.status_code == 200
                posted = True
            if selector.select(0.2):
                lines.append(proc.stdout.readline())  # type: ignore[union-attr]  (unbuffered: one line, no more)
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
    [data] = [line for line in lines if line.startswith(b"data: ")]
    event = json.loads(data[6:])
    assert event["event_type"] == "mcp_request" and event["tenant_id"] == "acme"
