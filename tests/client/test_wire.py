"""What the sender thread puts on the wire: ids, timestamps, columns and attributes, request signing."""
from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from datetime import datetime, timezone

import msgspec
import pytest

from tea_client import _wire
from tea_client.transport import normalise_endpoint, parse_retry_after, sign


def test_uuid7_has_version_variant_and_the_events_millisecond() -> None:
    t = 1795341600.123456
    ids = [_wire.uuid7(t) for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:50]:
        u = uuid.UUID(value)
        assert u.version == 7 and u.variant == uuid.RFC_4122 and str(u) == value
        assert int(value.replace("-", "")[:12], 16) == int(t * 1000)
    later = _wire.uuid7(t + 0.002)
    assert later > max(ids)  # time-ordered as strings too


def test_a_batchs_ids_are_uuid7s_of_its_millisecond_unique_and_ordered() -> None:
    ids = _wire.Ids()
    now = 1795341600.123456
    first, second = ids(3000, now), ids(3000, now)  # one millisecond: the counter goes on
    later = ids(10, now + 0.002)
    every = first + second + later
    assert len(set(every)) == len(every) and first == sorted(first) and max(first) < min(second)
    assert max(second) < min(later)
    for value in every[:50] + every[-50:]:
        u = uuid.UUID(value)
        assert u.version == 7 and u.variant == uuid.RFC_4122 and str(u) == value
    assert {int(v.replace("-", "")[:12], 16) for v in first} == {int(now * 1000)}
    other = _wire.Ids()(3000, now)  # another client (or process) in the same millisecond: other ids
    assert not set(other) & set(first + second)


def test_events_of_a_batch_get_its_ids_unless_they_name_their_own() -> None:
    enc = _wire.Encoder({}, 1 << 20, lambda n, m: None)
    items = [(_wire.EVENTS, 1.5, "x", {"i": i}) for i in range(5)] + [(_wire.EVENTS, 1.5, "x", {"event_id": "mine"})]
    [(_, body, count)] = enc.batches(items)
    events = msgspec.json.decode(body)
    assert count == 6 and events[-1]["event_id"] == "mine"
    made = [e["event_id"] for e in events[:5]]
    assert made == sorted(made) and len(set(made)) == 5 and all(uuid.UUID(v).version == 7 for v in made)
    assert [e["timestamp"] for e in events[:2]] == ["1970-01-01T00:00:01.500000Z"] * 2


def test_timestamps_are_rfc3339_utc_with_microseconds() -> None:
    stamp = _wire.Timestamps()
    for t in (0.0, 1795341600.000001, 1795341600.5, 1795341601.999999, time.time()):
        text = stamp(t)
        parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        assert abs(parsed.timestamp() - t) < 2e-6, (t, text)


def test_columns_stay_columns_and_everything_else_goes_to_attributes() -> None:
    stamp = _wire.Timestamps()
    out = _wire.event(1795341600.0, "mcp_request",
                      {"method": "tools/call", "duration_ms": 5, "tool": "search", "query": "tea", "user_id": None,
                       "attributes": {"given": 1}, "tags": ["a"], "model": "m1", "input_tokens": 3},
                      {"source": "svc", "tenant_id": "acme"}, stamp)
    assert out["method"] == "tools/call" and out["duration_ms"] == 5 and out["tags"] == ["a"]
    assert (out["tool"], out["model"], out["input_tokens"]) == ("search", "m1", 3)  # TEA's GenAI/MCP columns
    assert out["attributes"] == {"given": 1, "query": "tea"}
    assert "user_id" not in out  # None means "not given"
    assert out["source"] == "svc" and out["tenant_id"] == "acme"
    assert out["event_type"] == "mcp_request" and uuid.UUID(out["event_id"]).version == 7
    assert out["timestamp"] == "2026-11-22T10:00:00.000000Z"
    # a caller's own id, time and source win over the client's
    own = _wire.event(1.0, "x", {"event_id": "mine", "timestamp": "2024-01-15T10:30:00Z", "source": "me"},
                      {"source": "svc"}, stamp)
    assert (own["event_id"], own["timestamp"], own["source"]) == ("mine", "2024-01-15T10:30:00Z", "me")


def test_unencodable_values_are_sent_as_text_never_raised() -> None:
    dropped = []
    enc = _wire.Encoder({}, 1 << 20, lambda n, message: dropped.append((n, message)))
    items = [(_wire.EVENTS, 1.0, "x", {"obj": object(), "when": datetime(2024, 1, 15, tzinfo=timezone.utc),
                                       "nan": float("nan"), "big": 10 ** 30})]
    [(channel, body, count)] = enc.batches(items)
    assert channel == "events" and count == 1 and not dropped
    [event] = msgspec.json.decode(body)
    assert event["attributes"]["obj"].startswith("<object object")
    assert event["attributes"]["when"] == "2024-01-15T00:00:00Z"


def test_a_batch_over_the_byte_bound_is_split_in_order() -> None:
    enc = _wire.Encoder({}, 10_000, lambda n, m: None)
    items = [(_wire.EVENTS, 1.0, "x", {"i": i, "pad": "p" * 200}) for i in range(200)]
    batches = enc.batches(items)
    assert len(batches) > 1 and all(len(body) <= 10_000 for _, body, _ in batches)
    order = [e["attributes"]["i"] for _, body, _ in batches for e in msgspec.json.decode(body)]
    assert order == list(range(200)) and sum(count for _, _, count in batches) == 200


def test_signature_is_telemetry_kits() -> None:
    body = b'[{"event_type":"signed"}]'
    expected = hmac.new(b"s3cret", b"1700000000:nonce-1:" + body, hashlib.sha256).hexdigest()
    assert sign("s3cret", body, "1700000000", "nonce-1") == expected


@pytest.mark.parametrize("given, expected", [
    ("http://127.0.0.1:3001/", "http://127.0.0.1:3001"), ("http://h:3001/v1/events", "http://h:3001"),
    ("https://tea.example.com/tea", "https://tea.example.com/tea")])
def test_endpoint_forms(given: str, expected: str) -> None:
    assert normalise_endpoint(given) == expected


def test_endpoint_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        normalise_endpoint("tea.example.com:3001")


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("3", 0.0) == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", 1445412480.0) == 10.0
    assert parse_retry_after("soon", 0.0) is None and parse_retry_after(None, 0.0) is None
