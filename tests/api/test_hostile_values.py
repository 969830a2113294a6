"""Hostile values on every backend, over real HTTP: whatever TEA acknowledges reads back equal, and
whatever it cannot store is refused before the answer in the protocol's own error shape — never a
200 followed by a dead letter. Native ingestion (POST /v1/events) and the seed TEA's POST /events."""
from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

from tests.conftest import Served

MAX_FLOAT = 1.7976931348623157e308
# one character from every Unicode plane TEA can meet (0-3, 14-16), the BMP's edges and a private-use
# area's last code points
PLANES = "\u0001\u007f\u0080\u07ff\u0800\ud7ff\ue000\ufffd\uffff" \
         "\U00010000\U0001f600\U0002a6d6\U00030000\U000e0001\U000f0000\U0010fffd\U0010ffff"
MEGABYTE = "é" * 300_000 + "x" * 400_000 + "\U0001f600" * 100_000  # 1.4 MB of UTF-8


def hostile_attributes() -> dict[str, Any]:
    return {"planes": PLANES, PLANES: "a key of every plane",
            "big": 2**64 + 1, "negative_big": -(10**30), "int64_max": 2**63 - 1, "int64_min": -(2**63),
            "max": MAX_FLOAT, "min": -MAX_FLOAT, "tiny": 5e-324, "negative_zero": -0.0,
            "nested": {"deep": [[[[{"k": "\U0010fffd"}]]]], "list": [2**70, -MAX_FLOAT, "\U0010ffff", None, True]},
            "escapes": "\"\\/\b\f\n\r\t\u2028\u2029", "megabyte": MEGABYTE}


HOSTILE_EVENT: dict[str, Any] = {
    "event_type": "hostile" + PLANES, "event_id": "hostile-1", "tenant_id": "t\U0001f600",
    "user_id": "u" + PLANES, "session_id": "\x01", "method": PLANES, "target": "x" * 1024,
    "error_message": "e" + "é" * 30_000 + "\U0010ffff" * 5_000, "tags": ["\U0010ffff", PLANES, ""],
    "duration_ms": MAX_FLOAT, "cost": -MAX_FLOAT, "request_size": 2**63 - 1, "response_size": 0,
    "tokens_used": 2**63 - 1, "status_code": -(2**31), "input_tokens": 2**63 - 1, "output_tokens": 0,
    "attributes": hostile_attributes(),
}
SMALL_FLOATS = {"event_type": "floats", "event_id": "floats-1", "duration_ms": 5e-324, "cost": -0.0,
                "status_code": 2**31 - 1, "attributes": {"e": 1e-300}}
# values JSON can spell that no column can hold: each refused with a 400 (naming the field where the
# decoder can); U+0000 because PostgreSQL's text and jsonb cannot hold it and no query parameter may carry it
REFUSED = {
    "nul_tenant": ({"event_type": "x", "tenant_id": "t\x00"}, "tenant_id"),
    "nul_user": ({"event_type": "x", "user_id": "\x00"}, "user_id"),
    "nul_type": ({"event_type": "x\x00y"}, "event_type"),
    "nul_message": ({"event_type": "x", "error_message": "e" * 1000 + "\x00"}, "error_message"),
    "nul_tag": ({"event_type": "x", "tags": ["a", "\x00"]}, "tags"),
    "nul_attribute": ({"event_type": "x", "attributes": {"a": "b\x00"}}, "attributes"),
    "nul_attribute_key": ({"event_type": "x", "attributes": {"\x00": 1}}, "attributes"),
    "nul_nested_attribute": ({"event_type": "x", "attributes": {"a": [{"b": ["\x00"]}]}}, "attributes"),
    "cost_inf": ({"event_type": "x", "cost": "1e999"}, "cost"),
    "duration_nan": ({"event_type": "x", "duration_ms": "NaN"}, None),
    "attribute_inf": ({"event_type": "x", "attributes": {"a": "1e999"}}, None),
    "lone_surrogate": ({"event_type": "x", "user_id": "\\ud800"}, None),
    "lone_surrogate_attribute": ({"event_type": "x", "attributes": {"s": "a\\udfffb"}}, None),
    "lone_surrogate_key": ({"event_type": "x", "attributes": {"\\ud83d": 1}}, None),
    "size_over_int64": ({"event_type": "x", "request_size": str(2**63)}, "request_size"),
}


def raw_json(event: dict[str, Any]) -> bytes:
    """``event`` as JSON where a string value starting with a digit, ``NaN`` or a backslash escape is
    written as it is (so the body can carry 1e999, NaN and lone surrogate escapes)."""
    text = json.dumps(event)
    for value in _raw_values(event):
        text = text.replace(json.dumps(value), f'"{value}"' if "\\u" in value else value)
    return text.encode()


def _raw_values(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [v for item in [*value.keys(), *value.values()] for v in _raw_values(item)]
    if isinstance(value, list):
        return [v for item in value for v in _raw_values(item)]
    return [value] if isinstance(value, str) and (value[:1].isdigit() or value == "NaN" or "\\u" in value) else []


def post(client: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return client.post(path, content=body, headers={"content-type": "application/json"})


def read_back(served: Served, tenant: str, event_id: str) -> dict[str, Any]:
    served.wait_stored(1)
    response = served.client.get(f"/v1/events/{event_id}", params={"tenant_id": tenant})
    assert response.status_code == 200, response.text[:300]
    return response.json()


def same(a: Any, b: Any) -> bool:
    """Equal, telling -0.0 from 0.0 and each float bit for bit."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, float) and isinstance(b, float) and math.copysign(1, a) == math.copysign(1, b) \
            and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def differences(sent: dict[str, Any], got: dict[str, Any]) -> list[str]:
    return [f"{key}: sent {str(value)[:80]!r}, read {str(got.get(key))[:80]!r}"
            for key, value in sent.items() if not same(value, got.get(key))]


@pytest.mark.socket
def test_hostile_values_read_back_equal(server: Served, client: httpx.Client) -> None:
    for event in (HOSTILE_EVENT, SMALL_FLOATS):
        response = post(client, "/v1/events", json.dumps(event).encode())
        assert response.status_code == 200, response.text[:500]
        got = read_back(server, event.get("tenant_id", "default"), event["event_id"])
        wrong = differences(event, got)
        assert not wrong, "\n".join(wrong)


@pytest.mark.socket
def test_hostile_values_through_the_seed_protocol(server: Served, client: httpx.Client) -> None:
    metadata = {**hostile_attributes(), "method": PLANES, "duration_ms": MAX_FLOAT, "status_code": 200,
                "error_message": "\U0001f600"}
    body = {"event_type": "seed" + PLANES, "tenant_id": "seed\U00010000", "user_id": "u\x7f", "metadata": metadata}
    response = post(client, "/events", json.dumps(body).encode())
    assert response.status_code in (200, 201), response.text[:500]
    event_id = response.json()["event_id"]
    got = read_back(server, body["tenant_id"], event_id)
    expected = {"event_type": body["event_type"], "tenant_id": body["tenant_id"], "user_id": "u\x7f",
                "method": PLANES, "duration_ms": MAX_FLOAT, "status_code": 200, "error_message": "\U0001f600",
                "attributes": hostile_attributes()}
    wrong = differences(expected, got)
    assert not wrong, "\n".join(wrong)
    seed = client.get("/events", params={"tenant_id": body["tenant_id"], "limit": "10"})
    assert seed.status_code == 200, seed.text[:300]
    [listed] = seed.json()["events"]
    assert same(listed["metadata"]["nested"], metadata["nested"]) and listed["event_type"] == body["event_type"]


@pytest.mark.socket
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_values_no_column_holds_are_refused_with_a_400(server: Served, client: httpx.Client, case: str) -> None:
    event, field = REFUSED[case]
    response = post(client, "/v1/events", raw_json(event))
    assert response.status_code == 400, response.text[:300]
    body = response.json()
    assert body["error"] in ("invalid_events", "invalid_json") and body["message"], body
    if field is not None:
        assert field in json.dumps(body), body
    assert client.get("/v1/events").json()["events"] == []


def test_raw_json_writes_what_json_cannot() -> None:
    assert raw_json({"a": "1e999", "b": "\\ud800", "c": "NaN", "d": "x"}) == \
        b'{"a": 1e999, "b": "\\ud800", "c": NaN, "d": "x"}'
    assert same({"a": -0.0}, {"a": -0.0}) and not same({"a": -0.0}, {"a": 0.0}) and not same(1, 1.0)
