"""The storage server stops: TEA keeps acknowledging into the durable buffer up to its bound, then
answers 503 with Retry-After; /readyz and /health report the outage and the writer's lag; when the
server returns the buffer drains — nothing lost, nothing duplicated. Real servers, stopped and started."""
from __future__ import annotations

import signal
import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import stored_keys
from tests.services import ClickHouseServer, PostgresServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def batch(start: int, n: int = 200) -> list[dict[str, Any]]:
    return [{"event_type": "outage", "event_id": f"o-{i:07d}", "attributes": {"pad": "x" * 200}}
            for i in range(start, start + n)]


@pytest.mark.parametrize("backend", ["postgres", "clickhouse"])
def test_a_storage_outage_is_buffered_reported_and_drained(backend, serve) -> None:
    server = PostgresServer() if backend == "postgres" else ClickHouseServer()
    try:
        live = serve(storage_backend=backend, **{f"{backend}_url": server.fresh_url()},
                     buffer__max_bytes=1_000_000, buffer__segment_bytes=65_536, writer__max_backoff_s=0.5)
        acked: list[str] = []

        def post(start: int) -> httpx.Response:
            r = httpx.post(live.url + "/v1/events", json=batch(start), timeout=30)
            if r.status_code == 200:
                acked.extend(e["event_id"] for e in batch(start))
            return r

        assert post(0).status_code == 200
        live.wait_stored(200)
        # the server goes away (PostgreSQL: fast shutdown; ClickHouse: SIGTERM)
        server.stop(signal.SIGINT if backend == "postgres" else signal.SIGTERM)
        next_id = 200
        refused = None
        for _ in range(200):  # until the buffer's bound: 200 acknowledged, then 503
            r = post(next_id)
            if r.status_code != 200:
                refused = r
                break
            next_id += 200
        assert refused is not None and refused.status_code == 503, "the buffer bound was never reached"
        assert int(refused.headers["retry-after"]) >= 1
        assert len(acked) > 1000
        deadline = time.monotonic() + 30
        while httpx.get(live.url + "/readyz").json().get("storage") != "unreachable" and time.monotonic() < deadline:
            time.sleep(0.1)
        ready = httpx.get(live.url + "/readyz")
        assert ready.json()["storage"] == "unreachable" and ready.json()["writer_lag_seconds"] > 0
        assert ready.json()["buffer_bytes"] > 0 and ready.json()["last_storage_error"]
        health = httpx.get(live.url + "/health", timeout=60).json()
        assert health["status"] == "degraded" and health["storage"] == "unreachable"
        assert health["writer_lag_seconds"] > 0 and health["buffer_bytes"] > 0 and health["last_storage_error"]
        # the server returns: the buffer drains, every acknowledged event exactly once
        server.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            body = httpx.get(live.url + "/health", timeout=60).json()
            if body["buffer_bytes"] == 0 and body["storage"] == "ok":
                break
            time.sleep(0.2)
        assert post(next_id).status_code == 200  # accepting again
        live.wait_stored(len(acked))
        ids = [event_id for _, event_id in stored_keys(live.url, event_type="outage").elements()]
        assert sorted(ids) == sorted(set(acked)) and len(ids) == len(set(acked)) == len(acked)
        assert httpx.get(live.url + "/readyz").json()["storage"] == "ok"
    finally:
        server.close()
