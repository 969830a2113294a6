"""/healthz, /readyz (replay gating), /openapi.json describing every route."""
from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from tea.buffer.log import DurableBuffer
from tea.storage.memory import MemoryStorage
from tests.conftest import LiveServer, one_backend


def test_healthz(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.text == "OK" and r.headers["content-type"].startswith("text/plain")
    assert client.head("/healthz").status_code == 200


@one_backend
def test_openapi_is_valid_and_describes_every_route(client: httpx.Client, server: LiveServer) -> None:
    doc = client.get("/openapi.json").json()
    validate(doc)
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {(r.method, r.path) for r in server.app.router.routes if r.include_in_schema}
    assert documented == served
    post = doc["paths"]["/v1/events"]["post"]
    assert set(post["responses"]) >= {"200", "207", "400", "413", "415", "503"}
    assert "application/x-ndjson" in post["requestBody"]["content"]
    event = doc["components"]["schemas"]["Event"]
    assert event["required"] == ["event_type"] and "attributes" in event["properties"]
    params = {p["name"] for p in doc["paths"]["/v1/events"]["get"]["parameters"]}
    assert params >= {"tenant_id", "user_id", "event_type", "source", "method", "status", "trace_id",
                      "correlation_id", "start_time", "end_time", "limit", "cursor"}


@one_backend
def test_openapi_documents_the_tea_aliases_and_retry_after(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for path, method, original in [("/tea/events", "post", "/events"), ("/tea/events", "get", "/events"),
                                   ("/tea/health", "get", "/health"), ("/tea/", "get", "/")]:
        alias, seed = paths[path][method], paths[original][method]
        assert alias["responses"] == seed["responses"] and alias.get("requestBody") == seed.get("requestBody")
        assert alias["operationId"] != seed["operationId"] and "/tea/" in alias["summary"]
    ids = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    retry_after = paths["/v1/events"]["post"]["responses"]["503"]["headers"]["Retry-After"]
    assert retry_after["required"] is True and retry_after["schema"]["type"] == "integer"
    limited = [(path, method, status) for path, ops in paths.items() for method, op in ops.items()
               for status in ("429", "503") if status in op["responses"]]
    assert ("/tea/events", "post", "503") in limited and ("/readyz", "get", "503") in limited
    assert all("Retry-After" in paths[p][m]["responses"][s].get("headers", {}) for p, m, s in limited)


class GatedStorage(MemoryStorage):
    """Real in-memory storage whose writes wait for a gate (storage slower than the replay check)."""

    def __init__(self) -> None:
        super().__init__(max_events=10**6)
        self.gate = threading.Event()

    async def write_batch(self, batch):
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        return await super().write_batch(batch)


def test_readyz_waits_for_the_buffer_replay(serve, tmp_path: Path) -> None:
    async def leave_backlog() -> None:  # acknowledged events from a previous run that never reached storage
        buf = DurableBuffer(str(tmp_path / "data" / "buffer"), max_bytes=10**7, segment_bytes=10**6)
        await buf.open()
        for i in range(5):
            await buf.append(json.dumps({"event_type": "old", "event_id": f"old{i}", "tenant_id": "t",
                                         "timestamp": 1, "received_at": 1}).encode() + b"\n", 1, 1, 1)
        buf._io.shutdown(wait=True)
    asyncio.run(leave_backlog())
    storage = GatedStorage()
    live = serve(storage=storage, wait_ready=False, socket=False)
    r = live.client.get("/readyz")
    body = r.json()
    assert r.status_code == 503 and (body["ready"], body["reason"]) == (False, "replaying the durable buffer into storage")
    assert body["buffer_bytes"] > 0 and body["storage"] == "ok"
    assert r.headers["retry-after"] == "1"
    assert live.client.post("/v1/events", json={"event_type": "new"}).status_code == 200  # still ingesting
    storage.gate.set()
    live.wait_ready()
    live.wait_stored(6)
    assert sorted(e.event_id for e in storage._events.values() if e.event_type == "old") == [
        f"old{i}" for i in range(5)]


def test_second_app_on_the_same_data_dir_refuses_to_start(settings_factory) -> None:
    from tea.app import StartupError, TeaApp

    async def scenario() -> None:
        first = TeaApp(settings_factory(storage_backend="duckdb"))
        await first.startup()
        try:
            with pytest.raises(StartupError, match="in use by another TEA process"):
                await TeaApp(settings_factory(storage_backend="memory")).startup()
        finally:
            await first.shutdown()
        again = TeaApp(settings_factory(storage_backend="duckdb"))  # the lock is released on shutdown
        await again.startup()
        await again.shutdown()
    asyncio.run(scenario())
