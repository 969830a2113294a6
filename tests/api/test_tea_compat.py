"""The seed TEA's contract (CONTRACTS.md 1.1): both POST /events shapes, GET /events, /health, /tea/."""
from __future__ import annotations

import httpx
import pytest

from tests.conftest import LiveServer, one_backend, wait_for

README_EVENT = {"timestamp": "2024-01-15T10:30:00Z", "event_type": "mcp_request", "tenant_id": "tenant-123",
                "user_id": "user-456", "metadata": {"method": "tools/list", "duration_ms": 45, "status_code": 200,
                                                    "request_size": 1024, "response_size": 2048, "region": "eu"}}
GATEWAY_EVENT = {"event": {"timestamp": 1705314600000, "tool_name": "search", "component_name": "web-tools",
                           "duration_ms": 12.5, "success": False, "request_size": 321,
                           "metadata": {"tenant_id": "client-9", "user_id": "u-1", "auth_provider": "authkit"}}}


@pytest.mark.parametrize("prefix", ["", "/tea"])
def test_readme_shape(client: httpx.Client, server: LiveServer, prefix: str) -> None:
    r = client.post(prefix + "/events", json=README_EVENT)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"event_id", "status", "timestamp"}
    assert body["status"] == "accepted" and body["timestamp"] == "2024-01-15T10:30:00Z"
    server.wait_stored(1)
    listed = client.get(prefix + "/events", params={"tenant_id": "tenant-123"}).json()
    assert listed["total_count"] == 1 and listed["has_more"] is False
    [event] = listed["events"]
    assert event["event_id"] == body["event_id"] and event["event_type"] == "mcp_request"
    assert event["user_id"] == "user-456" and event["timestamp"] == "2024-01-15T10:30:00Z"
    assert event["metadata"] == {"method": "tools/list", "duration_ms": 45, "status_code": 200,
                                 "request_size": 1024, "response_size": 2048, "status": "ok", "region": "eu"}
    native = client.get(f"/v1/events/{body['event_id']}").json()
    assert native["method"] == "tools/list" and native["source_protocol"] == "tea"
    assert native["attributes"] == {"region": "eu"}


def test_readme_example_without_timestamp_or_content_type(client: httpx.Client, server: LiveServer) -> None:
    # the seed README's curl example omits the timestamp
    r = client.post("/events", content=b'{"event_type":"mcp_request","tenant_id":"acme-corp","user_id":"john.doe",'
                                       b'"metadata":{"method":"resources/list","duration_ms":120,"status_code":200}}')
    assert r.status_code == 200 and r.json()["timestamp"].endswith("Z")


def test_gateway_shape_gets_the_mcp_tool_reply(client: httpx.Client, server: LiveServer) -> None:
    r = client.post("/events", json=GATEWAY_EVENT)
    assert r.status_code == 200
    assert r.json() == {"content": [{"type": "text", "text": "Event recorded"}]}
    server.wait_stored(1)
    [event] = client.get("/v1/events", params={"tenant_id": "client-9"}).json()["events"]
    assert event["event_type"] == "tool_invocation" and event["method"] == "search"
    assert event["target"] == "web-tools" and event["status"] == "error" and event["duration_ms"] == 12.5
    assert event["request_size"] == 321 and event["user_id"] == "u-1" and event["protocol"] == "mcp"
    assert event["timestamp"] == "2024-01-15T10:30:00Z" and event["source_protocol"] == "ftl_gateway"
    assert event["attributes"] == {"tool_name": "search", "component_name": "web-tools", "success": False,
                                   "auth_provider": "authkit"}


@one_backend
def test_gateway_bad_body_gets_is_error(client: httpx.Client) -> None:
    r = client.post("/events", json={"event": {"tool_name": "x"}})
    assert r.status_code == 400
    body = r.json()
    assert body["isError"] is True and body["content"][0]["type"] == "text"
    assert body["content"][0]["text"].startswith("Invalid request body: ")


@one_backend
@pytest.mark.parametrize("payload, code", [
    ({"metadata": {}}, "invalid_event"), ({"event_type": "x", "metadata": {"duration_ms": "slow"}}, "invalid_event"),
    ({"event_type": "x", "timestamp": "2999-01-01T00:00:00Z"}, "clock_skew")])
def test_readme_shape_errors(client: httpx.Client, payload: dict, code: str) -> None:
    r = client.post("/events", json=payload)
    assert r.status_code == 400 and r.json()["error"] == code


@one_backend
def test_metadata_field_is_named_in_errors(client: httpx.Client) -> None:
    r = client.post("/events", json={"event_type": "x", "metadata": {"status_code": "OK"}})
    assert r.status_code == 400 and "metadata.status_code" in r.json()["message"]


@pytest.mark.parametrize("params, predicate", [
    ({"user_id": "user3"}, lambda e: e["user_id"] == "user3"),
    ({"event_type": "type1"}, lambda e: e["event_type"] == "type1"),
    ({"tenant_id": "tenant0", "user_id": "user2", "event_type": "type2"},
     lambda e: e["tenant_id"] == "tenant0" and e["user_id"] == "user2" and e["event_type"] == "type2"),
    ({"start_time": "2026-01-01T00:00:10Z", "end_time": "2026-01-01T00:00:20Z"},
     lambda e: 1_767_225_610_000 <= e["timestamp"] < 1_767_225_620_000),
    ({"start_time": "2026-01-01T00:01:50Z"}, lambda e: e["timestamp"] >= 1_767_225_710_000),
    ({"end_time": "2026-01-01T00:00:05Z"}, lambda e: e["timestamp"] < 1_767_225_605_000),
])
def test_seed_query_filters(client: httpx.Client, server: LiveServer, params: dict, predicate) -> None:
    from tests.api.test_query import seed
    events = seed(client, server)
    expected = sorted((e["event_id"] for e in events if predicate(e)), reverse=True)
    assert 0 < len(expected) < len(events)
    for prefix in ("", "/tea"):
        body = client.get(prefix + "/events", params=params).json()
        assert [e["event_id"] for e in body["events"]] == expected
        assert body["total_count"] == len(expected) and body["has_more"] is False
        assert all(set(e) == {"event_id", "timestamp", "event_type", "tenant_id", "user_id", "session_id",
                              "metadata", "tags"} for e in body["events"])


def test_seed_query_limit(client: httpx.Client, server: LiveServer) -> None:
    from tests.api.test_query import seed
    seed(client, server)
    body = client.get("/events", params={"limit": "7", "event_type": "type0"}).json()
    assert [e["event_id"] for e in body["events"]] == [f"ev{i:04d}" for i in range(117, 96, -3)]
    assert body["total_count"] == 40 and body["has_more"] is True
    assert client.get("/events", params={"limit": "40", "event_type": "type0"}).json()["has_more"] is False
    for bad in ("0", "10001", "many"):
        r = client.get("/events", params={"limit": bad})
        assert r.status_code == 400 and r.json()["details"]["parameter"] == "limit"


@one_backend
@pytest.mark.parametrize("text, stored", [("2024-01-15T10:30:00Z", "2024-01-15T10:30:00Z"),
                                          ("2024-01-15T10:30Z", "2024-01-15T10:30:00Z"),
                                          ("20240115T103000Z", "2024-01-15T10:30:00Z"),
                                          ("2024-01-15", "2024-01-15T00:00:00Z")])
def test_readme_shape_takes_iso_8601_timestamps(client: httpx.Client, text: str, stored: str) -> None:
    r = client.post("/events", json={**README_EVENT, "timestamp": text})
    assert r.status_code == 200 and r.json()["timestamp"] == stored


@pytest.mark.parametrize("path", ["/health", "/tea/health"])
def test_health_has_the_seed_fields_and_more(client: httpx.Client, server: LiveServer, path: str) -> None:
    client.post("/v1/events", json=[{"event_type": "x"}] * 3)
    server.wait_stored(3)
    # (buffer_bytes counts the slowest consumer: the processors pass the records just after the writer)
    body = wait_for(lambda: client.get(path).json(), lambda b: b["buffer_bytes"] == 0)
    assert body["status"] == "healthy" and body["version"] == "0.1.0"
    assert isinstance(body["uptime_seconds"], int) and body["events_stored"] == 3
    assert body["storage_backend"] == server.app.storage.name
    assert body["buffer_bytes"] == 0 and body["writer_lag_seconds"] == 0


@one_backend
@pytest.mark.parametrize("path", ["/", "/tea/"])
def test_tool_listing(client: httpx.Client, path: str) -> None:
    [tool] = client.get(path).json()
    assert tool["name"] == "events" and tool["description"] == "Receive metric event from gateway"
    assert "inputSchema" in tool
