"""ProcessorRunner hands processors only what they want: a whole-batch probe skips a batch nobody
wants without splitting it; per-line predicates select the lines that are decoded."""
from __future__ import annotations

import asyncio

import msgspec

from tea.pipeline.process import ProcessorRunner
from tea.storage.memory import MemoryStorage
from tea.types import Batch, Event


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


def batch(types: list[str]) -> Batch:
    events = [Event(event_type=t, event_id=f"e{i}", tenant_id="t", timestamp=i, received_at=i,
                    attributes=msgspec.Raw(b"{}")) for i, t in enumerate(types)]
    return Batch.from_events(events)


def test_unwanted_batches_are_skipped_whole_and_wanted_lines_selected() -> None:
    async def main() -> None:
        a, b = Picky(b'"event_type":"communication"'), Picky(b'"event_type":"span"')
        runner = ProcessorRunner([("a", a), ("b", b)], MemoryStorage(), batch_size=1000)
        await runner.submit(batch(["request"] * 50))
        assert (a.probes, b.probes, a.line_checks, b.line_checks) == (1, 1, 0, 0)  # never split
        await runner.submit(batch(["request", "span", "communication", "request"]))
        await runner.drain()
        assert a.line_checks > 0 and sorted(a.seen) == sorted(b.seen) == ["e1", "e2"]  # the union, decoded once
    asyncio.run(main())


def test_probes_see_every_chunk_of_a_writer_batch() -> None:
    """A writer batch is a list of NDJSON chunks (one per buffer record), never joined for the probe:
    a plain probe is asked chunk by chunk, a chunk-taking one once with the whole list."""
    class Whole(Picky):
        wants_any_takes_chunks = True

        def wants_any(self, ndjson) -> bool:  # type: ignore[no-untyped-def,override]
            self.probes += 1
            assert isinstance(ndjson, list)
            return any(self.mark in chunk for chunk in ndjson)

    async def main() -> None:
        chunks = [batch(["request"] * 3).ndjson() for _ in range(4)] + [batch(["span"]).ndjson()]
        plain, whole = Picky(b'"event_type":"span"'), Whole(b'"event_type":"span"')
        for processor, probes in ((plain, 5), (whole, 1)):
            runner = ProcessorRunner([("p", processor)], MemoryStorage(), batch_size=1000)
            await runner.submit(Batch(chunks, 13, 0, 0))
            await runner.drain()
            assert processor.probes == probes and processor.seen == ["e0"]
    asyncio.run(main())


def test_contains_any_native_and_python_agree() -> None:
    from tea.pipeline import scan
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
