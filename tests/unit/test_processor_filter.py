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
