"""Storage goes down under a running TEA — the server killed (connections refused) or hung (SIGSTOP:
connections accepted, never answered). Every read route answers 503 with Retry-After in its
protocol's own error shape, soon (the client's timeout is the bound here: no timed assertions);
/health answers with the storage state while reads pile up; ingestion keeps acknowledging; and once
the server is back every acknowledged event is readable. Real PostgreSQL and ClickHouse servers."""
from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.api.openapi_doc import assert_documented
from tests.e2e.conftest import stored_keys
from tests.services import ClickHouseServer, PostgresServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLIENT_TIMEOUT_S = 5.0  # storage.read_timeout_s is 2 s: a read that takes longer than this fails the test
# GET routes that never read storage: the app's own state, a live stream, TEA keeping no exemplars, and the
# Control Center's pages (HTML shells: their data comes from the API routes, checked here)
NO_STORAGE = {"/", "/tea/", "/health", "/tea/health", "/healthz", "/readyz", "/metrics", "/openapi.json",
              "/api/v1/status/buildinfo", "/api/v1/metadata", "/api/v1/query_exemplars", "/dashboard",
              "/v1/events/stream"}
PATH_VALUES = {"source_id": "1", "event_id": "e-1", "trace_id": "0af7651916cd43dd8448eb211c80319c",
               "entity_type": "team", "entity_id": "a-1", "relation": "communication_telemetry",
               "function": "check_registration_gaps", "name": "job", "rule_id": "r-1", "token_id": "tk-1",
               "source": "s"}
QUERY_VALUES = {"/api/v1/query": {"query": "up"},
                "/api/v1/query_range": {"query": "up", "start": "1700000000", "end": "1700000600", "step": "60"},
                "/api/v1/series": {"match[]": "up"}, "/v1/otel/metrics/points": {"name": "m"},
                "/v1/otel/metrics": {"name": "m"}}


def read_routes(app: Any) -> dict[str, str]:
    """Every GET route of the app that reads storage, as a URL path with its parameters filled in -> its
    path template."""
    out = {}
    for route in app.router.routes:
        if route.method != "GET" or route.path in NO_STORAGE or route.path.startswith("/ui"):
            continue
        path = route.path
        for name, value in PATH_VALUES.items():
            path = path.replace("{" + name + "}", value)
        assert "{" not in path, f"no value for a path parameter of {route.path}"
        query = QUERY_VALUES.get(route.path, {})
        out[path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")] = route.path
    return out


def assert_unavailable(path: str, response: httpx.Response) -> None:
    """503 with Retry-After, in the route's protocol's error shape."""
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert int(response.headers["retry-after"]) >= 1, path
    body = response.json()
    if path.startswith("/rest/v1/"):
        assert body["code"] == "PGRST000" and set(body) == {"code", "details", "hint", "message"}, (path, body)
    elif path.startswith("/api/v1/"):
        assert body["status"] == "error" and body["errorType"] == "unavailable", (path, body)
    elif path.startswith("/stats"):
        assert set(body) == {"error"} and "unavailable" in body["error"], (path, body)
    else:
        assert body["error"] == "storage_unavailable" and body["message"], (path, body)
    assert "127.0.0.1" not in response.text, "the answer names the storage host"


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (PostgreSQL: the postmaster and its backends)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def signal_tree(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def post_events(url: str, start: int, n: int = 50) -> list[str]:
    ids = [f"so-{i:06d}" for i in range(start, start + n)]
    r = httpx.post(url + "/v1/events", json=[{"event_type": "storage_outage", "event_id": i} for i in ids],
                   timeout=CLIENT_TIMEOUT_S)
    assert r.status_code == 200, r.text
    return ids


@pytest.mark.parametrize("failure", ["killed", "hung"])
@pytest.mark.parametrize("backend", ["postgres", "clickhouse"])
def test_reads_answer_503_while_storage_is_down(backend: str, failure: str, serve: Any) -> None:
    server = PostgresServer() if backend == "postgres" else ClickHouseServer()
    stopped: list[int] = []
    try:
        live = serve(storage_backend=backend, **{f"{backend}_url": server.fresh_url()}, writer__max_backoff_s=0.5)
        acked = post_events(live.url, 0)
        live.wait_stored(len(acked))
        templates = read_routes(live.app)
        paths = list(templates)
        doc = httpx.get(live.url + "/openapi.json", timeout=CLIENT_TIMEOUT_S).json()
        assert len(paths) > 50 and "/v1/logs" in paths and "/v1/registry" in paths
        with httpx.Client(base_url=live.url, timeout=CLIENT_TIMEOUT_S) as client:
            up = {p: client.get(p).status_code for p in paths}
        assert not [p for p, status in up.items() if status >= 500], up  # all fine while storage is up
        # the server goes away
        assert server.proc is not None
        if failure == "killed":
            server.stop(signal.SIGINT if backend == "postgres" else signal.SIGKILL)
        else:
            stopped = process_tree(server.proc.pid)
            signal_tree(stopped, signal.SIGSTOP)
        acked += post_events(live.url, 1000)  # ingestion keeps acknowledging into the durable buffer
        telemetron = httpx.post(live.url + "/ingest", json={"sourceId": 7, "type": "Heartbeat",
                                                             "timestamp": "2026-01-01T00:00:00Z", "data": {}},
                                timeout=CLIENT_TIMEOUT_S)
        assert telemetron.status_code == 202, telemetron.text

        def get(path: str) -> tuple[str, httpx.Response]:
            with httpx.Client(base_url=live.url, timeout=CLIENT_TIMEOUT_S) as c:
                return path, c.get(path)

        # every read route at once, with /health asked all along
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(get, paths + ["/health"] * 20))
        wrong = []
        for path, response in answers:
            try:
                if path == "/health":
                    body = response.json()
                    assert response.status_code == 200
                    assert body["storage"] == "unreachable" and body["status"] == "degraded", body
                else:
                    assert_unavailable(path, response)
                    assert_documented(doc, templates[path], "get", response)  # as /openapi.json says
            except (AssertionError, KeyError, ValueError) as exc:
                wrong.append((path, exc))
        assert not wrong, "\n".join(f"{path}: {exc!r}" for path, exc in wrong)
        acked += post_events(live.url, 2000)
        # the server comes back: every acknowledged event is readable, none twice
        if failure == "killed":
            server.start()
        else:
            signal_tree(stopped, signal.SIGCONT)
            stopped = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            body = httpx.get(live.url + "/health", timeout=CLIENT_TIMEOUT_S).json()
            if body["storage"] == "ok" and body["buffer_bytes"] == 0:
                break
            time.sleep(0.2)
        assert body["storage"] == "ok" and body["buffer_bytes"] == 0, body  # ("degraded" for a minute after a failure)
        live.wait_stored(len(acked) + 1)
        ids = [event_id for _, event_id in stored_keys(live.url, event_type="storage_outage").elements()]
        assert sorted(ids) == sorted(acked)
        with httpx.Client(base_url=live.url, timeout=CLIENT_TIMEOUT_S) as client:
            after = {p: client.get(p).status_code for p in paths}
        assert after == up  # every route answers as before the outage
    finally:
        signal_tree(stopped, signal.SIGCONT)
        server.close()
