"""/v1/export round-trips read back with independent readers, and the CLI against a live server."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading
from datetime import timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import duckdb

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.api.test_analytics import T0_MS, post_all
from tests.api.test_ingest import assert_error_shape
from tea import remote
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
    for column in ("timestamp", "received_at"):  # instants in UTC, and saying so
        assert table.schema.field(column).type == pa.timestamp("us", tz="UTC"), table.schema
    expected = stored_events(client, tenant_id="beta")
    for row in table.to_pylist():
        e = expected[row["event_id"]]
        assert row["timestamp"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") == e["timestamp"]
        assert row["timestamp"].utcoffset() == timedelta(0)
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


@pytest.mark.socket  # (the `tea` command reaches the server over HTTP)
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


@pytest.mark.socket
def test_cli_export_filters_by_protocol_and_target(client: httpx.Client, server: LiveServer, tmp_path: Path) -> None:
    post_all(client, server, [{"event_type": "call", "timestamp": T0_MS + i, "protocol": ("mcp", "a2a")[i % 2],
                               "target": ("srv-a", "srv-b", None)[i % 3]} for i in range(60)])
    out = tmp_path / "events.ndjson"
    proc = tea_cli("export", "--url", server.url, "-o", str(out), "--protocol", "mcp", "--target", "srv-b", "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 10 and {(r["protocol"], r["target"]) for r in rows} == {("mcp", "srv-b")}
    assert "wrote 10 rows" in proc.stderr


# ---------------------------------------------------------------- rows written, not the count made before
CSV_BODY = (b'event_id,error_message\n'
            b'a,"two\nlines, and ""quotes"""\n'
            b'b,\n'
            b'c,"""\n"""\n')


@pytest.fixture
def fake_tea(tmp_path: Path) -> Iterator[str]:
    """A server whose /v1/events count (7) is not what /v1/export then sends (3 rows, or 5 in Parquet)."""
    parquet = tmp_path / "five.parquet"
    duckdb.sql(f"COPY (SELECT range AS n FROM range(5)) TO '{parquet}' (FORMAT parquet)")
    bodies = {"ndjson": b'{"n":1}\n{"n":2}\n{"n":3}\n', "csv": CSV_BODY, "parquet": parquet.read_bytes()}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            path, _, query = self.path.partition("?")
            body = (b'{"events":[],"total_count":7,"has_more":true}' if path == "/v1/events"
                    else bodies[dict(p.split("=") for p in query.split("&"))["format"]])
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    thread.join()
    httpd.server_close()


@pytest.mark.parametrize("fmt, rows", [("ndjson", 3), ("csv", 3), ("parquet", 5)])
def test_export_reports_the_rows_it_wrote(fake_tea: str, tmp_path: Path, fmt: str, rows: int) -> None:
    out = tmp_path / f"out.{fmt}"
    assert remote.export(fake_tea, fmt, {"tenant_id": "acme"}, str(out), progress=False) == (rows, out.stat().st_size, 7)
    code, terminal = on_terminal("export", "--url", fake_tea, "--format", fmt, "-o", str(out))
    assert code == 0, terminal
    assert f"wrote {rows} rows, {out.stat().st_size} bytes to {out} (7 counted when the export started)" in terminal
    assert f"export {fmt}: 100%" in terminal and f"| {rows}/{rows} [" in terminal  # ends at the true count


def on_terminal(*args: str) -> tuple[int, str]:
    """Run the CLI with its stderr on a terminal (a pseudo-terminal): (exit code, what it drew there)."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 24 rows of 120 columns
    proc = subprocess.Popen([sys.executable, "-m", "tea", *args], stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    drawn = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer of the terminal is gone
            break
        if not chunk:
            break
        drawn.append(chunk)
    os.close(master)
    return proc.wait(120), b"".join(drawn).decode(errors="replace")


def test_the_progress_bar_is_drawn_on_a_terminal_only(fake_tea: str, tmp_path: Path) -> None:
    out = tmp_path / "out.ndjson"
    piped = tea_cli("export", "--url", fake_tea, "-o", str(out))
    assert piped.returncode == 0 and piped.stderr == f"wrote 3 rows, {out.stat().st_size} bytes to {out} " \
        "(7 counted when the export started)\n"
    code, terminal = on_terminal("export", "--url", fake_tea, "-o", str(out))
    assert code == 0 and "\r" in terminal and "export ndjson: 100%" in terminal
    code, quiet = on_terminal("export", "--url", fake_tea, "-o", str(out), "--quiet")
    assert code == 0 and "\r" not in quiet.replace("\r\n", "\n") and "%" not in quiet


def test_csv_records_are_counted_across_chunks() -> None:
    assert len(list(csv.reader(io.StringIO(CSV_BODY.decode())))) == 4
    for cut in range(len(CSV_BODY) + 1):  # the quoting state carries over whatever the chunk boundaries
        counter = remote.CsvRecords()
        counter.feed(CSV_BODY[:cut])
        counter.feed(CSV_BODY[cut:])
        assert counter.records == 4, cut


@pytest.mark.socket
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


def test_cli_errors_name_the_flag(serve, tmp_path: Path) -> None:
    live = serve(storage_backend="memory")
    usage = tea_cli("usage", "--url", live.url, "--start", "yesterday")
    assert usage.returncode == 1
    assert usage.stderr.strip() == "tea usage: --start must be an RFC 3339 time or epoch milliseconds, got 'yesterday'"
    export = tea_cli("export", "--url", live.url, "-o", str(tmp_path / "x.ndjson"), "--end", "soon", "--quiet")
    assert export.returncode == 1 and export.stderr.strip().startswith("tea export: --end must be an RFC 3339 time")
    period = tea_cli("usage", "--url", live.url, "--start", "2026-01-01T00:00:00Z", "--end", "2025-01-01T00:00:00Z")
    assert period.returncode == 1 and period.stderr.strip() == "tea usage: --end must be after --start"
