"""Alert tests: a live TEA with an injected clock, and a real webhook receiver on loopback."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tea.app import TeaApp
from tea.timeutil import now_us
from tests.conftest import LiveServer, make_settings

SECRET = "whsec-test-" + "s" * 24


class Clock:
    """An injected clock: starts at the real time, moves only when a test says so."""

    def __init__(self) -> None:
        self.now = now_us()

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000)


class Receiver:
    """A webhook receiver: answers each POST with the next status of ``statuses`` (then 200)."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.statuses = list(statuses)
        self.delay_s = 0.0  # how long each answer takes
        self.hits: list[tuple[int, dict[str, str], bytes]] = []
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                time.sleep(outer.delay_s)
                with outer.cond:
                    status = outer.statuses.pop(0) if outer.statuses else 200
                    outer.hits.append((status, {k.lower(): v for k, v in self.headers.items()}, body))
                    outer.cond.notify_all()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def delivered(self) -> list[dict[str, Any]]:
        """Bodies answered 2xx, after checking each signature."""
        out = []
        for status, headers, body in list(self.hits):
            assert verify(headers, body), headers
            if status < 300:
                out.append(json.loads(body))
        return out

    def wait_delivered(self, count: int, timeout_s: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while sum(1 for s, _, _ in self.hits if s < 300) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"only {self.hits!r} arrived"
                self.cond.wait(left)
        return self.delivered()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def verify(headers: dict[str, str], body: bytes, secret: str = SECRET) -> bool:
    """What a receiver does: recompute the HMAC over "{timestamp}.{body}" and compare in constant time."""
    timestamp = headers["x-tea-timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("x-tea-signature", "")) and abs(time.time() - int(timestamp)) < 300


class Alerting:
    def __init__(self, live: LiveServer, clock: Clock) -> None:
        self.live = live
        self.clock = clock
        self.url = live.url
        self.app = live.app

    def evaluate(self) -> list[dict[str, Any]]:
        loop = self.app.loop
        return asyncio.run_coroutine_threadsafe(self.app.alerts.evaluate_once(), loop).result(30)


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(*statuses: int) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]
    yield make
    for r in made:
        r.close()


@pytest.fixture
def alerting(tmp_path: Path) -> Iterator[Callable[..., Alerting]]:
    """``alerting(storage_backend, receiver=None, **settings)``: a live TEA whose clock the test moves.
    The evaluator loop is idle (interval 1 h) unless asked: tests call ``evaluate()``."""
    started: list[LiveServer] = []

    def start(storage_backend: str = "memory", hook: Receiver | None = None, **overrides: Any) -> Alerting:
        clock = Clock()
        overrides.setdefault("writer__flush_interval_ms", 20.0)
        overrides.setdefault("shutdown_timeout_s", 5.0)
        overrides.setdefault("alerts__default_rules", False)
        overrides.setdefault("alerts__interval_s", 3600.0)
        overrides.setdefault("alerts__webhook_backoff_s", 0.01)
        if hook is not None:
            overrides.setdefault("alerts__webhook_urls", hook.url)
            overrides.setdefault("alerts__webhook_secret", SECRET)
        settings = make_settings(tmp_path / f"data-{len(started)}", storage_backend=storage_backend, **overrides)
        live = LiveServer(TeaApp(settings, clock=clock)).start()
        started.append(live)
        return Alerting(live, clock)

    yield start
    for live in started:
        if live.thread.is_alive():
            live.stop()
