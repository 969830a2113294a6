"""GET /v1/events and /v1/events/{event_id} over real HTTP."""
from __future__ import annotations

import httpx
import pytest

from tests.api.test_ingest import assert_error_shape
from tests.conftest import LiveServer, one_backend


def seed(client: httpx.Client, server: LiveServer, n: int = 120) -> list[dict]:
    events = [{"event_type": f"type{i % 3}", "event_id": f"ev{i:04d}", "tenant_id": f"tenant{i % 2}",
               "user_id": f"user{i % 4}", "source": f"src{i % 5}", "method": f"m{i % 2}",
               "status": "error" if i % 10 == 0 else "ok", "trace_id": f"tr{i % 3}", "correlation_id": f"c{i % 7}",
               "timestamp": 1_767_225_600_000 + i * 1000} for i in range(n)]
    assert client.post("/v1/events", json=events).status_code == 200
    server.wait_stored(n)
    return events


@pytest.mark.parametrize("params, predicate", [
    ({}, lambda e: True),
    ({"tenant_id": "tenant1"}, lambda e: e["tenant_id"] == "tenant1"),
    ({"user_id": "user3", "event_type": "type0"}, lambda e: e["user_id"] == "user3" and e["event_type"] == "type0"),
    ({"source": "src2", "method": "m0"}, lambda e: e["source"] == "src2" and e["method"] == "m0"),
    ({"status": "error"}, lambda e: e["status"] == "error"),
    ({"trace_id": "tr1", "correlation_id": "c3"}, lambda e: e["trace_id"] == "tr1" and e["correlation_id"] == "c3"),
    ({"start_time": "2026-01-01T00:00:10Z", "end_time": "2026-01-01T00:00:20Z"},
     lambda e: 1_767_225_610_000 <= e["timestamp"] < 1_767_225_620_000),
    ({"start_time": "1767225650000"}, lambda e: e["timestamp"] >= 1_767_225_650_000),
])
def test_filters(client: httpx.Client, server: LiveServer, params: dict, predicate) -> None:
    events = seed(client, server)
    body = client.get("/v1/events", params={**params, "limit": "1000"}).json()
    expected = sorted((e["event_id"] for e in events if predicate(e)), reverse=True)
    assert [e["event_id"] for e in body["events"]] == expected
    assert body["total_count"] == len(expected) and body["has_more"] is False and body["next_cursor"] is None


@pytest.mark.parametrize("path", ["/v1/events", "/events", "/tea/events"])
def test_the_default_page_is_100_events(client: httpx.Client, server: LiveServer, path: str) -> None:
    seed(client, server, 150)
    body = client.get(path).json()
    assert len(body["events"]) == 100 and body["has_more"] is True and body["total_count"] == 150
    assert [e["event_id"] for e in body["events"]] == [f"ev{i:04d}" for i in range(149, 49, -1)]


def test_cursor_pagination_walks_every_event_once(client: httpx.Client, server: LiveServer) -> None:
    events = seed(client, server)
    seen: list[str] = []
    params = {"limit": "13"}
    for _ in range(50):
        page = client.get("/v1/events", params=params).json()
        assert page["total_count"] == len(events)
        seen += [e["event_id"] for e in page["events"]]
        if not page["has_more"]:
            break
        params = {"limit": "13", "cursor": page["next_cursor"]}
    assert seen == sorted((e["event_id"] for e in events), reverse=True)


def test_event_view_shape(client: httpx.Client, server: LiveServer) -> None:
    seed(client, server, 3)
    event = client.get("/v1/events", params={"limit": "1"}).json()["events"][0]
    assert event["timestamp"] == "2026-01-01T00:00:02Z" and event["received_at"].endswith("Z")
    assert set(event) >= {"event_id", "tenant_id", "event_type", "attributes", "tags", "duration_ms", "cost"}


def test_get_one_event(client: httpx.Client, server: LiveServer) -> None:
    seed(client, server, 5)
    r = client.get("/v1/events/ev0003")
    assert r.status_code == 200 and r.json()["event_id"] == "ev0003" and r.json()["tenant_id"] == "tenant1"
    assert client.get("/v1/events/ev0003", params={"tenant_id": "tenant0"}).status_code == 404
    body = assert_error_shape(client.get("/v1/events/nope"), 404, "event_not_found")
    assert body["details"] == {"event_id": "nope"}


@one_backend
@pytest.mark.parametrize("params, name", [
    ({"limit": "0"}, "limit"), ({"limit": "10001"}, "limit"), ({"limit": "ten"}, "limit"),
    ({"start_time": "yesterday"}, "start_time"), ({"end_time": "2026-13-01T00:00:00Z"}, "end_time"),
    ({"start_time": "2026-01-02T00:00:00Z", "end_time": "2026-01-01T00:00:00Z"}, "end_time"),
    ({"cursor": "!!!"}, "cursor"), ({"cursor": "AAAA"}, "cursor"), ({"tenant": "x"}, "tenant"),
    ({"user_id": ""}, "user_id"),
])
def test_bad_parameters_are_400_naming_the_parameter(client: httpx.Client, params: dict, name: str) -> None:
    body = assert_error_shape(client.get("/v1/events", params=params), 400, "invalid_parameter")
    assert body["details"]["parameter"] == name and name in body["message"]
