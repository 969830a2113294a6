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
    found = scan.select_lines([b'{"event_type":"log"}\n', span], *OtelAnalytics.wants_lines)
    assert found == [[], [(0, 0, len(span) - 1)]]
    assert scan.select_lines([span[:20]], *OtelAnalytics.wants_lines) == [[]]


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


_ROUTING = (b'"event.category"', b'"http.method"', b'"feature.name"', b'"event.type"')
_SPAN = b'"event_type":"span"'


def _by_lines(chunks: list[bytes], required: bytes, any_of: tuple[bytes, ...]) -> list[list[tuple[int, bytes]]]:
    """What a per-line ``wants`` picks: each chunk split, every line searched."""
    return [[(i, line) for i, line in enumerate(chunk.split(b"\n"))
             if required in line and any(needle in line for needle in any_of)] for chunk in chunks]


def _select_agrees(chunks: list[bytes], required: bytes, any_of: tuple[bytes, ...]) -> None:
    """The extension, the Python fallback and a per-line search give the same lines, at the same places."""
    from tea import scan
    expected = _by_lines(chunks, required, any_of)
    for found in (scan._select_lines(chunks, required, any_of), scan._split_lines(chunks, required, any_of)):
        assert [[(i, chunk[start:end]) for i, start, end in lines] for chunk, lines in zip(chunks, found)] \
            == expected, (chunks, required, any_of, found)
        for chunk, lines in zip(chunks, found):  # a line's bounds are newlines, or the chunk's ends
            assert all((start == 0 or chunk[start - 1:start] == b"\n") and
                       (end == len(chunk) or chunk[end:end + 1] == b"\n") for _, start, end in lines)


def test_select_lines_finds_lines_wherever_the_needles_sit() -> None:
    """The lines holding the required needle and any of the others, whichever sits first, at a line's start or
    end, across the 16-byte blocks, in the last line without a newline, or around empty lines; a needle split by
    a newline or between two chunks is no line's; needles longer than the lines, empty or holding a newline."""
    from tea.receive.otlp_analytics import OtelAnalytics
    span = b'{"event_type":"span","attributes":{"http.method":"GET"}}'
    bare = b'{"event_type":"span","attributes":{"http.request.method":"GET","event":"x","type":"y"}}'
    other = b'{"event_type":"log","attributes":{"event.category":"x"}}'
    cases = [[span + b"\n"], [bare + b"\n" + span + b"\n" + other + b"\n"], [span], [b"\n\n" + span + b"\n\n"],
             [b""], [], [b"\n"], [other + b"\n", span + b"\n", bare + b"\n"], [span[:30], span[30:] + b"\n"],
             [b'"event_type":"span""http.method"\n'], [b'"http.method""event_type":"span"'],
             [b'"event_type":"span"\n"http.method"\n'], [(bare + b"\n") * 7 + span], [b"x" * 15 + span + b"\n"]]
    for key in _ROUTING:
        for at in range(0, 40):
            line = bare[:at] + key + bare[at:]
            cases.append([line + b"\n", (bare + b"\n") * 2 + line, line])
    for chunks in cases:
        _select_agrees(chunks, _SPAN, _ROUTING)
        assert _by_lines(chunks, _SPAN, _ROUTING) == [  # (what OtelAnalytics.wants picks)
            [(i, line) for i, line in enumerate(chunk.split(b"\n")) if OtelAnalytics.wants(line)] for chunk in chunks]
        for required, any_of in ((b"", _ROUTING), (_SPAN, ()), (_SPAN, (b"",)), (b"", (b"",)), (b"", ()),
                                 (_SPAN + b"\n", _ROUTING), (_SPAN, (b'"http.method"\n', b'"feature.name"')),
                                 (_SPAN, (b"\n",)), (b"x" * 200, _ROUTING), (_SPAN, (b"y" * 300,)),
                                 (_SPAN, tuple(b'"k%d"' % i for i in range(9)) + (b'"http.method"',)),
                                 (b"", tuple(b'"k%d"' % i for i in range(9)) + (b'"event.type"',)),
                                 (b'"http.method"', (_SPAN,)), (b"}", (b"{",))):
            _select_agrees(chunks, required, any_of)
    with pytest.raises(TypeError):
        _select_agrees([span], _SPAN, (b"x", "text"))  # type: ignore[arg-type]


_PIECES = [b"\n", b"\n", b"a", b"{", b"}", b" ", b'"event_type":"span"', b'"event_type":"sp', b'an"',
           b'"http.method"', b'"event.type"', b'"event.category"', b'"feature.name"', b'"feature.', b'name"', b"x" * 17]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.lists(st.sampled_from(_PIECES) | st.binary(max_size=40), max_size=30).map(b"".join),
                       max_size=5),
       needles=st.lists(st.sampled_from(_PIECES) | st.binary(max_size=6), min_size=1, max_size=10))
def test_select_lines_agrees_with_a_split(chunks: list[bytes], needles: list[bytes]) -> None:
    """Random NDJSON-like chunks and needles: the extension and the fallback pick exactly the lines a per-line
    search picks, and so the lines OtelAnalytics' ``wants`` picks for its own needles."""
    _select_agrees(chunks, needles[0], tuple(needles[1:]))
    _select_agrees(chunks, _SPAN, _ROUTING)


def test_a_processor_declaring_wants_lines_is_handed_what_wants_picks(tmp_path: Path) -> None:
    """A processor declaring ``wants_lines`` gets the lines, positions and counts one with the same ``wants``
    gets — decoded or as NDJSON — without its ``wants`` or ``wants_any`` being called."""
    class ByLine(Picky):
        takes_delivery = True

        def __init__(self, mark: bytes) -> None:
            super().__init__(mark)
            self.batches: list[Any] = []

        def wants(self, line: bytes) -> bool:
            self.line_checks += 1
            return _SPAN in line and any(key in line for key in _ROUTING)

        async def __call__(self, events, delivery=None) -> None:  # type: ignore[no-untyped-def,override]
            self.batches.append(([bytes(e.attributes) for e in events], delivery.positions))

    class Declared(ByLine):
        wants_lines = (_SPAN, _ROUTING)

    class Raw(ByLine):
        takes_ndjson = True

    class RawDeclared(Raw):
        wants_lines = (_SPAN, _ROUTING)

    def event(i: int, kind: str, attributes: bytes) -> Event:
        return Event(event_type=kind, event_id=f"e{i}", tenant_id="t", timestamp=i, received_at=i,
                     attributes=msgspec.Raw(attributes))

    keys = [b"{}", b'{"http.method":"GET"}', b'{"event.type":"x","a":1}', b'{"b":"\\"http.method\\""}',
            b'{"feature.name":"f"}']
    records = [[event(i * 10 + j, ("span", "log")[(i + j) % 3 == 0], keys[(i * j + j) % len(keys)])
                for j in range(i % 7)] for i in range(30)]

    async def main() -> None:
        processors = [ByLine(_SPAN), Declared(_SPAN), Raw(_SPAN), RawDeclared(_SPAN)]
        async with Log(tmp_path, [(f"p{n}", p) for n, p in enumerate(processors)], MemoryStorage(),
                       batch_size=7, batch_timeout_s=0.01) as log:
            await log.commit_records(*[r for r in records if r])
            await log.passed()
            await log.commit_records(*[r for r in records[::-1] if r])
            await log.passed()
        by_line, declared, raw, raw_declared = processors
        assert by_line.batches and declared.batches == by_line.batches and raw_declared.batches == raw.batches
        assert [p for _, ps in raw.batches for p in ps] == [p for _, ps in by_line.batches for p in ps]
        assert declared.line_checks == raw_declared.line_checks == 0 and declared.probes == 0
        assert by_line.line_checks > 0
    asyncio.run(main())


def test_a_malformed_wants_lines_is_refused(tmp_path: Path) -> None:
    from tea.pipeline.consume import _wants_lines
    assert _wants_lines("p", (b"a", (b"b",))) == (b"a", (b"b",)) and _wants_lines("p", None) is None
    for bad in ((b"a", [b"b"]), ("a", (b"b",)), (b"a", ("b",)), (b"a",), b"a"):
        with pytest.raises(TypeError, match="wants_lines"):
            _wants_lines("p", bad)
