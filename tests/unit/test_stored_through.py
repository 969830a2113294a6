"""The writer's read-your-writes hook: ``flush_now`` / ``stored_through`` write what a read needs at once, not
at the end of ``flush_interval_s``; a read that needs nothing waits for nothing; the deadline bounds the wait."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tea.buffer.log import DurableBuffer
from tea.buffer.writer import Writer
from tests.unit.test_writer import Recording, line

HOUR_S = 3600.0  # a flush interval no test waits for


async def started(tmp_path: Path, storage: Recording, ack: str) -> tuple[DurableBuffer, Writer, asyncio.Task[None]]:
    buf = DurableBuffer(str(tmp_path / "buffer"), max_bytes=10**7, segment_bytes=10**6, ack=ack,
                        fsync_interval_s=HOUR_S)
    await buf.open()
    writer = Writer(buf, storage, flush_interval_s=HOUR_S, max_backoff_s=0.01)
    return buf, writer, asyncio.create_task(writer.run())


async def stopped(buf: DurableBuffer, writer: Writer, task: asyncio.Task[None]) -> None:
    await buf.close()
    writer.stop()
    await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("ack", ["durable", "memory"])
def test_what_was_acknowledged_is_stored_at_once(tmp_path: Path, ack: str) -> None:
    storage = Recording()

    async def scenario() -> None:
        buf, writer, task = await started(tmp_path, storage, ack)
        loop = asyncio.get_running_loop()
        assert await writer.stored_through(buf.acknowledged_events, loop.time())  # nothing acknowledged yet
        await buf.append(b"".join(line(f"e{i}") for i in range(3)), 3, 1, 1)
        target = buf.acknowledged_events
        assert target == 3  # (with ack=memory: counted as soon as it is queued)
        assert await writer.stored_through(target, loop.time() + 10)
        assert len(storage._events) == 3 and storage.batch_sizes == [3]
        assert await writer.stored_through(target, loop.time())  # already stored: no wait, no write
        assert storage.batch_sizes == [3]
        await stopped(buf, writer, task)

    asyncio.run(scenario())


def test_the_deadline_bounds_the_wait_while_storage_fails(tmp_path: Path) -> None:
    storage = Recording(fail_times=10**6)

    async def scenario() -> None:
        buf, writer, task = await started(tmp_path, storage, "durable")
        await buf.append(line("e1"), 1, 1, 1)
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert not await writer.stored_through(buf.acknowledged_events, began + 0.2)
        assert loop.time() - began >= 0.2 and writer.stats.failures >= 1
        storage.fail_times = 0  # storage is back: the retry stores it
        assert await writer.stored_through(buf.acknowledged_events, loop.time() + 10)
        await stopped(buf, writer, task)

    asyncio.run(scenario())


def test_a_waiting_read_is_answered_before_the_position_moves(tmp_path: Path) -> None:
    """The commit wakes the read first: it runs before the writer persists its position and wakes the processors
    (which follow the cursor), and what it needs is committed by then."""
    storage = Recording()

    async def scenario() -> None:
        buf, writer, task = await started(tmp_path, storage, "durable")
        await buf.append(line("e1") + line("e2"), 2, 1, 1)
        loop = asyncio.get_running_loop()
        assert await writer.stored_through(buf.acknowledged_events, loop.time() + 10)
        assert len(storage._events) == 2 and buf.writer.events == 0 and writer.stored_events == 2
        await buf.writer.reached(2, loop.time() + 10)  # (then the cursor moves, in the writer's next step)
        assert writer.stored_events == 2
        await stopped(buf, writer, task)

    asyncio.run(scenario())


def test_reads_that_give_up_or_are_cancelled_leave_no_waiter_behind(tmp_path: Path) -> None:
    storage = Recording(fail_times=10**6)

    async def scenario() -> None:
        buf, writer, task = await started(tmp_path, storage, "durable")
        await buf.append(line("e1"), 1, 1, 1)
        loop = asyncio.get_running_loop()
        assert not await writer.stored_through(1, loop.time() + 0.05)
        waiting = asyncio.create_task(writer.stored_through(1, loop.time() + 60))
        await asyncio.sleep(0.01)
        assert len(writer._reads) == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert writer._reads == []
        storage.fail_times = 0
        assert await writer.stored_through(1, loop.time() + 10)
        await stopped(buf, writer, task)

    asyncio.run(scenario())
