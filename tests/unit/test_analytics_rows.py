"""otel_analytics builds the same rows whether it is handed the committed NDJSON lines (a Batch, as its consumer
hands them) or decoded events (a dead letter's replay), and they are the rows the documented rules give: routing by
``event.category`` and the fallbacks, the span's attributes over its resource's, TEA's own keys and the columns out of
``event_metadata``, sensitive keys dropped, ids derived from the span."""
from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import msgspec
from hypothesis import example, given, settings, strategies as st

from tea.pii import DEFAULT_PII_CONTAINS, DEFAULT_PII_KEYS
from tea.receive.otlp_analytics import _STRIP as COLUMNS, ROW_NAMESPACE, OtelAnalytics  # (the seed's key sets)
from tea.storage.projections import ROWS, as_dict
from tea.types import Batch, Event

OURS = ("span.name", "span.kind", "resource", "scope", "span.events")


def reference(event: Event, created_at: int) -> tuple[str, dict[str, Any]] | None:
    """The rules, written plainly."""
    raw = msgspec.json.decode(event.attributes)
    attrs = dict(raw["resource"]) if isinstance(raw.get("resource"), dict) else {}
    attrs.update({k: v for k, v in raw.items() if k not in OURS})
    named = attrs.get("event.category")
    # without a category, the seed collector's fallbacks, the last that applies winning
    fallbacks = [t for t, applies in (("user_activity", attrs.get("event.type") in ("login", "logout")),
                                      ("endpoint_usage", "http.method" in attrs),
                                      ("feature_usage", "feature.name" in attrs)) if applies]
    table = (named if isinstance(named, str) and named in COLUMNS else None) if named else \
        (fallbacks[-1] if fallbacks else None)
    if table is None:
        return None

    def ident(value: Any) -> str | None:
        return None if value is None or value == "" else str(value)[:32]

    def sensitive(key: str) -> bool:
        return key.lower() in DEFAULT_PII_KEYS or any(word in key.lower() for word in DEFAULT_PII_CONTAINS)
    row = {"tenant_id": event.tenant_id,
           "id": str(uuid.uuid5(ROW_NAMESPACE, f"{table}/{event.tenant_id}/{event.event_id}")),
           "timestamp": event.timestamp, "user_id": ident(attrs.get("user.id")),
           "organization_id": ident(attrs.get("organization.id")),
           "deployment_type": attrs.get("deployment.type", "unknown"), "created_at": created_at,
           "event_metadata": {k: v for k, v in attrs.items() if k not in COLUMNS[table] and not sensitive(k)}}
    if table == "user_activity":
        row |= {"event_type": str(attrs.get("event.type", "unknown"))[:50], "session_id": attrs.get("session.id")}
    elif table == "endpoint_usage":
        code, duration = attrs.get("http.status_code"), attrs.get("duration_ms")
        row |= {"endpoint": str(attrs.get("http.route") or attrs.get("http.url") or "unknown")[:255],
                "method": attrs.get("http.method"),  # (numbers the columns cannot hold: none, the span keeps them)
                "status_code": code if isinstance(code, int) and -2**31 <= code < 2**31 else None,
                "duration_ms": float(duration) if isinstance(duration, (int, float)) and abs(duration) <= sys.float_info.max
                else None}
    else:
        row |= {"feature_name": str(attrs.get("feature.name", "unknown"))[:100], "action": attrs.get("feature.action")}
    return table, row


class Rows:
    def __init__(self) -> None:
        self.tables: dict[str, list[dict[str, Any]]] = {}

    async def write_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        self.tables.setdefault(table, []).extend(rows)


class RowSets(Rows):
    """A storage with ``WritesRowSets``: handed Row structs, every table at once."""

    async def write_row_sets(self, tables: dict[str, list[Any]]) -> None:
        assert all(type(row) is ROWS[table] for table, rows in tables.items() for row in rows)
        for table, rows in tables.items():
            await self.write_rows(table, [as_dict(row) for row in rows])


def run(events: Any) -> dict[str, list[dict[str, Any]]]:
    found = []
    for sink in (Rows(), RowSets()):
        asyncio.run(OtelAnalytics(sink, clock=lambda: 7)(events))  # type: ignore[arg-type]
        found.append({t: sorted(rows, key=lambda r: r["id"]) for t, rows in sink.tables.items()})
    assert found[0] == found[1]
    return found[0]


keys = st.sampled_from(["event.category", "event.type", "http.method", "feature.name", "http.route", "http.url",
                        "http.status_code", "duration_ms", "user.id", "organization.id", "deployment.type",
                        "session.id", "feature.action", "metadata.count", "user.password", "Authorization",
                        "span.name", "scope", "service.name", "x"])
values = st.one_of(st.none(), st.booleans(), st.integers(-5, 600), st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from([2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**70, -10**400, 10**400]),
                   st.sampled_from(["", "endpoint_usage", "feature_usage", "user_activity", "login", "logout", "GET",
                                    "/a", "abc"]), st.lists(st.text(max_size=3), max_size=2))
objects = st.dictionaries(keys, values, max_size=8)


@settings(max_examples=200, deadline=None)
@example([({"event.category": ""}, None, "otlp", "span", 0), ({"event.category": ["x"]}, None, "otlp", "span", 1),
          ({"event.category": False, "http.method": "GET"}, {"span.name": "r", "user.id": "u"}, "otlp", "span", 2),
          ({"resource": ["x"], "http.method": "GET"}, None, "otlp", "span", 3)])
@example([({"http.method": "GET", "http.status_code": 2**40, "duration_ms": 10**400}, None, "otlp", "span", 0),
          ({"http.method": "GET", "http.status_code": -2**31, "duration_ms": -2**70}, None, "otlp", "span", 1)])
@given(st.lists(st.tuples(objects, st.one_of(st.none(), objects), st.sampled_from(["otlp", "native"]),
                          st.sampled_from(["span", "log"]), st.integers(0, 3)), max_size=12))
def test_rows_from_lines_and_from_events_are_the_rules_rows(spans: list[Any]) -> None:
    events = []
    for n, (attrs, resource, protocol, kind, event) in enumerate(spans):
        body = dict(attrs) if resource is None else {**attrs, "resource": resource}
        events.append(Event(event_type=kind, event_id=f"e{event}", tenant_id=f"t{n % 2}", timestamp=1000 + n,
                            received_at=1, source_protocol=protocol, attributes=msgspec.Raw(msgspec.json.encode(body))))
    expected: dict[str, dict[str, dict[str, Any]]] = {}
    for e in events:
        routed = reference(e, 7) if e.event_type == "span" and e.source_protocol == "otlp" else None
        if routed is not None:  # (a span twice: its first row)
            expected.setdefault(routed[0], {}).setdefault(routed[1]["id"], routed[1])
    want = {t: sorted(rows.values(), key=lambda r: r["id"]) for t, rows in expected.items()}
    lines = [line for line in Batch.from_events(events).ndjson().split(b"\n") if line and OtelAnalytics.wants(line)]
    assert run(Batch([line + b"\n" for line in lines], len(lines), 0, 0)) == want  # as the consumer hands them over
    assert run(Batch([b"\n".join(lines) + b"\n"] if lines else [], len(lines), 0, 0)) == want
    assert run(events) == want
