"""The live tail's window and matcher, without a server: a stream selects exactly what /v1/events would."""
from __future__ import annotations

import asyncio

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from tea.errors import BadRequest
from tea.storage.memory import select
from tea.types import Event, EventFilter, encode_lines
from tea.ui.tail import Chunk, LiveTail, Matcher

TEXT = st.sampled_from(["acme", "beta", 'we"ird', "ünï", "a\\b", "tools/call", ""])


@st.composite
def events(draw: st.DrawFn) -> Event:
    attributes = draw(st.dictionaries(st.sampled_from(["tenant_id", "method", "x"]), TEXT, max_size=2))
    return Event(event_type=draw(st.sampled_from(["a", "b"])), tenant_id=draw(TEXT) or "t", event_id=draw(TEXT) or "i",
                 timestamp=draw(st.integers(0, 10)), method=draw(st.none() | TEXT), source=draw(st.none() | TEXT),
                 user_id=draw(st.none() | TEXT), attributes=msgspec.Raw(msgspec.json.encode(attributes)))


@st.composite
def filters(draw: st.DrawFn) -> EventFilter:
    tenants = draw(st.none() | st.lists(TEXT.filter(bool), min_size=1, max_size=2).map(tuple))
    return EventFilter(tenant_ids=tenants, method=draw(st.none() | TEXT), source=draw(st.none() | TEXT),
                       user_id=draw(st.none() | TEXT), event_type=draw(st.none() | st.sampled_from(["a", "b"])),
                       start_us=draw(st.none() | st.integers(0, 10)))


@settings(max_examples=150, deadline=None)
@given(st.lists(events(), max_size=12), filters(), st.integers(0, 12))
def test_the_matcher_selects_what_the_filter_selects(batch: list[Event], f: EventFilter, start: int) -> None:
    chunk = Chunk(100, encode_lines(batch), len(batch))
    got = Matcher(f)(chunk, start)
    expected = [(i, e) for i, e in enumerate(batch) if i >= start and select([e], f)]
    assert [(i, e.event_id, e.method) for i, e in got] == [(i, e.event_id, e.method) for i, e in expected]


def test_the_matcher_searches_the_most_selective_field() -> None:
    assert Matcher(EventFilter(tenant_ids=("acme",), method="tools/call")).needle == b'"method":"tools/call"'
    assert Matcher(EventFilter(tenant_ids=("acme",))).needle == b'"tenant_id":"acme"'
    assert Matcher(EventFilter(tenant_ids=("a", "b"))).needle is None
    assert Matcher(EventFilter()).needle is None


def test_the_window_numbers_events_and_keeps_its_bound() -> None:
    async def run() -> None:
        tail = LiveTail(window_bytes=1000, resume_s=0.05)
        tail.acquire("acme")
        line = encode_lines([Event(event_type="e", tenant_id="acme", event_id="x", timestamp=1)])
        for _ in range(3):
            tail.publish(line * 2, 2)
        assert [c.first for c in tail.since(1)] == [1, 3, 5] and tail.next_seq == 7
        assert [c.first for c in tail.since(4)] == [3, 5]  # (the first may begin before the asked position)
        for _ in range(40):
            tail.publish(line * 2, 2)
        assert tail.since(1) is None and tail._bytes <= 1000
        assert tail.resume_point(f"{tail.epoch}-2")[1] == "the events after this id are no longer in the live-tail window"
        assert tail.resume_point(f"{tail.epoch}-{tail.next_seq - 2}") == (tail.next_seq - 1, None)
        assert tail.resume_point("0000000a-1")[1].startswith("the id is from another TEA process")
        with pytest.raises(BadRequest):
            tail.resume_point("garbage")
        tail.release("acme")
        await asyncio.sleep(0.1)  # resume_s passes with no stream: the window stops recording, forgets
        assert not tail.recording and tail.since(tail.next_seq - 1) is None

    asyncio.run(run())
