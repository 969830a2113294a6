"""`tea serve` refusing to start says why in one line and exits nonzero, at once: a port in use (the main
HTTP port, OTLP/HTTP's), a ClickHouse URL of the HTTP interface."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.e2e


def serve(tmp_path: Path, *args: str, **env: str) -> tuple[int, str, float]:
    """Run `tea serve` to its end: (exit code, stderr, seconds it took)."""
    full = {**os.environ, "TEA_AUTH_VALIDATION": "false", "TEA_OTLP__GRPC_PORT": "0", "TEA_OTLP__HTTP_PORT": "0",
            "TEA_STORAGE_BACKEND": "memory", "TEA_LOG_LEVEL": "info", **env}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tea", "serve", "--data-dir", str(tmp_path / "data"), *args],
                          env=full, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stderr, time.monotonic() - started


@pytest.fixture
def taken():  # type: ignore[no-untyped-def]
    """A port another process listens on (without SO_REUSEPORT, as most servers)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_the_main_port_in_use(tmp_path: Path, taken: int) -> None:
    code, stderr, _ = serve(tmp_path, "--port", str(taken))
    assert code == 1
    assert stderr.splitlines() == [f"tea: port {taken} on 127.0.0.1 is already in use (--port, TEA_PORT): stop "
                                   "what listens there or choose another port"]
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_the_otlp_http_port_in_use(tmp_path: Path, taken: int) -> None:
    code, stderr, _ = serve(tmp_path, "--port", str(free_port()), TEA_OTLP__HTTP_PORT=str(taken))
    assert code == 1
    assert stderr.splitlines() == [f"tea: port {taken} on 127.0.0.1 is already in use (--otlp-http-port, "
                                   "TEA_OTLP__HTTP_PORT): stop what listens there or choose another port"]


@pytest.mark.parametrize("url, suggested", [
    ("http://tea:secret@ch.example.com:8123/tea", "clickhouse://tea:***@ch.example.com:9000/tea"),
    ("https://default@abc.eu-west-1.aws.clickhouse.cloud:8443/default",
     "clickhouses://default@abc.eu-west-1.aws.clickhouse.cloud:9440/default"),
])
def test_an_http_clickhouse_url_is_refused_at_once(tmp_path: Path, url: str, suggested: str) -> None:
    code, stderr, took_s = serve(tmp_path, "--port", str(free_port()), TEA_STORAGE_BACKEND="clickhouse",
                                 TEA_CLICKHOUSE_URL=url)
    assert code == 2 and took_s < 30  # (the refusal itself takes no network round trip: see the unit test)
    lines = [line for line in stderr.splitlines() if line.startswith("tea:")]
    assert len(lines) == 1 and "native protocol" in lines[0] and suggested in lines[0], stderr
    assert "secret" not in stderr
