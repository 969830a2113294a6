"""POST /v1/events: every body form and every status code, over real HTTP."""
from __future__ import annotations

import gzip
import json

import httpx
import pytest

from tests.conftest import LiveServer, one_backend


def post(client: httpx.Client, body: object | bytes, content_type: str = "application/json", **headers: str):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/v1/events", content=data, headers={"content-type": content_type, **headers})


def assert_error_shape(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict), body  # always there, {} when there is nothing to add
    if code is not None:
        assert body["error"] == code, body
    return body


def stored(client: httpx.Client, server: LiveServer, expected: int, **params: str) -> list[dict]:
    server.wait_stored(expected)
    page = client.get("/v1/events", params={"limit": "10000", **params}).json()
    return page["events"]


def test_single_object_is_accepted_and_stored(client: httpx.Client, server: LiveServer) -> None:
    r = post(client, {"event_type": "mcp_request", "tenant_id": "acme", "method": "tools/list",
                      "duration_ms": 45, "attributes": {"k": [1, 2]}})
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 1 and body["rejected"] == 0 and len(body["event_ids"]) == 1
    [event] = stored(client, server, 1)
    assert event["event_id"] == body["event_ids"][0]
    assert event["tenant_id"] == "acme" and event["method"] == "tools/list" and event["duration_ms"] == 45
    assert event["attributes"] == {"k": [1, 2]} and event["source_protocol"] == "native"


@pytest.mark.parametrize("shape", ["array", "envelope", "ndjson"])
def test_batch_forms(client: httpx.Client, server: LiveServer, shape: str) -> None:
    events = [{"event_type": "t", "event_id": f"e{i}", "tenant_id": "t1"} for i in range(50)]
    if shape == "array":
        r = post(client, events)
    elif shape == "envelope":
        r = post(client, {"events": events})
    else:
        r = post(client, b"\n".join(json.dumps(e).encode() for e in events) + b"\n\n", "application/x-ndjson")
    assert r.status_code == 200, r.text
    assert r.json()["event_ids"] == [f"e{i}" for i in range(50)]
    assert sorted(e["event_id"] for e in stored(client, server, 50)) == sorted(f"e{i}" for i in range(50))


def test_partial_batch_is_207_with_indexed_errors(client: httpx.Client, server: LiveServer) -> None:
    events = [{"event_type": "ok", "event_id": "a"}, {"event_type": "", "event_id": "b"},
              {"event_type": "ok", "event_id": "c", "duration_ms": "slow"},
              {"event_type": "ok", "event_id": "d", "timestamp": "2999-01-01T00:00:00Z"},
              {"event_type": "ok", "event_id": "e", "unknown_field": 1},
              {"event_type": "ok", "event_id": "f", "attributes": [1]},
              {"event_type": "ok", "event_id": "g"}]
    r = post(client, events)
    assert r.status_code == 207, r.text
    body = r.json()
    assert body["accepted"] == 2 and body["rejected"] == 5 and body["event_ids"] == ["a", "g"]
    errors = {e["index"]: e for e in body["errors"]}
    assert sorted(errors) == [1, 2, 3, 4, 5]
    assert errors[1]["field"] == "event_type" and errors[1]["event_id"] == "b"
    assert errors[2]["field"] == "duration_ms" and errors[2]["error"] == "invalid_event"
    assert errors[3]["error"] == "clock_skew" and errors[3]["field"] == "timestamp"
    assert errors[4]["field"] == "unknown_field"
    assert errors[5]["field"] == "attributes"
    assert sorted(e["event_id"] for e in stored(client, server, 2)) == ["a", "g"]


@one_backend
def test_item_errors_have_every_key_with_null_event_id_when_the_event_had_none(client: httpx.Client) -> None:
    r = post(client, [{"event_type": "ok"}, {"event_type": ""}, {"event_type": "ok", "duration_ms": "slow"},
                      {"event_type": "ok", "event_id": "e3", "tenant_id": "_tea"}])
    assert r.status_code == 207
    assert r.json()["errors"] == [
        {"index": 1, "error": "invalid_event", "message": "Expected `str` of length >= 1 (field `event_type`)",
         "event_id": None, "field": "event_type"},
        {"index": 2, "error": "invalid_event", "message": "Expected `float | null`, got `str` (field `duration_ms`)",
         "event_id": None, "field": "duration_ms"},
        {"index": 3, "error": "forbidden_tenant", "message": "this credential cannot write to tenant '_tea'",
         "event_id": "e3", "field": "tenant_id"}]
    lines = post(client, b'{"event_type":"ok"}\n{"event_type":\n', "application/x-ndjson").json()["errors"]
    assert [(e["event_id"], e["field"], e["error"]) for e in lines] == [(None, None, "invalid_json")]


def test_iso_8601_timestamps_are_accepted(client: httpx.Client, server: LiveServer) -> None:
    forms = {"i1": "2024-01-15T10:30:00Z", "i2": "2024-01-15T10:30Z", "i3": "20240115T103000Z",
             "i4": "2024-01-15", "i5": "2024-01-15T11:30:00+01:00"}
    events = [{"event_type": "iso", "event_id": k, "timestamp": v} for k, v in forms.items()]
    assert post(client, events).status_code == 200
    stored_at = {e["event_id"]: e["timestamp"] for e in stored(client, server, len(forms), event_type="iso")}
    assert stored_at == {"i1": "2024-01-15T10:30:00Z", "i2": "2024-01-15T10:30:00Z", "i3": "2024-01-15T10:30:00Z",
                         "i4": "2024-01-15T00:00:00Z", "i5": "2024-01-15T10:30:00Z"}


@one_backend
def test_all_rejected_is_400_with_item_errors(client: httpx.Client) -> None:
    r = post(client, [{"event_type": 1}, {"nope": True}])
    body = assert_error_shape(r, 400, "invalid_events")
    assert [e["index"] for e in body["details"]["errors"]] == [0, 1]


def test_ndjson_bad_line_does_not_sink_the_others(client: httpx.Client, server: LiveServer) -> None:
    lines = b'{"event_type":"a","event_id":"x1"}\n{"event_type":"a",\n{"event_type":"a","event_id":"x3"}\n'
    r = post(client, lines, "application/x-ndjson")
    assert r.status_code == 207
    assert [e["index"] for e in r.json()["errors"]] == [1] and r.json()["errors"][0]["error"] == "invalid_json"
    assert len(stored(client, server, 2)) == 2


def test_gzip_body(client: httpx.Client, server: LiveServer) -> None:
    data = gzip.compress(json.dumps([{"event_type": "zipped"}] * 20).encode())
    r = post(client, data, **{"content-encoding": "gzip"})
    assert r.status_code == 200 and r.json()["accepted"] == 20
    assert len(stored(client, server, 20, event_type="zipped")) == 20


def test_chunked_body_without_content_length(client: httpx.Client, server: LiveServer) -> None:
    payload = json.dumps([{"event_type": "chunked", "attributes": {"i": i}} for i in range(300)]).encode()

    def chunks():
        for start in range(0, len(payload), 1000):
            yield payload[start:start + 1000]

    r = client.post("/v1/events", content=chunks(), headers={"content-type": "application/json"})
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 200 and r.json()["accepted"] == 300


def test_body_over_limit_is_413_before_reading(serve) -> None:
    live = serve(storage_backend="memory", max_body_bytes=4096, socket=False)
    c = live.client
    r = post(c, [{"event_type": "x" * 100}] * 100)
    assert_error_shape(r, 413, "payload_too_large")


def test_chunked_body_over_limit_is_413(serve) -> None:
    live = serve(storage_backend="memory", max_body_bytes=4096, socket=False)

    def chunks():
        for _ in range(10):
            yield b"[" + b" " * 1000

    c = live.client
    r = c.post("/v1/events", content=chunks(), headers={"content-type": "application/json"})
    assert_error_shape(r, 413, "payload_too_large")


def test_gzip_bomb_is_refused(serve) -> None:
    live = serve(storage_backend="memory", max_body_bytes=1024 * 1024, socket=False)
    bomb = gzip.compress(b"[" + b" " * (200 * 1024 * 1024) + b"]", compresslevel=9)
    assert len(bomb) < 400 * 1024
    c = live.client
    r = post(c, bomb, **{"content-encoding": "gzip"})
    assert_error_shape(r, 413, "payload_too_large")
    assert live.app.buffer.backlog_bytes == 0


def test_too_many_events_is_413(serve) -> None:
    live = serve(storage_backend="memory", max_batch_events=10, socket=False)
    c = live.client
    body = assert_error_shape(post(c, [{"event_type": "x"}] * 11), 413, "too_many_events")
    assert body["details"] == {"max_batch_events": 10}
    assert post(c, [{"event_type": "x"}] * 10).status_code == 200


def test_a_20_mib_array_of_tiny_events_is_refused_quickly_with_little_memory(serve) -> None:
    import threading
    import time

    def rss_mib() -> float:  # the server runs in this process
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024

    # on a socket: uvicorn hands the app the body in pieces, as a client sends it
    live = serve(storage_backend="memory")  # the defaults: max_body_bytes 20 MiB, max_batch_events 10 000
    body = b"[" + b",".join([b'{"event_type":"a"}'] * 1_100_000) + b"]"
    assert len(body) < 20 * 1024**2
    peak, done = [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib())
            time.sleep(0.002)

    with httpx.Client(base_url=live.url, timeout=60) as c:
        assert post(c, [{"event_type": "warm"}] * 20_000).status_code == 413
        before = rss_mib()
        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        try:
            r = c.post("/v1/events", content=body, headers={"content-type": "application/json"})
        finally:
            elapsed = time.perf_counter() - started
            done.set()
            sampler.join()
    assert_error_shape(r, 413, "too_many_events")
    # decoded first, it took 3.8-4.9 s and ~440 MB; refused before decoding: ~0.2 s and about the body's size
    assert peak[0] - before < 120 and elapsed < 2.5, (peak[0] - before, elapsed)
    assert live.app.buffer.backlog_bytes == 0


@one_backend
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_unsupported_content_type_is_415(client: httpx.Client, content_type: str) -> None:
    assert_error_shape(post(client, {"event_type": "x"}, content_type), 415, "unsupported_media_type")


@one_backend
def test_unsupported_content_encoding_is_415(client: httpx.Client) -> None:
    assert_error_shape(post(client, b"xx", **{"content-encoding": "br"}), 415, "unsupported_content_encoding")


def test_buffer_full_is_503_with_retry_after(serve) -> None:
    gate = _BlockedStorage()
    live = serve(storage=gate, buffer__max_bytes=64 * 1024, socket=False)
    c = live.client
    statuses = []
    for i in range(100):
        r = post(c, [{"event_type": "fill", "attributes": {"pad": "x" * 500}}] * 10)
        statuses.append(r.status_code)
        if r.status_code == 503:
            body = assert_error_shape(r, 503, "buffer_full")
            assert int(r.headers["retry-after"]) >= 1 and "retry" in body["message"]
            break
    assert statuses[0] == 200 and statuses[-1] == 503
    accepted = 10 * (len(statuses) - 1)
    assert c.get("/readyz").status_code == 503
    gate.release()
    live.wait_stored(accepted)
    assert gate.inner_count() == accepted


@one_backend
def test_error_shape_for_unknown_route_and_method(client: httpx.Client) -> None:
    assert_error_shape(client.get("/nope"), 404, "not_found")
    r = client.delete("/v1/events")
    assert_error_shape(r, 405, "method_not_allowed")
    assert "POST" in r.headers["allow"] and "GET" in r.headers["allow"]


class _BlockedStorage:
    """A real MemoryStorage whose writes wait until released (a storage outage)."""

    name = "memory"
    persistent = False

    def __init__(self) -> None:
        import threading

        from tea.storage.memory import MemoryStorage
        self._inner = MemoryStorage(max_events=10**6)
        self._open = threading.Event()

    def release(self) -> None:
        self._open.set()

    def inner_count(self) -> int:
        return len(self._inner._events)

    async def open(self) -> None:
        await self._inner.open()

    async def close(self) -> None:
        await self._inner.close()

    async def write_batch(self, batch):
        import asyncio
        while not self._open.is_set():
            await asyncio.sleep(0.01)
        return await self._inner.write_batch(batch)

    async def query_events(self, spec):
        return await self._inner.query_events(spec)

    async def count(self, filter=None):
        return await self._inner.count(filter)

    async def purge_older_than(self, cutoff_us, tenant_ids=None):
        return await self._inner.purge_older_than(cutoff_us, tenant_ids)
