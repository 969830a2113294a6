from __future__ import annotations

import json

import pytest

from tea.errors import BadRequest, TooLarge, UnsupportedMediaType
from tea.pipeline.normalise import Normaliser
from tea.receive.decode import decode_events
from tea.timeutil import datetime_to_us, parse_time
from datetime import datetime, timezone


def dec(body: bytes | object, media: str = "application/json", max_events: int = 100):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return decode_events(data, media, max_events)


def test_fast_path_keeps_everything() -> None:
    d = dec([{"event_type": "a", "tags": ["x"], "attributes": {"n": {"deep": [1, None]}}}] * 3)
    assert d.indexes is None and d.errors == [] and d.total == 3
    assert json.loads(bytes(d.events[0].attributes)) == {"n": {"deep": [1, None]}} and d.events[0].tags == ["x"]


def test_single_object_and_envelope() -> None:
    assert dec({"event_type": "a"}).total == 1
    assert dec({"events": [{"event_type": "a"}, {"event_type": "b"}]}).total == 2
    # an event may itself have an attribute called "events"
    d = dec({"event_type": "a", "attributes": {"events": []}})
    assert d.total == 1 and d.events[0].event_type == "a"


@pytest.mark.parametrize("body, code", [
    (b"", "empty_body"), (b"   \n", "empty_body"), (b"[]", "empty_batch"), (b'{"events": []}', "empty_batch"),
    (b"[{", "invalid_json"), (b'"text"', "invalid_json"), (b"42", "invalid_json"), (b"\xff\xfe", "invalid_utf8"),
    (b"[" * 100000 + b"]" * 100000, "invalid_json"), (b'{"events": 5}', "invalid_json"),
])
def test_whole_body_errors(body: bytes, code: str) -> None:
    with pytest.raises(BadRequest) as info:
        dec(body)
    assert info.value.code == code


def test_per_item_errors_name_index_field_and_event_id() -> None:
    d = dec([{"event_type": "ok"}, {"event_type": "x", "event_id": "bad1", "status_code": "200"},
             {"event_type": "x", "request_size": 2**70}, {"event_type": "x", "attributes": {"a": "b"}}])
    assert [e.index for e in d.errors] == [1, 2]
    first, second = d.errors
    assert (first.field, first.event_id, first.error) == ("status_code", "bad1", "invalid_event")
    assert second.field == "request_size"
    assert d.indexes == [0, 3]


def test_escaped_lone_surrogates_are_refused_even_inside_attributes() -> None:
    # storage refuses them, so they must never be acknowledged; pairs are fine
    with pytest.raises(BadRequest, match="invalid JSON"):
        dec(b'[{"event_type":"ok"},{"event_type":"x","attributes":{"s":"\\ud800"}}]')
    lines = b'{"event_type":"ok"}\n{"event_type":"x","attributes":{"s":"\\udc00"}}\n' \
            b'{"event_type":"y","attributes":{"s":"\\ud83d\\ude00"}}'
    d = dec(lines, "application/x-ndjson")
    assert [e.index for e in d.errors] == [1] and d.errors[0].error == "invalid_json"
    assert [e.event_type for e in d.events] == ["ok", "y"]


def test_limits_and_media_types() -> None:
    with pytest.raises(TooLarge):
        dec([{"event_type": "a"}] * 11, max_events=10)
    with pytest.raises(TooLarge):
        dec(b"\n".join([b'{"event_type":"a"}'] * 11), "application/x-ndjson", max_events=10)
    with pytest.raises(UnsupportedMediaType):
        dec({"event_type": "a"}, "text/csv")
    assert dec({"event_type": "a"}, "application/vnd.api+json").total == 1


def test_normaliser_timestamps_ids_tenant_and_skew() -> None:
    now = parse_time("2026-01-01T00:00:00Z")
    normalise = Normaliser(default_tenant="dflt", max_future_skew_s=3600, clock=lambda: now)
    d = dec([{"event_type": "a"}, {"event_type": "b", "timestamp": 1700000000123},
             {"event_type": "c", "timestamp": "2025-06-01T12:00:00+02:00", "tenant_id": "t", "event_id": "keep"},
             {"event_type": "d", "timestamp": "2025-06-01T10:00:00.5"},
             {"event_type": "e", "timestamp": "2026-01-01T00:59:59Z"},
             {"event_type": "f", "timestamp": "2026-01-01T01:00:01Z"},
             {"event_type": "g", "timestamp": -5}])
    accepted, errors, low, high = normalise(d.events, d.indexes, "native")
    by_type = {e.event_type: e for e in accepted}
    assert by_type["a"].timestamp == now and by_type["a"].received_at == now
    assert by_type["b"].timestamp == 1700000000123000
    assert by_type["c"].timestamp == datetime_to_us(datetime(2025, 6, 1, 10, tzinfo=timezone.utc))
    assert by_type["d"].timestamp == by_type["c"].timestamp + 500000  # naive means UTC
    assert by_type["c"].event_id == "keep" and by_type["c"].tenant_id == "t" and by_type["a"].tenant_id == "dflt"
    assert all(e.source_protocol == "native" for e in accepted)
    assert [(e.index, e.error) for e in errors] == [(5, "clock_skew"), (6, "invalid_timestamp")]
    assert low == min(e.timestamp for e in accepted) and high == max(e.timestamp for e in accepted)


def test_generated_ids_are_unique_and_time_sortable() -> None:
    normalise = Normaliser()
    d = dec([{"event_type": "a"}] * 1000, max_events=1000)
    accepted, _, _, _ = normalise(d.events, None, "native")
    ids = [e.event_id for e in accepted]
    assert len(set(ids)) == 1000 and all(len(i) == 36 and i[14] == "7" for i in ids)  # UUIDv7
    assert ids == sorted(ids)


def test_skew_check_can_be_disabled() -> None:
    d = dec([{"event_type": "a", "timestamp": "2999-01-01T00:00:00Z"}])
    accepted, errors, _, _ = Normaliser(max_future_skew_s=0)(d.events, None, "native")
    assert len(accepted) == 1 and not errors


def _array(item: bytes, count: int) -> bytes:
    return b"[" + b",".join([item] * count) + b"]"


@pytest.mark.parametrize("count", [10, 11, 25])
@pytest.mark.parametrize("form", ["array", "envelope", "ndjson", "array with a bad item", "ndjson with a bad line",
                                  "array of non-objects"])
def test_the_batch_limit_is_exact_in_every_form(form: str, count: int) -> None:
    good, bad = b'{"event_type":"a"}', b'{"event_type":""}'
    items = [good] * count
    if "bad" in form:
        items[3] = bad
    if "non-objects" in form:
        items = [b"1"] * count
    body = b"\n".join(items) if form.startswith("ndjson") else b"[" + b",".join(items) + b"]"
    if form == "envelope":
        body = b'{"events":' + body + b"}"
    media = "application/x-ndjson" if form.startswith("ndjson") else "application/json"
    if count > 10:
        with pytest.raises(TooLarge) as info:
            dec(body, media, max_events=10)
        assert info.value.code == "too_many_events" and info.value.details == {"max_batch_events": 10}
        assert info.value.message == "batch holds more than 10 events (max_batch_events)"
    else:
        d = dec(body, media, max_events=10)
        assert d.total == 10 and len(d.events) + len(d.errors) == 10


@pytest.mark.parametrize("name, body, media, copies", [
    ("1.1 M tiny events", _array(b'{"event_type":"a"}', 1_100_000), "application/json", 0),
    ("6.9 M empty objects", _array(b"{}", 6_900_000), "application/json", 0),
    ("10 M numbers", _array(b"1", 10_000_000), "application/json", 0),
    ("6.9 M NDJSON lines", b"{}\n" * 6_900_000, "application/x-ndjson", 0),
    ("1.1 M events in an envelope", b'{"events":' + _array(b'{"event_type":"a"}', 1_100_000) + b"}",
     "application/json", 1),  # the inner array is copied out once
])
def test_a_huge_batch_is_refused_before_it_is_decoded(name: str, body: bytes, media: str, copies: int) -> None:
    # ~20 MiB bodies (max_body_bytes): decoding them first took 0.4-0.7 GB before the 413. The memory peak is
    # the check (a timed assertion failed on a loaded machine and measured nothing the peak does not)
    import tracemalloc

    assert len(body) <= 20 * 1024**2 + 32
    dec([{"event_type": "warm"}] * 10, max_events=10_000)
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge):
            decode_events(body, media, 10_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < copies * len(body) + 16 * 1024**2, f"{name}: {peak / 2**20:.0f} MiB to refuse"


@pytest.mark.parametrize("limit", [1, 3, 10_000])
def test_the_limit_holds_for_any_setting(limit: int) -> None:
    tiny = b'{"event_type":"a"}'
    assert dec(_array(tiny, limit), max_events=limit).total == limit
    for body in (_array(tiny, limit + 1), b" " + _array(tiny, limit + 1) + b"\n", _array(b"{}", limit + 1),
                 b"[" + b",".join([tiny] * limit + [b"null"]) + b"]", _array(tiny, 2 * limit + 40)):
        with pytest.raises(TooLarge):
            dec(body, max_events=limit)
    d = dec(b"[" + b",".join([tiny] * (limit - 1) + [b"null"]) + b"]", max_events=limit)
    assert d.total == limit and [e.index for e in d.errors] == [limit - 1]


@pytest.mark.parametrize("text, expected", [
    ("2024-01-15T10:30:00Z", "2024-01-15T10:30:00Z"),  # RFC 3339: the fast path
    ("2024-01-15T10:30Z", "2024-01-15T10:30:00Z"),
    ("20240115T103000Z", "2024-01-15T10:30:00Z"),
    ("20240115T1030Z", "2024-01-15T10:30:00Z"),
    ("2024-01-15", "2024-01-15T00:00:00Z"),
    ("1705314600000", "2024-01-15T10:30:00Z"),  # digits: epoch milliseconds, as in a query
    ("2024-01-15T10:30:00+0100", "2024-01-15T09:30:00Z"),
    ("2024-01-15T10:30:00,5Z", "2024-01-15T10:30:00.500000Z"),
    ("2024-01-15T10", "2024-01-15T10:00:00Z"),
    ("2024-W03-1T10:30Z", "2024-01-15T10:30:00Z"),
])
def test_ingest_accepts_the_iso_8601_forms_the_query_parameters_accept(text: str, expected: str) -> None:
    from tea.timeutil import format_us
    assert parse_time(text) == parse_time(expected)  # the query parameters' reading
    d = dec([{"event_type": "a", "event_id": "x"}, {"event_type": "b", "timestamp": text}])
    assert not d.errors and [e.event_type for e in d.events] == ["a", "b"]
    one = dec({"event_type": "b", "timestamp": text})  # a single object, and NDJSON
    lines = dec(b'{"event_type":"a"}\n' + json.dumps({"event_type": "b", "timestamp": text}).encode(),
                "application/x-ndjson")
    assert one.events[0].timestamp == d.events[1].timestamp == lines.events[1].timestamp
    accepted, errors, _, _ = Normaliser()(d.events, d.indexes, "native")
    assert not errors and format_us(accepted[1].timestamp) == expected


@pytest.mark.parametrize("item, field, message", [
    ({"event_type": "b", "timestamp": "yesterday"}, "timestamp", "Invalid RFC3339"),
    ({"event_type": "b", "timestamp": "2024-01-15", "duration_ms": "slow"}, "duration_ms", "Expected `float"),
    ({"event_type": "b", "timestamp": "2024-02-30"}, "timestamp", "Invalid RFC3339"),
    ({"event_type": "b", "timestamp": 1.5}, "timestamp", "Expected `int | datetime | null`"),
])
def test_a_timestamp_in_no_iso_form_is_refused_per_item(item: dict, field: str, message: str) -> None:
    d = dec([{"event_type": "a"}, item])
    [error] = d.errors
    assert (error.index, error.field, error.error) == (1, field, "invalid_event") and message in error.message
