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


def test_sigint_drains_the_buffer_into_duckdb(tea_process, tmp_path: Path) -> None:
    server = tea_process(TEA_WRITER__FLUSH_INTERVAL_MS="60000", TEA_WRITER__BATCH_EVENTS="1000000").start()
    events = [{"event_type": "ctrl-c", "event_id": f"c{i}"} for i in range(20000)]
    for start in range(0, len(events), 5000):
        assert httpx.post(server.url + "/v1/events", json=events[start:start + 5000], timeout=30).status_code == 200
    assert httpx.get(server.url + "/health").json()["buffer_bytes"] > 0
    server.signal(signal.SIGINT)  # Ctrl-C in the terminal `tea serve` runs in
    assert server.wait(60) in (0, -signal.SIGINT), server.log()
    assert "TEA stopped" in server.log() and "did not drain" not in server.log()
    assert not list((tmp_path / "data" / "buffer").glob("*.seg")), "buffer not drained"
    assert (tmp_path / "data" / "tea.duckdb").exists()
    again = tea_process().start()
    health = httpx.get(again.url + "/health").json()
    assert health["storage_backend"] == "duckdb" and health["events_stored"] == 20000 and health["buffer_bytes"] == 0


def test_when_the_shutdown_budget_runs_out_the_rest_is_replayed_after_restart_exactly_once(
        tea_process, tmp_path: Path) -> None:
    from tests.e2e.conftest import stored_keys
    server = tea_process(TEA_WRITER__FLUSH_INTERVAL_MS="60000", TEA_WRITER__BATCH_EVENTS="1000000",
                         TEA_SHUTDOWN_TIMEOUT_S="0.1").start()
    events = [{"event_type": "budget", "event_id": f"b{i}", "tenant_id": f"t{i % 3}"} for i in range(100_000)]
    for start in range(0, len(events), 10_000):
        assert httpx.post(server.url + "/v1/events", json=events[start:start + 10_000], timeout=60).status_code == 200
    assert httpx.get(server.url + "/health").json()["events_stored"] == 0  # all of it still in the buffer
    server.signal(signal.SIGTERM)
    assert server.wait(60) in (0, -signal.SIGTERM), server.log()
    log = server.log()
    assert "did not drain within 0.1 s" in log and "replayed at the next start" in log and "TEA stopped" in log
    assert list((tmp_path / "data" / "buffer").glob("*.seg")), "the undrained events must stay on disk"
    again = tea_process().start()  # /readyz turns 200 only once the buffer is replayed
    keys = stored_keys(again.url, event_type="budget")
    assert set(keys) == {(e["tenant_id"], e["event_id"]) for e in events} and set(keys.values()) == {1}
    health = httpx.get(again.url + "/health").json()
    assert health["events_stored"] == 100_000 and health["buffer_bytes"] == 0


def test_json_logs_are_one_object_per_line(tea_process) -> None:
    import json
    server = tea_process(TEA_LOG_FORMAT="json", TEA_ACCESS_LOG="true", TEA_LOG_LEVEL="info").start()
    assert httpx.post(server.url + "/v1/events", json={"event_type": "logged"}).status_code == 200
    assert httpx.get(server.url + "/nowhere").status_code == 404
    server.signal(signal.SIGTERM)
    server.wait(60)
    lines = [line for line in server.log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(r, dict) and {"ts", "level", "logger", "msg"} <= set(r) for r in records), lines
    assert all(r["level"] in ("debug", "info", "warning", "error", "critical") for r in records)
    assert all(r["ts"].endswith("Z") and len(r["ts"]) == 24 for r in records)
    assert not any("\x1b" in line or "color_message" in line for line in lines), "ANSI colour codes in the log"
    by_logger = {(r["logger"], r["msg"]) for r in records}
    assert ("tea.app", "TEA stopped") in by_logger
    assert any(logger == "uvicorn.access" and "/v1/events" in msg for logger, msg in by_logger)
    assert any(logger.startswith("uvicorn") and "Started server process" in msg for logger, msg in by_logger)


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
