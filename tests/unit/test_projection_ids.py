"""Projection rows take ids derived from the event they come from: the same id every time that event is
processed (a replay, a resend), a different one for another table, tenant or event."""
from __future__ import annotations

import uuid

import msgspec
from hypothesis import given, strategies as st

from tea.receive.otlp_analytics import ROW_NAMESPACE, OtelAnalytics, row_id
from tea.types import Event


@given(st.text(max_size=30), st.text(max_size=30), st.text(max_size=80))
def test_row_id_is_uuid5_of_table_tenant_and_event(table: str, tenant: str, event_id: str) -> None:
    assert row_id(table, tenant, event_id) == str(uuid.uuid5(ROW_NAMESPACE, f"{table}/{tenant}/{event_id}"))


def test_the_same_span_always_gets_the_same_row_id() -> None:
    attrs = msgspec.json.encode({"event.category": "endpoint_usage", "http.method": "GET", "http.route": "/x"})

    def span(tenant: str, event_id: str) -> Event:
        return Event(event_type="span", event_id=event_id, tenant_id=tenant, timestamp=1, received_at=1,
                     source_protocol="otlp", attributes=msgspec.Raw(attrs))
    processor = OtelAnalytics(storage=None)  # type: ignore[arg-type]
    first, again = processor.row(span("t", "e1")), processor.row(span("t", "e1"))
    assert first is not None and again is not None and first[1]["id"] == again[1]["id"]
    ids = {processor.row(span(t, e))[1]["id"] for t, e in (("t", "e1"), ("u", "e1"), ("t", "e2"))}  # type: ignore[index]
    assert len(ids) == 3
