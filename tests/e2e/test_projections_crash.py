"""kill -9 between the events' commit and the processors' run: after a restart every derived row — the seed
analytics tables (otel_analytics) and the registry activity counts (communication_activity) — exists exactly
once, and resending the same requests changes nothing."""
from __future__ import annotations

import random
import signal
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import stored_keys

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HOLD = {"TEA_PROCESSING__BATCH_SIZE": "1000000", "TEA_PROCESSING__BATCH_TIMEOUT_MS": "3600000"}  # processors wait
QUICK = {"TEA_PROCESSING__BATCH_TIMEOUT_MS": "50", "TEA_WRITER__FLUSH_INTERVAL_MS": "50"}


def spans_body(trace: str, count: int) -> dict[str, Any]:
    """An OTLP/HTTP JSON request of ``count`` spans shaped as the seed's producers send endpoint usage."""
    now = time.time_ns()
    spans = [{"traceId": trace, "spanId": f"{i + 1:016x}", "name": "http.GET./api/tests", "kind": 2,
              "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 5_000_000),
              "attributes": [{"key": "event.category", "value": {"stringValue": "endpoint_usage"}},
                             {"key": "http.method", "value": {"stringValue": "GET"}},
                             {"key": "http.route", "value": {"stringValue": "/api/tests"}},
                             {"key": "http.status_code", "value": {"intValue": "200"}},
                             {"key": "user.id", "value": {"stringValue": "a1b2c3d4e5f6a7b8"}}]}
             for i in range(count)]
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name",
                                                            "value": {"stringValue": "rhesis-backend"}}]},
                               "scopeSpans": [{"scope": {"name": "rhesis"}, "spans": spans}]}]}


def calls(count: int) -> list[dict[str, Any]]:
    return [{"id": str(uuid.uuid4()), "protocol": "mcp", "source_id": "team-a", "source_type": "team",
             "target_id": "github", "target_type": "mcp", "operation": "tool_call",
             "status": "error" if i % 4 == 0 else "success"} for i in range(count)]


def register(url: str) -> None:
    for entity in ({"entity_id": "team-a", "entity_type": "team", "entity_name": "A"},
                   {"entity_id": "github", "entity_type": "mcp_server", "entity_name": "GitHub"}):
        assert httpx.post(url + "/v1/registry", json=entity).status_code in (200, 201)


def derived(url: str, consistency: str = "read_your_writes") -> tuple[int, int, int]:
    """endpoint_usage rows, team-a's activity_count, github's activity_count (``eventual``: as stored now,
    without the read hurrying the processors)."""
    headers = {"TEA-Consistency": consistency}
    [_, endpoint, _] = httpx.get(url + "/v1/analytics/summary", headers=headers).json()["rows"]
    team = httpx.get(url + "/v1/registry/team/team-a", headers=headers).json()
    github = httpx.get(url + "/v1/registry/mcp_server/github", headers=headers).json()
    return endpoint["count"], team["activity_count"], github["activity_count"]


def processed(url: str, timeout_s: float = 120) -> dict[str, Any]:
    """Wait until every consumer of the log (writer, processors) has passed everything; /health then."""
    deadline = time.monotonic() + timeout_s
    while True:
        health = httpx.get(url + "/health", timeout=30).json()
        if all(c["lag_events"] == 0 for c in health["consumers"].values()) and health["buffer_bytes"] == 0:
            return health
        assert time.monotonic() < deadline, f"consumers did not catch up: {health['consumers']}"
        time.sleep(0.1)


def test_sigkill_after_the_commit_before_the_processors_ran(tea_process) -> None:
    server = tea_process(**HOLD).start()
    register(server.url)
    body = spans_body("5b8efff798038103d269b633813fc60c", 10)
    for _ in range(3):  # the same request, three times
        assert httpx.post(server.url + "/v1/traces", json=body).status_code == 200
    sent = calls(20)
    assert httpx.post(server.url + "/v1/communications", json=sent).status_code == 200
    deadline = time.monotonic() + 60
    while (health := httpx.get(server.url + "/health").json())["consumers"]["writer"]["lag_events"] or \
            health["events_stored"] < 30:
        assert time.monotonic() < deadline, health
        time.sleep(0.05)
    assert health["events_stored"] == 30 and health["duplicates_skipped"] == 20  # 10 spans, 20 calls, once each
    assert health["consumers"]["otel_analytics"]["lag_events"] == 50  # 30 spans (resends included), 20 calls
    assert derived(server.url, "eventual") == (0, 0, 0)  # committed, not processed yet: now is the moment
    server.signal(signal.SIGKILL)
    server.wait(30)

    again = tea_process(**QUICK).start()
    processed(again.url)
    assert derived(again.url) == (10, 20, 20)
    errors = httpx.get(again.url + "/v1/registry/team/team-a").json()["error_count"]
    assert errors == 5

    assert httpx.post(again.url + "/v1/traces", json=body).status_code == 200  # resent once more
    assert httpx.post(again.url + "/v1/communications", json=sent[:7]).status_code == 200
    processed(again.url)
    assert derived(again.url) == (10, 20, 20)


def test_sigkill_at_random_moments_never_loses_or_doubles_derived_rows(tea_process) -> None:
    """Spans and calls flow while TEA is killed at random moments (bounded: 4 kills within about a minute);
    clients resend what was not acknowledged. Afterwards the derived rows match the stored events exactly."""
    server = tea_process(**QUICK).start()
    register(server.url)
    rng = random.Random(16)
    stop = threading.Event()
    up = threading.Event()
    up.set()
    failures: list[str] = []

    def client() -> None:
        n = 0
        with httpx.Client(timeout=10) as http:
            while not stop.is_set() and n < 2000:
                n += 1
                requests = [("/v1/traces", spans_body(f"{n:032x}", 20)), ("/v1/communications", calls(5))]
                for path, body in requests:
                    while not stop.is_set():
                        up.wait(60)
                        try:
                            r = http.post(current[0] + path, json=body)
                        except httpx.TransportError:
                            time.sleep(0.05)
                            continue  # killed: resend the same request to the next process
                        if r.status_code == 200:
                            break
                        if r.status_code != 503:
                            failures.append(f"{path}: {r.status_code} {r.text[:200]}")
                            return
                        time.sleep(0.05)

    current = [server.url]
    thread = threading.Thread(target=client)
    thread.start()
    for _ in range(4):
        time.sleep(rng.uniform(0.3, 2.0))
        up.clear()
        server.signal(signal.SIGKILL)
        server.wait(30)
        server = tea_process(**QUICK).start()
        current[0] = server.url
        up.set()
    time.sleep(1.0)
    stop.set()
    thread.join(60)
    assert not failures, failures
    processed(server.url)
    spans = stored_keys(server.url, event_type="span")
    comms = stored_keys(server.url, event_type="communication")
    assert max(spans.values()) == 1 and max(comms.values()) == 1 and len(spans) >= 20
    assert derived(server.url) == (len(spans), len(comms), len(comms))
