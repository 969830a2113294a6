"""telemetry-kit's contract (CONTRACTS.md 1.2): every status path, signatures made by openssl."""
from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.auth.conftest import create_token
from tests.auth.test_audit import audit
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
    client.token_id = issued["token_id"]  # type: ignore[attr-defined]
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


def test_the_event_schema_maps_into_the_canonical_event(tk: Client) -> None:
    sent = tk_event(7, session_id="sess_" + "c" * 32)
    assert tk.post({"events": [sent]}).status_code == 200
    tk.live.wait_stored(1)  # type: ignore[attr-defined]
    stored = httpx.get(f"{tk.url}/v1/events/{sent['event_id']}", headers={"authorization": f"Bearer {tk.token}"})
    event = stored.json()
    assert (event["event_id"], event["timestamp"]) == (sent["event_id"], "2026-11-22T06:00:00Z")
    assert event["user_id"] == "client_" + "ab" * 32 and event["session_id"] == "sess_" + "c" * 32
    assert (event["source"], event["event_type"], event["organization"]) == ("my-cli", "command_execution", ORG)
    assert event["attributes"] == {
        "category": "usage", "data": {"command": "build", "i": 7}, "schema_version": "1.0.0",
        "service": {"version": "1.2.3", "language": "rust", "language_version": "1.75.0"},
        "environment": {"os": "linux", "os_version": None, "arch": "x86_64", "ci": False, "shell": None},
        "metadata": sent["metadata"], "org_id": ORG, "app_id": APP}


@pytest.mark.parametrize("drop, message", [("x-signature", "Missing X-Signature header"),
                                           ("x-timestamp", "Missing X-Timestamp header"),
                                           ("x-nonce", "Missing X-Nonce header")])
def test_missing_signature_headers_are_401(tk: Client, drop: str, message: str) -> None:
    r = tk.post({"events": [tk_event()]}, drop=(drop,))
    assert r.status_code == 401 and r.json() == {"error": "Unauthorized", "message": message}


def test_each_check_in_order(tk: Client) -> None:
    body = {"events": [tk_event()]}
    r = tk.post(b'{"events": [\xff]}')
    assert (r.status_code, r.json()) == (400, {"error": "Bad Request", "message": "Invalid UTF-8 in body"})
    unauthorized = {"error": "Unauthorized", "message": "Missing or invalid Authorization header"}
    r = tk.post(body, drop=("authorization",))
    assert (r.status_code, r.json()) == (401, unauthorized)
    r = tk.post(body, headers={"authorization": f"Basic {tk.token}"})
    assert (r.status_code, r.json()) == (401, unauthorized)
    r = tk.post(body, token="tk_" + "0" * 32 + "_" + "x" * 32)
    assert (r.status_code, r.json()) == (401, {"error": "Unauthorized", "message": "Invalid token"})
    r = tk.post(body, signature="f" * 64)
    assert (r.status_code, r.json()) == (401, {"error": "Unauthorized", "message": "Invalid HMAC signature"})
    r = tk.post(body, ts="yesterday")
    assert (r.status_code, r.json()) == (400, {"error": "Bad Request", "message": "Invalid timestamp format"})
    outside = {"error": "Forbidden", "message": "Timestamp outside acceptable window"}
    for skew in (-700, 700):  # the window is ±600 s: the past and the future
        r = tk.post(body, ts=str(int(time.time()) + skew))
        assert (r.status_code, r.json()) == (403, outside)
    nonce = str(uuid.uuid4())
    assert tk.post({"events": [tk_event()]}, nonce=nonce).status_code == 200
    r = tk.post({"events": [tk_event()]}, nonce=nonce)
    assert (r.status_code, r.json()) == (409, {"error": "Conflict", "message": "Duplicate nonce detected"})


MISMATCH = {"error": "Forbidden", "message": "Token does not match org_id/app_id"}


def test_token_must_be_bound_to_the_paths_org_and_app(tk: Client) -> None:
    body = {"events": [tk_event()]}
    r = tk.post(body, path=f"/v1/ingest/{uuid.uuid4()}/{APP}")                     # another org
    assert (r.status_code, r.json()) == (403, MISMATCH)
    r = tk.post(body, path=f"/v1/ingest/{ORG}/{uuid.uuid4()}")                     # another app
    assert (r.status_code, r.json()) == (403, MISMATCH)
    assert tk.post(body).status_code == 200


def test_tokens_bound_to_no_org_or_to_an_org_only(tk: Client) -> None:
    body = {"events": [tk_event()]}
    unbound = create_token(tk.url, "acme", "free")
    client = Client(tk.url, unbound["token"], unbound["secret"])
    for path in (PATH, f"/v1/ingest/{uuid.uuid4()}/{uuid.uuid4()}"):
        r = client.post(body, path=path)
        assert (r.status_code, r.json()) == (403, MISMATCH)
    org_only = create_token(tk.url, "acme", "free", org_id=ORG)
    client = Client(tk.url, org_only["token"], org_only["secret"])
    assert client.post(body, path=f"/v1/ingest/{ORG}/{uuid.uuid4()}").status_code == 200  # any app of its org
    r = client.post(body, path=f"/v1/ingest/{uuid.uuid4()}/{APP}")
    assert (r.status_code, r.json()) == (403, MISMATCH)


def test_refused_credentials_are_audited_with_the_token_id_and_counted(tk: Client) -> None:
    body = {"events": [tk_event()]}
    assert tk.post(body, signature="0" * 64).status_code == 401
    assert tk.post(body, ts=str(int(time.time()) - 3600)).status_code == 403
    assert tk.post(body, ts="soon").status_code == 400
    nonce = str(uuid.uuid4())
    assert tk.post(body, nonce=nonce).status_code == 200
    assert tk.post(body, nonce=nonce).status_code == 409
    assert tk.post(body, token="tk_" + "0" * 40).status_code == 401
    failures = [f for f in audit(tk.url, action="auth_failure") if f["details"]["path"] == PATH]
    assert sorted((f["details"]["status"], f["reason"], f["details"].get("token_id")) for f in failures) == sorted([
        ("401", "Invalid HMAC signature", tk.token_id), ("403", "Timestamp outside acceptable window", tk.token_id),
        ("400", "Invalid timestamp format", tk.token_id), ("409", "Duplicate nonce detected", tk.token_id),
        ("401", "Invalid token", None)])
    assert all(f["details"]["auth_method"] == "hmac" for f in failures)
    scrape = httpx.get(tk.url + "/metrics").text
    assert 'tea_auth_attempts_total{method="hmac",result="failure"} 5.0' in scrape
    assert 'tea_auth_attempts_total{method="hmac",result="success"} 1.0' in scrape


def test_a_read_only_token_cannot_ingest(tk: Client) -> None:
    reader = create_token(tk.url, "acme", "free", org_id=ORG, app_id=APP, scopes=["events:read"])
    r = Client(tk.url, reader["token"], reader["secret"]).post({"events": [tk_event()]})
    assert (r.status_code, r.json()) == (403, {"error": "Forbidden", "message": "Token lacks the events:write scope"})


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "Invalid JSON: "), (json.dumps({"events": [{"schema_version": "1.0.0"}]}).encode(), "Invalid JSON: ")])
def test_unparsable_batches_are_400(tk: Client, body: bytes, fragment: str) -> None:
    r = tk.post(body)
    assert r.status_code == 400 and r.json()["error"] == "Bad Request" and r.json()["message"].startswith(fragment)


@pytest.mark.parametrize("body, message", [
    (b'{"events": []}', "Batch must contain at least one event"),
    (json.dumps({"events": [tk_event()] * 1001}).encode(), "Batch size exceeds maximum of 1000 events")])
def test_batch_level_errors_are_400_with_upstreams_messages(tk: Client, body: bytes, message: str) -> None:
    r = tk.post(body)
    assert (r.status_code, r.json()) == (400, {"error": "Bad Request", "message": message})


def test_batch_size_header_must_match_when_it_is_a_number(tk: Client) -> None:
    r = tk.post({"events": [tk_event(), tk_event()]}, headers={"x-batch-size": "3"})
    assert (r.status_code, r.json()) == (400, {"error": "Bad Request",
                                               "message": "X-Batch-Size header does not match actual batch size"})
    for ignored in ("two", "-2", "2.0", "99999999999999999999999"):  # upstream: parse::<usize>().ok() → ignored
        assert tk.post({"events": [tk_event(), tk_event()]}, headers={"x-batch-size": ignored}).status_code == 200
    assert tk.post({"events": [tk_event(), tk_event()]}, headers={"x-batch-size": "+2"}).status_code == 200


def test_dnt_is_204_and_nothing_stored(tk: Client) -> None:
    r = tk.post({"events": [tk_event()]}, headers={"dnt": "1"})
    assert r.status_code == 204 and r.content == b""
    time.sleep(0.2)
    assert httpx.get(tk.url + "/v1/events", headers={"authorization": f"Bearer {tk.token}"}).json()["total_count"] == 0


def test_a_thousand_events_with_bad_ones_is_207_with_the_exact_errors(tk: Client) -> None:
    events = [tk_event(i) for i in range(1000)]
    bad = {10: ("schema_version", "2.0.0", "unsupported_schema", "Unsupported schema version: 2.0.0"),
           20: ("service", {"name": "", "version": "1", "language": "rust"}, "invalid_schema",
                "Missing required field: service.name"),
           30: ("service", {"name": "x", "version": "", "language": "rust"}, "invalid_schema",
                "Missing required field: service.version"),
           40: ("user_id", "anon_123", "invalid_schema", "User ID must start with 'client_'")}
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


def test_duplicate_follows_storages_dedup_match(secure) -> None:
    """same_time (the default): an event_id sent again at another time is a new event, as storage keeps it;
    window: a duplicate, stored or still in the buffer. A resend of the same event is a duplicate either way."""
    for match, second_time_stored in (("same_time", True), ("window", False)):
        live = secure(storage_backend="duckdb", telemetry_kit__duplicates="reject", storage__dedup_match=match)
        issued = create_token(live.url, f"acme-{match}", "enterprise", org_id=ORG, app_id=APP)
        client = Client(live.url, issued["token"], issued["secret"])
        first = [tk_event(i) for i in range(3)]
        assert client.post({"events": first}).status_code == 200
        live.wait_stored(3)
        later = [dict(e, timestamp="2026-11-22T06:05:00Z") for e in first[:2]]
        resent = client.post({"events": later + first[2:]})  # two at another time, one resent as it was
        assert resent.status_code == 207 if second_time_stored else 400, resent.text
        assert [e["event_id"] for e in resent.json()["errors"]] == \
            [e["event_id"] for e in (first[2:] if second_time_stored else first)]
        fresh = [dict(e, timestamp="2026-11-22T06:10:00Z") for e in first[:1]]  # before the writer stores it
        again = client.post({"events": fresh + fresh})
        assert again.status_code == 207 if second_time_stored else 400, again.text
        live.wait_stored(6 if second_time_stored else 3)
        listed = httpx.get(live.url + "/v1/events", headers={"authorization": f"Bearer {issued['token']}"}).json()
        assert sorted((e["event_id"], e["timestamp"]) for e in listed["events"]) == sorted(
            [(e["event_id"], "2026-11-22T06:00:00Z") for e in first]
            + ([(e["event_id"], "2026-11-22T06:05:00Z") for e in first[:2]] + [(first[0]["event_id"],
                                                                               "2026-11-22T06:10:00Z")]
               if second_time_stored else []))
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


def test_every_event_rejected_is_400_with_upstreams_body(tk: Client) -> None:
    events = [tk_event(0, schema_version="2.0.0"), tk_event(1, user_id="anon_1")]
    r = tk.post({"events": events})
    assert r.status_code == 400
    assert r.json() == {"error": "bad_request", "message": "All events rejected", "errors": [
        {"event_id": events[0]["event_id"], "error": "unsupported_schema", "message": "Unsupported schema version: 2.0.0"},
        {"event_id": events[1]["event_id"], "error": "invalid_schema", "message": "User ID must start with 'client_'"}]}


def test_an_event_far_in_the_future_is_refused_as_clock_skew(tk: Client) -> None:
    events = [tk_event(0), tk_event(1, timestamp="2099-01-01T00:00:00Z")]
    r = tk.post({"events": events})
    assert r.status_code == 207
    [error] = r.json()["errors"]
    assert (error["event_id"], error["error"]) == (events[1]["event_id"], "clock_skew")


def test_teas_event_limits_answer_in_upstreams_429_shape(secure) -> None:
    live = secure(storage_backend="memory", tier__free__requests_per_minute=100, tier__free__events_per_minute=5,
                  tier__free__events_per_month=0)
    issued = create_token(live.url, "acme", "free", org_id=ORG, app_id=APP)
    client = Client(live.url, issued["token"], issued["secret"])
    assert client.post({"events": [tk_event(i) for i in range(3)]}).status_code == 200
    r = client.post({"events": [tk_event(i) for i in range(3)]})  # 6 events within the minute: over 5
    assert r.status_code == 429
    assert set(r.json()) == {"error", "message", "retry_after"}
    assert r.json()["error"] == "rate_limit_exceeded" and r.json()["message"] == "Rate limit exceeded for this token"
    assert r.json()["retry_after"] >= 1 and r.headers["retry-after"] == str(r.json()["retry_after"])
    assert r.headers["x-ratelimit-remaining"] == "0" and r.headers["x-ratelimit-limit"] and r.headers["x-ratelimit-reset"]


def test_the_monthly_quota_answers_in_upstreams_429_shape(secure) -> None:
    live = secure(storage_backend="memory", tier__free__requests_per_minute=100, tier__free__events_per_minute=0,
                  tier__free__events_per_month=2)
    issued = create_token(live.url, "acme", "free", org_id=ORG, app_id=APP)
    client = Client(live.url, issued["token"], issued["secret"])
    assert client.post({"events": [tk_event(0), tk_event(1)]}).status_code == 200
    r = client.post({"events": [tk_event(2)]})
    assert r.status_code == 429 and r.json()["message"] == "Rate limit exceeded for this token"
    assert r.json()["error"] == "rate_limit_exceeded" and r.headers["x-ratelimit-remaining"] == "0"
    assert r.headers["retry-after"] == str(r.json()["retry_after"])


def test_a_full_durable_buffer_is_503_for_the_whole_request(secure) -> None:
    live = secure(storage_backend="memory", buffer__max_bytes=4096)  # the smallest bound: 20 events exceed it
    issued = create_token(live.url, "acme", "enterprise", org_id=ORG, app_id=APP)
    client = Client(live.url, issued["token"], issued["secret"])
    events = [tk_event(i) for i in range(20)]
    r = client.post({"events": events})
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "Service Unavailable" and "durable buffer is full" in r.json()["message"]
    assert int(r.headers["retry-after"]) >= 1
    time.sleep(0.2)
    listed = httpx.get(live.url + "/v1/events", headers={"authorization": f"Bearer {issued['token']}"}).json()
    assert listed["total_count"] == 0  # nothing of the request was acknowledged, nothing stored
