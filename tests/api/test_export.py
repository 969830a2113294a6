"""/v1/export round-trips read back with independent readers, and the CLI against a live server."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from tests.api.test_analytics import T0_MS, post_all
from tests.api.test_ingest import assert_error_shape
from tests.conftest import LiveServer


def sample(n: int = 1200) -> list[dict]:
    return [{"event_type": "export", "event_id": f"x{i:05d}", "tenant_id": "acme" if i % 3 else "beta",
             "timestamp": T0_MS + i * 1000, "method": "tools/call", "duration_ms": i / 4, "status_code": 200,
             "tags": ["a", "b"] if i % 2 else [], "error_message": "line one\nline two, \"quoted\"" if i == 7 else None,
             "attributes": {"i": i, "nested": {"ok": True}}} for i in range(n)]


def stored_events(client: httpx.Client, **params: str) -> dict[str, dict]:
    return {e["event_id"]: e for e in client.get("/v1/events", params={"limit": "10000", **params}).json()["events"]}


def test_ndjson_round_trip(client: httpx.Client, server: LiveServer) -> None:
    post_all(client, server, sample())
    r = client.get("/v1/export", params={"tenant_id": "acme"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    assert "attachment" in r.headers["content-disposition"] and "content-length" not in r.headers
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert {e["event_id"]: e for e in lines} == stored_events(client, tenant_id="acme") and len(lines) == 800


def test_csv_round_trip(client: httpx.Client, server: LiveServer) -> None:
    post_all(client, server, sample())
    r = client.get("/v1/export", params={"format": "csv", "start_time": "2026-01-01T00:00:10Z"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    expected = stored_events(client, start_time="2026-01-01T00:00:10Z")
    assert len(rows) == len(expected) == 1190
    for row in rows:
        e = expected[row["event_id"]]
        assert row["timestamp"] == e["timestamp"] and row["tenant_id"] == e["tenant_id"]
        assert json.loads(row["attributes"]) == e["attributes"] and json.loads(row["tags"]) == e["tags"]
        assert (row["error_message"] or None) == e["error_message"]
        assert float(row["duration_ms"]) == e["duration_ms"] and row["source"] == ""


def test_parquet_round_trip(client: httpx.Client, server: LiveServer, tmp_path: Path) -> None:
    post_all(client, server, sample())
    r = client.get("/v1/export", params={"format": "parquet", "tenant_id": "beta"})
    assert r.status_code == 200 and r.content[:4] == b"PAR1"
    (tmp_path / "out.parquet").write_bytes(r.content)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 400 and "attributes" in table.column_names
    expected = stored_events(client, tenant_id="beta")
    for row in table.to_pylist():
        e = expected[row["event_id"]]
        assert row["timestamp"].strftime("%Y-%m-%dT%H:%M:%SZ") == e["timestamp"]
        assert json.loads(row["attributes"]) == e["attributes"] and row["tags"] == e["tags"]
        assert row["duration_ms"] == e["duration_ms"] and row["status_code"] == 200
    assert not list((Path(server.app.settings.data_dir) / "tmp").glob("*")), "temporary files left behind"


def test_empty_exports(client: httpx.Client) -> None:
    assert client.get("/v1/export", params={"tenant_id": "nobody"}).text == ""
    header = client.get("/v1/export", params={"tenant_id": "nobody", "format": "csv"}).text.strip()
    assert header.startswith("event_id,tenant_id,timestamp")
    assert_error_shape(client.get("/v1/export", params={"format": "xlsx"}), 400, "invalid_parameter")


def tea_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tea", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("fmt", ["ndjson", "csv", "parquet"])
def test_cli_export(client: httpx.Client, server: LiveServer, tmp_path: Path, fmt: str) -> None:
    post_all(client, server, sample(300))
    out = tmp_path / f"events.{fmt}"
    proc = tea_cli("export", "--url", server.url, "--format", fmt, "-o", str(out), "--tenant", "acme")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote 200 rows, {out.stat().st_size} bytes" in proc.stderr and "rows" in proc.stderr
    if fmt == "ndjson":
        assert len(out.read_text().splitlines()) == 200
    elif fmt == "csv":
        with out.open() as fh:
            assert len(list(csv.DictReader(fh))) == 200
    else:
        assert pq.read_table(out).num_rows == 200


def test_cli_usage(client: httpx.Client, server: LiveServer) -> None:
    post_all(client, server, sample(30))
    proc = tea_cli("usage", "--url", server.url, "--tenant", "acme", "--month", "2026-01", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    [row] = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert row["tenant_id"] == "acme" and row["period"] == "month" and row["events"] == "20"
    assert row["period_start"] == "2026-01-01T00:00:00Z"
    proc = tea_cli("usage", "--url", server.url, "--month", "2026-13")
    assert proc.returncode == 1 and "--month must look like 2026-11" in proc.stderr
    proc = tea_cli("usage", "--url", "http://127.0.0.1:9", "--month", "2026-01")
    assert proc.returncode == 1 and "cannot reach" in proc.stderr
