"""Fixtures for the SDK's tests: TEA served for real (in-process over loopback, or `tea serve`), a scripted
HTTP peer that answers 429/503/400 as told, and a way to read back what TEA stored."""
from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, List, Optional, Tuple

import httpx
import pytest
import uvicorn

from tea_client import TeaClient
from tests.services import free_port

Answer = Tuple[int, Optional[dict], Optional[str]]  # status, JSON body (None: TEA's success shape), Retry-After


class ScriptedPeer:
    """A real HTTP server on 127.0.0.1 that answers each POST with the next scripted (status, body, Retry-After),
    then 200 with TEA's success shape; every request is kept: arrival time, headers, decompressed JSON body."""

    def __init__(self, script: List[Answer]) -> None:
        self.script = list(script)
        self.requests: List[Tuple[float, dict, Any]] = []
        self.lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802  (http.server's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                body = json.loads(raw)
                with peer.lock:
                    peer.requests.append((time.monotonic(), dict(self.headers), body))
                    status, answer, retry_after = peer.script.pop(0) if peer.script else (200, None, None)
                if answer is None:
                    answer = {"accepted": len(body), "rejected": 0, "event_ids": [e.get("event_id") for e in body]}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> List[dict]:
        with self.lock:
            return [event for _, _, body in self.requests for event in body]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def peer() -> Iterator[Callable[[List[Answer]], ScriptedPeer]]:
    started: List[ScriptedPeer] = []

    def make(script: List[Answer]) -> ScriptedPeer:
        started.append(ScriptedPeer(script))
        return started[-1]

    yield make
    for p in started:
        p.close()


@pytest.fixture
def clients() -> Iterator[Callable[..., TeaClient]]:
    """TeaClients closed at the end of the test (fast intervals: tests wait on flush, not on the clock)."""
    made: List[TeaClient] = []

    def make(*args: Any, **kwargs: Any) -> TeaClient:
        kwargs.setdefault("flush_interval_ms", 50)
        kwargs.setdefault("close_at_exit", False)
        made.append(TeaClient(*args, **kwargs))
        return made[-1]

    yield make
    for client in made:
        client.close(0.5)


def events(url: str, headers: Optional[dict] = None, expect: Optional[int] = None, **params: str) -> List[dict]:
    """Every stored event matching ``params``, all pages; with ``expect``, polled (TEA stores acknowledged events
    shortly after the acknowledgement) until that many are there or 30 s passed."""
    deadline = time.monotonic() + 30
    while True:
        found = _events(url, headers, params)
        if expect is None or len(found) >= expect or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _events(url: str, headers: Optional[dict], params: dict) -> List[dict]:
    out: List[dict] = []
    query = {"limit": "10000", **params}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        for _ in range(1000):
            page = http.get("/v1/events", params=query)
            assert page.status_code == 200, page.text
            body = page.json()
            out.extend(body["events"])
            if not body["has_more"]:
                return out
            query["cursor"] = body["next_cursor"]
    raise AssertionError("pagination did not end")


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class AsgiServer:
    """Any ASGI app (an MCP server) served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="on", access_log=False,
                                log_config=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="mcp-server", daemon=True)

    def start(self) -> "AsgiServer":
        self.thread.start()
        if not wait_until(lambda: self.server.started or not self.thread.is_alive(), 30) or not self.server.started:
            raise RuntimeError("the ASGI server did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
