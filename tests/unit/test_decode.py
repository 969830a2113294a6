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
