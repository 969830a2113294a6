"""Processors read only what they want from the log: a whole-read probe skips records the processor does not
want without splitting them; per-line predicates select the lines that are decoded."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tea.storage.memory import MemoryStorage
from tea.types import Batch, Event
from tests.consumers import Log


class Picky:
    def __init__(self, mark: bytes) -> None:
        self.mark = mark
        self.probes = 0
        self.line_checks = 0
        self.seen: list[str] = []

    def wants_any(self, ndjson: bytes) -> bool:
        self.probes += 1
        return self.mark in ndjson

    def wants(self, line: bytes) -> bool:
        self.line_checks += 1
        return self.mark in line

    async def __call__(self, events: list[Event]) -> None:
        self.seen += [e.event_id for e in events]  # type: ignore[misc]


def batch(types: list[str]) -> list[Event]:
    return [Event(event_type=t, event_id=f"e{i}", tenant_id="t", timestamp=i, received_at=i,
                  attributes=msgspec.Raw(b"{}")) for i, t in enumerate(types)]


def test_unwanted_records_are_skipped_whole_and_wanted_lines_selected(tmp_path: Path) -> None:
    async def main() -> None:
        a, b = Picky(b'"event_type":"communication"'), Picky(b'"event_type":"span"')
        async with Log(tmp_path, [("a", a), ("b", b)], MemoryStorage(), batch_size=1000,
                       batch_timeout_s=0.01) as log:
            await log.commit_records(batch(["request"] * 50))
            await log.passed()
            assert (a.probes, b.probes, a.line_checks, b.line_checks) == (1, 1, 0, 0)  # never split
            await log.commit_records(batch(["request", "span", "communication", "request"]))
            await log.passed()
        assert a.line_checks > 0 and a.seen == ["e2"] and b.seen == ["e1"]  # each only what it wants
    asyncio.run(main())


def test_records_of_other_event_types_are_skipped_without_a_probe(tmp_path: Path) -> None:
    """A processor naming its ``event_types`` is not even probed for records the buffer knows hold none of
    them (the receivers append each group with its event types); records of unknown types are probed."""
    class Spans(Picky):
        event_types = frozenset(["span"])

    async def main() -> None:
        spans = Spans(b'"event_type":"span"')
        async with Log(tmp_path, [("spans", spans)], MemoryStorage(), batch_size=1000, batch_timeout_s=0.01) as log:
            for kinds, events in ((frozenset(["request"]), batch(["request"] * 20)),
                                  (frozenset(["request", "span"]), batch(["request", "span"]))):
                data = Batch.from_events(events)
                await log.buffer.append(data.ndjson(), data.count, data.min_ts, data.max_ts, kinds)
                log.commit()
                await log.passed()
                if len(events) == 20:
                    assert spans.probes == 0 and spans.seen == []  # known to hold no span: never searched
            await log.commit_records(batch(["span"]))  # (appended without its event types: probed)
            await log.passed()
        assert spans.probes == 2 and spans.seen == ["e1", "e0"]
    asyncio.run(main())


def test_probes_see_every_chunk_of_a_read(tmp_path: Path) -> None:
    """A read from the log is a list of NDJSON chunks (one per buffer record), never joined for the probe:
    a plain probe is asked chunk by chunk, a chunk-taking one once with the whole list."""
    class Whole(Picky):
        wants_any_takes_chunks = True

        def wants_any(self, ndjson) -> bool:  # type: ignore[no-untyped-def,override]
            self.probes += 1
            assert isinstance(ndjson, list)
            return any(self.mark in chunk for chunk in ndjson)

    async def main() -> None:
        records = [batch(["request"] * 3) for _ in range(4)] + [batch(["span"])]
        plain, whole = Picky(b'"event_type":"span"'), Whole(b'"event_type":"span"')
        for processor, probes in ((plain, 5), (whole, 1)):
            log = Log(tmp_path / str(probes), [("p", processor)], MemoryStorage(), batch_size=1000,
                      batch_timeout_s=0.01)
            await log.open()
            await log.commit_records(*records)  # all committed before the processor reads: one read
            async with log:
                await log.passed()
            assert processor.probes == probes and processor.seen == ["e0"]
    asyncio.run(main())


def test_a_processor_taking_ndjson_is_handed_its_wanted_lines_undecoded(tmp_path: Path) -> None:
    """``takes_ndjson``: the batch is a Batch of exactly the lines ``wants`` picked, in log order, with their
    positions; iterating it gives the same events a list would hold."""
    class Lines(Picky):
        takes_ndjson = True
        takes_delivery = True

        def __init__(self, mark: bytes) -> None:
            super().__init__(mark)
            self.batches: list[Any] = []

        async def __call__(self, events, delivery=None) -> None:  # type: ignore[no-untyped-def,override]
            self.batches.append((events, delivery, getattr(events, "_events", ()) is None))
            self.seen += [e.event_id for e in events]  # type: ignore[misc]

    async def main() -> None:
        lines = Lines(b'"event_type":"span"')
        async with Log(tmp_path, [("lines", lines)], MemoryStorage(), batch_size=1000, batch_timeout_s=0.01) as log:
            await log.commit_records(batch(["span", "request", "span"]), batch(["span"]))
            await log.passed()
        [(handed, delivery, undecoded)] = lines.batches
        assert isinstance(handed, Batch) and undecoded  # never decoded before the processor
        assert handed.ndjson() == Batch.from_events([e for e in batch(["span", "request", "span"]) + batch(["span"])
                                                     if e.event_type == "span"]).ndjson()
        assert lines.seen == ["e0", "e2", "e0"] and [p[2] for p in delivery.positions] == [0, 2, 0]
    asyncio.run(main())


def test_contains_any_native_and_python_agree() -> None:
    from tea import scan
    cases = [(b'{"a":1}\n', (b'"a"',)), (b'{"a":1}\n', (b'"b"', b'1}')), (b"", (b"x",)),
             ([b'{"x":1}\n', b'{"y":2}\n'], (b'"y"',)), ([b'{"x"', b':1}\n'], (b'"x":1',)), ([], (b"x",))]
    for data, needles in cases:
        python = any(n in c for n in needles for c in (data if isinstance(data, list) else [data]))
        assert scan.contains_any(data, needles) is python, (data, needles)
        if scan._find_any is not None:
            found = scan._find_any(data, needles)
            assert (found >= 0) is python
    from tea.receive.otlp_analytics import OtelAnalytics
    span = b'{"event_type":"span","attributes":{"http.method":"GET"}}\n'
    assert OtelAnalytics.wants_any([b'{"event_type":"log"}\n', span]) and not OtelAnalytics.wants_any([span[:20]])


_find_any = pytest.importorskip("tea._otlpfast").find_any  # (the extension is built by the project's setup)


def _occurs(data: bytes | list[bytes], needles: tuple[bytes, ...]) -> set[int]:
    chunks = data if isinstance(data, list) else [data]
    return {i for i, needle in enumerate(needles) for chunk in chunks if needle in chunk}


def test_find_any_finds_needles_wherever_they_sit() -> None:
    """Several needles are searched in one pass, 16 positions at a time: a needle at the very start, across a
    block's end, in the last bytes (where the block loads would pass the end), split between two chunks (never
    found: chunks are searched each on its own), longer than the text, or empty."""
    routing = (b'"event.category"', b'"http.method"', b'"feature.name"', b'"event.type"')
    filler = b'{"event_type":"span","attributes":{"http.request.method":"GET","event":"x","type":"y"}}\n' * 3
    for needle_index, needle in enumerate(routing):
        for at in [0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 100, len(filler)]:
            text = filler[:at] + needle + filler[at:]
            assert _find_any(text, routing) == needle_index, (needle, at)
            assert _find_any([filler, text], routing) == needle_index
            tail = filler + needle  # the needle ends the text
            assert _find_any(tail, routing) == needle_index
            assert _find_any(needle, routing) == needle_index  # the text is the needle
    assert _find_any(filler, routing) == -1
    assert _find_any([filler + routing[0][:7], routing[0][7:] + filler], routing) == -1
    assert _find_any(b"short", routing) == -1 and _find_any(b"", routing) == -1 and _find_any([], routing) == -1
    assert _find_any(filler, (b"nope", b"")) == 1  # an empty needle occurs everywhere
    many = tuple(b'"key%d"' % i for i in range(9)) + (b'"http.method"',)  # more than are searched together
    assert _find_any(filler + b'{"http.method":1}', many) == 9 and _find_any(filler, many) == -1
    near = b'"event.categorx" "http.methoe" "feature.nam" "event.typ"' * 4  # first, middle, last bytes but not all
    assert _find_any(near, routing) == -1
    with pytest.raises(TypeError):
        _find_any(filler, (b"x", "text"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.binary(max_size=200), max_size=4),
       needles=st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=5),
       planted=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 300)), max_size=3))
def test_find_any_agrees_with_python(chunks: list[bytes], needles: list[bytes],
                                     planted: list[tuple[int, int, int]]) -> None:
    """Random texts and needles (some planted at random places): a needle is reported exactly when one occurs,
    and the needle reported does occur."""
    for chunk_index, needle_index, at in planted:
        if chunk_index < len(chunks):
            chunk = chunks[chunk_index]
            at = min(at, len(chunk))
            chunks[chunk_index] = chunk[:at] + needles[needle_index % len(needles)] + chunk[at:]
    wanted = tuple(needles)
    for data in (chunks, b"".join(chunks)):
        occurring = _occurs(data, wanted)
        found = _find_any(data, wanted)
        assert (found in occurring) if occurring else found == -1, (data, wanted, found)
