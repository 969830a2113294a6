"""A real durable log with processors reading it, for tests of processors: events are appended as
records and committed the way the writer commits them (its position moves past them)."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tea.buffer.log import DurableBuffer
from tea.pipeline.process import ProcessorRunner
from tea.types import Batch, Event


class Log:
    def __init__(self, path: Path, processors: list[tuple[str, Any]], storage: Any, **runner: Any) -> None:
        self.buffer = DurableBuffer(str(path), max_bytes=10**8, segment_bytes=10**6)
        self.runner = ProcessorRunner(processors, storage, self.buffer, **runner)
        self._task: asyncio.Task[None] | None = None
        self._opened = False

    async def open(self) -> None:
        """Open the log (before the processors start, to commit records they then find waiting)."""
        if not self._opened:
            await self.buffer.open()
            self._opened = True

    async def __aenter__(self) -> "Log":
        await self.open()
        self._task = asyncio.create_task(self.runner.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.runner.stop()
        assert self._task is not None
        await asyncio.wait_for(self._task, 10)
        await self.buffer.close()

    async def append(self, *records: list[Event]) -> None:
        """Append each list of events as one record (one request), not committed yet."""
        for events in records:
            batch = Batch.from_events(events)
            await self.buffer.append(batch.ndjson(), batch.count, batch.min_ts, batch.max_ts)

    def commit(self) -> None:
        """Storage has committed everything appended: the writer's position moves to the log's end."""
        writer = self.buffer.writer
        self.buffer.advance(writer, self.buffer.durable_end, self.buffer.lag_events(writer))

    async def commit_records(self, *records: list[Event]) -> None:
        await self.append(*records)
        self.commit()

    async def passed(self, timeout_s: float = 10.0) -> None:
        """Until every processor has passed everything committed."""
        await until(lambda: all(self.buffer.lag_events(c.cursor) == 0 for c in self.runner.consumers), timeout_s)


async def until(predicate: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)
