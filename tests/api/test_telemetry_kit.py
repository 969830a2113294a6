"""telemetry-kit's contract (CONTRACTS.md 1.2): every status path, signatures made by openssl."""
from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.auth.conftest import create_token
from tests.auth.test_tokens_and_signing import openssl_signature

ORG = "550e8400-e29b-41d4-a716-446655440000"
APP = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
PATH = f"/v1/ingest/{ORG}/{APP}"


def tk_event(i: int = 0, **overrides) -> dict:  # type: ignore[no-untyped-def]
    event = {"schema_version": "1.0.0", "event_id": str(uuid.uuid4()), "timestamp": "2026-11-22T06:00:00Z",
             "service": {"name": "my-cli", "version": "1.2.3", "language": "rust", "language_version": "1.75.0"},
             "user_id": "client_" + "ab" * 32, "session_id": "sess_" + uuid.uuid4().hex,
             "environment": {"os": "linux", "arch": "x86_64", "ci": False},
             "event": {"type": "command_execution", "category": "usage", "data": {"command": "build", "i": i}},
             "metadata": {"sdk_version": "telemetry-kit-rust/0.2.0", "transmission_timestamp": "2026-11-22T06:00:01Z",
                          "batch_size": 1, "retry_count": 0}}
    event.update(overrides)
    return event


class Client:
    def __init__(self, url: str, token: str, secret: str) -> None:
        self.url, self.token, self.secret = url, token, secret

    def post(self, body: bytes | dict, *, path: str = PATH, ts: str | None = None, nonce: str | None = None,
             drop: tuple[str, ...] = (), headers: dict | None = None, token: str | None = None,
             signature: str | None = None) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        ts = ts if ts is not None else str(int(time.time()))
        nonce = nonce if nonce is not None else str(uuid.uuid4())
        sent = {"authorization": f"Bearer {token or self.token}", "content-type": "application/json",
                "x-timestamp": ts, "x-nonce": nonce,
                "x-signature": signature or openssl_signature(self.secret, f"{ts}:{nonce}:".encode() + raw),
                "x-sdk-version": "telemetry-kit-rust/0.2.0", "x-schema-version": "1.0.0", **(headers or {})}
        for name in drop:
            sent.pop(name, None)
        return httpx.post(self.url + path, content=raw, headers=sent)


@pytest.fixture
def tk(secure) -> Client:  # type: ignore[no-untyped-def]
    live = secure(storage_backend="duckdb", tier__free__requests_per_minute=1000)
    issued = create_token(live.url, "acme", "free", org_id=ORG, app_id=APP)
    client = Client(live.url, issued["token"], issued["secret"])
    client.live = live  # type: ignore[attr-defined]
    return client


def test_all_accepted_is_200_with_rate_limit_headers(tk: Client) -> None:
    r = tk.post({"events": [tk_event(i) for i in range(3)]}, headers={"x-batch-size": "3"})
    assert r.status_code == 200
    assert r.json() == {"status": "success", "accepted": 3, "rejected": 0, "message": "All events ingested successfully"}
    assert r.headers["x-ratelimit-limit"] == "1000" and "x-ratelimit-remaining" in r.headers
    tk.live.wait_stored(3)  # type: ignore[attr-defined]
    [event] = httpx.get(tk.url + "/v1/events", params={"limit": "1"},
                        headers={"authorization": f"Bearer {tk.token}"}).json()["events"]
    assert event["source"] == "my-cli" and event["event_type"] == "command_execution"
    assert event["organization"] == ORG and event["source_protocol"] == "telemetry_kit"
    assert event["attributes"]["app_id"] == APP and event["attributes"]["category"] == "usage"
    assert event["attributes"]["environment"]["os"] == "linux"


@pytest.mark.parametrize("drop, message", [("x-signature", "Missing X-Signature header"),
                                           ("x-timestamp", "Missing X-Timestamp header"),
                                           ("x-nonce", "Missing X-Nonce header")])
def test_missing_signature_headers_are_401(tk: Client, drop: str, message: str) -> None:
    r = tk.post({"events": [tk_event()]}, drop=(drop,))
    assert r.status_code == 401 and r.json() == {"error": "Unauthorized", "message": message}


def test_each_check_in_order(tk: Client) -> None:
    body = {"events": [tk_event()]}
    assert tk.post(b'{"events": [\xff]}').status_code == 400                       # not UTF-8
    r = tk.post(body, drop=("authorization",))
    assert r.status_code == 401
    r = tk.post(body, token="tk_" + "0" * 32 + "_" + "x" * 32)
    assert (r.status_code, r.json()["message"]) == (401, "Invalid token")
    r = tk.post(body, signature="f" * 64)
    assert (r.status_code, r.json()["message"]) == (401, "Invalid HMAC signature")
    r = tk.post(body, ts="yesterday")
    assert r.status_code == 400
    r = tk.post(body, ts=str(int(time.time()) - 700))
    assert (r.status_code, r.json()["message"]) == (403, "Timestamp outside acceptable window")
    nonce = str(uuid.uuid4())
    assert tk.post({"events": [tk_event()]}, nonce=nonce).status_code == 200
    r = tk.post({"events": [tk_event()]}, nonce=nonce)
    assert (r.status_code, r.json()) == (409, {"error": "Conflict", "message": "Duplicate nonce detected"})
    r = tk.post(body, path=f"/v1/ingest/{uuid.uuid4()}/{APP}")
    assert (r.status_code, r.json()["message"]) == (403, "Token does not match org_id/app_id")


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "Invalid JSON"), (b'{"events": []}', "at least one event"),
    (json.dumps({"events": [tk_event()] * 1001}).encode(), "Batch too large"),
    (json.dumps({"events": [{"schema_version": "1.0.0"}]}).encode(), "Invalid JSON")])
def test_batch_level_errors_are_400(tk: Client, body: bytes, fragment: str) -> None:
    r = tk.post(body)
    assert r.status_code == 400 and r.json()["error"] == "Bad Request" and fragment in r.json()["message"]


def test_batch_size_header_must_match(tk: Client) -> None:
    r = tk.post({"events": [tk_event(), tk_event()]}, headers={"x-batch-size": "3"})
    assert r.status_code == 400 and "X-Batch-Size" in r.json()["message"]


def test_dnt_is_204_and_nothing_stored(tk: Client) -> None:
    r = tk.post({"events": [tk_event()]}, headers={"dnt": "1"})
    assert r.status_code == 204 and r.content == b""
    time.sleep(0.2)
    assert httpx.get(tk.url + "/v1/events", headers={"authorization": f"Bearer {tk.token}"}).json()["total_count"] == 0


def test_a_thousand_events_with_bad_ones_is_207_with_the_exact_errors(tk: Client) -> None:
    events = [tk_event(i) for i in range(1000)]
    bad = {10: ("schema_version", "2.0.0", "unsupported_schema", "Unsupported schema version: 2.0.0"),
           20: ("service", {"name": "", "version": "1", "language": "rust"}, "invalid_schema",
                "service.name is required"),
           30: ("service", {"name": "x", "version": "", "language": "rust"}, "invalid_schema",
                "service.version is required"),
           40: ("user_id", "anon_123", "invalid_schema", "user_id must start with 'client_'")}
    for index, (field, value, _, _) in bad.items():
        events[index][field] = value
    events[50]["event_id"] = events[49]["event_id"]  # repeated inside the batch
    r = tk.post({"events": events}, headers={"x-batch-size": "1000"})
    assert r.status_code == 207
    body = r.json()
    assert body["status"] == "partial" and body["accepted"] == 996 and body["rejected"] == 4
    assert body["errors"] == [{"event_id": events[i]["event_id"], "error": code, "message": message}
                              for i, (_, _, code, message) in sorted(bad.items())]


def test_retried_batch_duplicates_accept_mode_and_reject_mode(secure) -> None:
    for mode, expected in (("accept", 200), ("reject", 400)):
        live = secure(storage_backend="duckdb", telemetry_kit__duplicates=mode)
        issued = create_token(live.url, f"acme-{mode}", "enterprise", org_id=ORG, app_id=APP)
        client = Client(live.url, issued["token"], issued["secret"])
        events = [tk_event(i) for i in range(5)]
        assert client.post({"events": events}).status_code == 200
        live.wait_stored(5)
        again = client.post({"events": events})  # the SDK retries after a lost answer: new nonce, same events
        assert again.status_code == expected, again.text
        if mode == "reject":
            assert again.json()["message"] == "All events rejected"
            assert {e["error"] for e in again.json()["errors"]} == {"duplicate"}
        time.sleep(0.2)
        listed = httpx.get(live.url + "/v1/events", headers={"authorization": f"Bearer {issued['token']}"}).json()
        assert listed["total_count"] == 5  # stored once either way
        live.stop()


def test_rate_limit_429_body_and_headers(secure) -> None:
    live = secure(storage_backend="memory", tier__free__requests_per_minute=2)
    issued = create_token(live.url, "acme", "free", org_id=ORG, app_id=APP)
    client = Client(live.url, issued["token"], issued["secret"])
    statuses = [client.post({"events": [tk_event()]}) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    body = statuses[2].json()
    assert set(body) == {"error", "message", "retry_after"} and body["error"] == "rate_limit_exceeded"
    assert body["message"] == "Rate limit exceeded for this token"
    assert statuses[2].headers["retry-after"] and statuses[2].headers["x-ratelimit-remaining"] == "0"
