"""Fixtures for auth tests: servers with auth on, an admin token, tokens per tenant, a real Redis."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any, Callable, Iterator

import httpx
import pytest

from tests.conftest import LiveServer, free_port

ADMIN_TOKEN = "admin-" + "x" * 40


def admin_headers() -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN_TOKEN}"}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
def secure(serve) -> Callable[..., LiveServer]:
    """A live server with authentication on and the bootstrap admin token."""
    def start(**overrides: Any) -> LiveServer:
        overrides.setdefault("auth_validation", True)
        overrides.setdefault("admin_token", ADMIN_TOKEN)
        return serve(**overrides)
    return start


def create_token(url: str, tenant: str, tier: str = "enterprise", **extra: Any) -> dict:
    r = httpx.post(url + "/v1/tokens", json={"tenant_id": tenant, "tier": tier, **extra}, headers=admin_headers())
    assert r.status_code == 201, r.text
    return r.json()


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tea-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.dir], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if os.environ.get("TEA_REQUIRE_SERVICES") == "1":
            pytest.fail("redis-server is not installed but TEA_REQUIRE_SERVICES=1 (scripts/test installs it)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer().start()
    yield server
    server.cleanup()
