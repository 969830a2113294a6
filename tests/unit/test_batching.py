"""tea.batching: size, interval and flush triggers, drain within a deadline, the bound, and no wake-ups when idle."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tea.batching import Batcher, BatchTrigger


class Sink:
    """An export that records its batches and can be slow."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[Any]] = []
        self.delay_s = delay_s

    async def __call__(self, batch: list[Any]) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.batches.append(batch)


def make(sink: Sink, **kw: Any) -> Batcher[Any]:
    options = {"max_items": 3, "max_interval_s": 60.0, "max_queue": 10, **kw}
    return Batcher("test", sink, **options)


async def until(condition: Any, timeout_s: float = 5.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), timeout_s)


async def stopped(batcher: Batcher[Any], task: "asyncio.Task[None]") -> None:
    assert await batcher.drain(5) == 0
    await asyncio.wait_for(task, 5)


def test_a_full_batch_goes_at_once_without_waiting_for_the_interval() -> None:
    async def go() -> None:
        sink = Sink()
        batcher = make(sink)
        task = asyncio.create_task(batcher.run())
        for n in range(7):
            assert batcher.offer(n)
        await until(lambda: len(sink.batches) == 2)
        assert sink.batches == [[0, 1, 2], [3, 4, 5]] and list(batcher.queue) == [6]  # 6 waits for its interval
        await stopped(batcher, task)
        assert sink.batches[-1] == [6]  # stop sends what is left
    asyncio.run(go())


def test_a_partial_batch_goes_after_the_interval() -> None:
    async def go() -> None:
        sink = Sink()
        batcher = make(sink, max_items=100, max_interval_s=0.05)
        task = asyncio.create_task(batcher.run())
        batcher.offer("a")
        await asyncio.sleep(0)
        assert sink.batches == []  # not yet: one item of 100
        await until(lambda: sink.batches == [["a"]])
        assert batcher.trigger.waits <= 3  # asleep until the first item, then once until its interval
        await stopped(batcher, task)
    asyncio.run(go())


def test_flush_sends_at_once_and_flushed_waits_for_the_export() -> None:
    async def go() -> None:
        sink = Sink(delay_s=0.01)
        batcher = make(sink, max_items=100)  # an interval of 60 s: only flush() can send these now
        task = asyncio.create_task(batcher.run())
        for n in range(5):
            batcher.offer(n)
        assert await asyncio.wait_for(batcher.flushed(), 5)
        assert sink.batches == [[0, 1, 2, 3, 4]] and batcher.pending == 0
        batcher.offer(5)
        batcher.flush()
        await until(lambda: len(sink.batches) == 2)
        await stopped(batcher, task)
    asyncio.run(go())


def test_flushed_exports_inline_when_no_loop_runs() -> None:
    async def go() -> None:
        sink = Sink()
        batcher = make(sink)
        for n in range(4):
            batcher.offer(n)
        assert await batcher.flushed()
        assert sink.batches == [[0, 1, 2], [3]]
    asyncio.run(go())


def test_drain_stops_at_its_deadline_with_a_slow_consumer_and_reports_what_is_left() -> None:
    async def go() -> None:
        sink = Sink(delay_s=0.1)
        batcher = make(sink, max_items=1)
        task = asyncio.create_task(batcher.run())
        for n in range(10):
            batcher.offer(n)
        left = await batcher.drain(0.25)
        assert 0 < left < 10 and left + len(sink.batches) == 10  # (the one being exported counts as left)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        fast = Sink()
        batcher = make(fast, max_items=2)
        task = asyncio.create_task(batcher.run())
        for n in range(5):
            batcher.offer(n)
        assert await batcher.drain(5) == 0 and fast.batches == [[0, 1], [2, 3], [4]]
        await asyncio.wait_for(task, 5)  # drained: run() returned by itself
    asyncio.run(go())


def test_the_queue_is_bounded_refusing_dropping_or_pushing_back() -> None:
    async def go() -> None:
        sink = Sink()
        batcher = make(sink, max_queue=2)
        assert batcher.offer(1) and batcher.offer(2)
        assert not batcher.offer(3)  # refused: full
        assert batcher.offer_dropping_oldest(4) == 1 and list(batcher.queue) == [2, 4]
        put = asyncio.create_task(batcher.put(5))
        await asyncio.sleep(0.05)
        assert not put.done()  # back-pressure: waits for room
        task = asyncio.create_task(batcher.run())
        batcher.flush()
        await asyncio.wait_for(put, 5)
        await stopped(batcher, task)
        assert [x for b in sink.batches for x in b] == [2, 4, 5]
    asyncio.run(go())


def test_an_idle_batcher_does_not_wake() -> None:
    async def go() -> None:
        sink = Sink()
        batcher = make(sink, max_interval_s=0.01)
        task = asyncio.create_task(batcher.run())
        await asyncio.sleep(0.3)
        assert batcher.trigger.waits == 1  # asleep once, never woken: no polling
        batcher.offer(1)
        await until(lambda: sink.batches == [[1]])
        before = batcher.trigger.waits
        await asyncio.sleep(0.3)
        assert batcher.trigger.waits - before <= 1  # back to sleep once the batch went
        await stopped(batcher, task)
    asyncio.run(go())


def test_an_export_that_raises_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        seen: list[list[int]] = []

        async def export(batch: list[int]) -> None:
            seen.append(batch)
            if batch == [1]:
                raise RuntimeError("boom")
        batcher: Batcher[int] = Batcher("flaky", export, max_items=1, max_interval_s=1.0, max_queue=5)
        task = asyncio.create_task(batcher.run())
        batcher.offer(1)
        batcher.offer(2)
        assert await batcher.drain(5) == 0
        await asyncio.wait_for(task, 5)
        assert seen == [[1], [2]]
    asyncio.run(go())
    assert "flaky: exporting a batch of 1 failed" in caplog.text


def test_the_trigger_alone() -> None:
    async def go() -> None:
        trigger = BatchTrigger(max_items=10, max_interval_s=60.0)
        assert not trigger.is_due(0, 0.0) and trigger.is_due(10, None) and not trigger.is_due(9, trigger.clock())
        assert trigger.is_due(1, trigger.clock() - 61)  # the interval passed
        trigger.flush()
        assert trigger.is_due(1, None)
        trigger.caught_up()
        assert not trigger.is_due(1, None)
        waiting = asyncio.create_task(trigger.until_due(lambda: 0, lambda: 0.0))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        trigger.stop()  # nothing waiting: until_due says there is no batch
        assert await asyncio.wait_for(waiting, 5) is False
    asyncio.run(go())
