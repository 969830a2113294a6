"""A third-party plugin package (examples/tea-example-plugin), installed for real and found through the
``tea.plugins`` entry point by `tea plugins` and `tea serve`; its processor's DLQ replayed with `tea dlq`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tea-example-plugin"
ADMIN = "plugin-admin-" + "p" * 32


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(EXAMPLE)], check=True, capture_output=True, timeout=300)
    return target


def env_with(target: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]), **extra}


def test_tea_plugins_lists_the_entry_point(installed: Path, tmp_path: Path) -> None:
    sink = tmp_path / "sink.ndjson"
    proc = subprocess.run([sys.executable, "-m", "tea", "plugins"], capture_output=True, text=True, timeout=60,
                          env=env_with(installed, TEA_EXAMPLE_SINK=str(sink)))
    assert proc.returncode == 0, proc.stderr
    assert "example  (tea_example_plugin; entry point tea-example-plugin 0.1.0)" in proc.stdout
    assert "no_forbidden_flag" in proc.stdout and "example_sink" in proc.stdout


def test_the_plugin_validates_processes_and_its_dlq_replays(installed: Path, tmp_path: Path, tea_process) -> None:
    sink = tmp_path / "sink.ndjson"
    server = tea_process(tmp_path / "data", PYTHONPATH=env_with(installed)["PYTHONPATH"], TEA_EXAMPLE_SINK=str(sink),
                         TEA_PROCESSING__BATCH_TIMEOUT_MS="50", TEA_PROCESSING__RETRY_ATTEMPTS="1",
                         TEA_PROCESSING__RETRY_DELAY_MS="10", TEA_WRITER__FLUSH_INTERVAL_MS="20",
                         TEA_AUTH_VALIDATION="true", TEA_ADMIN_TOKEN=ADMIN).start()
    headers = {"authorization": f"Bearer {ADMIN}"}
    r = httpx.post(server.url + "/v1/events", headers=headers, json=[
        {"event_type": "ok", "event_id": "p1", "tenant_id": "t"},
        {"event_type": "ok", "event_id": "p2", "tenant_id": "t", "attributes": {"forbidden": True}}])
    assert r.status_code == 207 and r.json()["errors"][0]["error"] == "forbidden_flag"
    wait_for(lambda: sink.exists() and "p1" in sink.read_text())
    (tmp_path / "sink.ndjson.fail").write_text("")
    assert httpx.post(server.url + "/v1/events", headers=headers,
                      json=[{"event_type": "ok", "event_id": "p3", "tenant_id": "t"}]).status_code == 200
    wait_for(lambda: httpx.get(server.url + "/v1/dlq", headers=headers).json()["entries"])
    (tmp_path / "sink.ndjson.fail").unlink()
    replay = subprocess.run([sys.executable, "-m", "tea", "dlq", "replay", "--url", server.url, "--admin-token", ADMIN],
                            capture_output=True, text=True, timeout=60)
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout.splitlines()[0])["replayed"] is True
    ids = [json.loads(line)["event_id"] for line in sink.read_text().splitlines()]
    assert ids == ["p1", "p3"]


def wait_for(check, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")
