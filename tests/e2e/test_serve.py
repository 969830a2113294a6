"""`tea serve` lifecycle: graceful SIGTERM drain, data-dir lock, defaults."""
from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_sigterm_drains_the_buffer_into_storage(tea_process, tmp_path: Path) -> None:
    # a long flush interval: events sit in the buffer until shutdown drains them
    server = tea_process(TEA_WRITER__FLUSH_INTERVAL_MS="60000", TEA_WRITER__BATCH_EVENTS="1000000").start()
    events = [{"event_type": "drain", "event_id": f"d{i}"} for i in range(20000)]
    for start in range(0, len(events), 5000):
        assert httpx.post(server.url + "/v1/events", json=events[start:start + 5000], timeout=30).status_code == 200
    assert httpx.get(server.url + "/health").json()["buffer_bytes"] > 0
    server.signal(signal.SIGTERM)
    # uvicorn re-raises the signal once shut down cleanly, so the exit status is "terminated by SIGTERM"
    assert server.wait(60) in (0, -signal.SIGTERM)
    assert "TEA stopped" in server.log() and "did not drain" not in server.log()
    assert not list((tmp_path / "data" / "buffer").glob("*.seg")), "buffer not drained"
    again = tea_process().start()
    health = httpx.get(again.url + "/health").json()
    assert health["events_stored"] == 20000 and health["buffer_bytes"] == 0


def test_a_second_server_on_the_same_data_dir_exits_with_a_clear_message(tea_process) -> None:
    tea_process().start()
    second = tea_process().start(wait_ready=False)
    assert second.wait(60) != 0
    assert "is in use by another TEA process" in second.log()


def test_defaults_duckdb_file_under_the_data_dir(tea_process, tmp_path: Path) -> None:
    server = tea_process().start()
    health = httpx.get(server.url + "/health").json()
    assert health["storage_backend"] == "duckdb" and health["retention_hours"] == 720
    assert (tmp_path / "data" / "tea.duckdb").exists()


def test_tea_asgi_app_runs_under_plain_uvicorn(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    from tests.conftest import free_port
    port = free_port()
    env = {**os.environ, "TEA_DATA_DIR": str(tmp_path / "asgi-data"), "TEA_ADMIN_TOKEN": "a" * 40}
    env.pop("TEA_AUTH_VALIDATION", None)
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "tea.asgi:app", "--port", str(port),
                             "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "uvicorn tea.asgi:app did not start"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/v1/events"
        assert httpx.post(url, json={"event_type": "via-asgi"}).status_code == 401  # auth is on by default
        r = httpx.post(url, json={"event_type": "via-asgi"}, headers={"authorization": "Bearer " + "a" * 40})
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert (tmp_path / "asgi-data" / "tea.duckdb").exists()
