"""The writer: batching, retries with backoff, poison isolation to the dead-letter file, draining."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tea.buffer.log import DurableBuffer
from tea.buffer.writer import Writer
from tea.errors import StorageDataError, StorageError
from tea.storage.memory import MemoryStorage
from tea.types import Batch


def line(event_id: str, ts: int = 1) -> bytes:
    return json.dumps({"event_type": "t", "event_id": event_id, "tenant_id": "t", "timestamp": ts,
                       "received_at": ts}).encode() + b"\n"


class Recording(MemoryStorage):
    def __init__(self, fail_times: int = 0, poison: str | None = None) -> None:
        super().__init__(max_events=10**6)
        self.fail_times = fail_times
        self.poison = poison
        self.batch_sizes: list[int] = []

    async def write_batch(self, batch: Batch):
        if self.fail_times:
            self.fail_times -= 1
            raise StorageError("connection refused")
        if self.poison and any(e.event_id == self.poison for e in batch):
            raise StorageDataError(f"cannot store {self.poison}")
        self.batch_sizes.append(batch.count)
        return await super().write_batch(batch)


async def run_writer(tmp_path: Path, storage: Recording, lines: list[bytes], **kw) -> Writer:
    buf = DurableBuffer(str(tmp_path / "buffer"), max_bytes=10**7, segment_bytes=10**6)
    await buf.open()
    writer = Writer(buf, storage, dead_letter_path=str(tmp_path / "dead" / "events.ndjson"), **kw)
    task = asyncio.create_task(writer.run())
    for chunk in lines:
        await buf.append(chunk, chunk.count(b"\n"), 1, 1)
    for _ in range(500):
        if writer.available() == 0 and writer.consumed_events == sum(c.count(b"\n") for c in lines):
            break
        await asyncio.sleep(0.01)
    await buf.close()
    writer.stop()
    await asyncio.wait_for(task, 10)
    return writer


def test_retries_until_storage_recovers_and_stores_once(tmp_path: Path) -> None:
    storage = Recording(fail_times=3)
    writer = asyncio.run(run_writer(tmp_path, storage, [line(f"e{i}") for i in range(10)],
                                    flush_interval_s=0.01, max_backoff_s=0.05))
    assert writer.stats.failures == 3 and "connection refused" in (writer.stats.last_error or "")
    assert sorted(e.event_id for e in storage._events.values()) == sorted(f"e{i}" for i in range(10))
    assert writer.stats.events_written == 10


def test_poison_event_is_isolated_to_the_dead_letter_file(tmp_path: Path) -> None:
    storage = Recording(poison="e5")
    writer = asyncio.run(run_writer(tmp_path, storage, [b"".join(line(f"e{i}") for i in range(12))],
                                    flush_interval_s=0.01))
    assert sorted(e.event_id for e in storage._events.values()) == sorted(f"e{i}" for i in range(12) if i != 5)
    assert writer.stats.dead_lettered == 1
    [dead] = [json.loads(x) for x in (tmp_path / "dead" / "events.ndjson").read_text().splitlines()]
    assert dead["event"]["event_id"] == "e5" and "cannot store e5" in dead["reason"]


def test_a_refused_line_that_is_no_valid_event_is_isolated_and_the_writer_goes_on(tmp_path: Path) -> None:
    """A line storage refuses is set aside as the buffer holds it, even when it does not decode as an Event (a
    status code past Int32, say): the writer never stops on it, and the others are stored."""
    bad = line("e3").replace(b'"event_type"', b'"status_code":1099511627776,"event_type"')

    class Refusing(Recording):
        async def write_batch(self, batch: Batch):
            if b"1099511627776" in batch.ndjson():
                raise StorageDataError("out of range")
            return await super().write_batch(batch)

    storage = Refusing()
    lines = [line(f"e{i}") if i != 3 else bad for i in range(8)]
    writer = asyncio.run(run_writer(tmp_path, storage, [b"".join(lines), line("after")], flush_interval_s=0.01))
    assert sorted(e.event_id for e in storage._events.values()) == sorted([f"e{i}" for i in range(8) if i != 3]
                                                                           + ["after"])
    assert writer.stats.dead_lettered == 1
    [dead] = [json.loads(x) for x in (tmp_path / "dead" / "events.ndjson").read_text().splitlines()]
    assert dead["event"]["event_id"] == "e3" and dead["event"]["status_code"] == 2**40


def test_batches_by_size_and_by_interval(tmp_path: Path) -> None:
    storage = Recording()
    chunks = [b"".join(line(f"e{i}-{j}") for j in range(10)) for i in range(25)]  # 250 events

    async def scenario() -> None:
        buf = DurableBuffer(str(tmp_path / "buffer"), max_bytes=10**7, segment_bytes=10**6)
        await buf.open()
        writer = Writer(buf, storage, batch_events=100, flush_interval_s=0.5)
        task = asyncio.create_task(writer.run())
        await asyncio.gather(*(buf.append(c, 10, 1, 1) for c in chunks))
        for _ in range(100):
            if writer.consumed_events >= 200:
                break
            await asyncio.sleep(0.01)
        assert storage.batch_sizes[:2] == [100, 100]  # full batches go at once
        assert writer.available() == 50 and writer.lag_seconds() > 0  # the rest waits for the interval...
        for _ in range(200):
            if writer.consumed_events == 250:
                break
            await asyncio.sleep(0.01)
        assert storage.batch_sizes == [100, 100, 50]  # ...and then goes too
        assert writer.lag_seconds() == 0
        await buf.close()
        writer.stop()
        await task
    asyncio.run(scenario())


def test_stop_drains_without_waiting_for_the_interval(tmp_path: Path) -> None:
    storage = Recording()

    async def scenario() -> None:
        buf = DurableBuffer(str(tmp_path / "buffer"), max_bytes=10**7, segment_bytes=10**6)
        await buf.open()
        writer = Writer(buf, storage, batch_events=1000, flush_interval_s=60)
        task = asyncio.create_task(writer.run())
        await buf.append(b"".join(line(f"e{i}") for i in range(7)), 7, 1, 1)
        await buf.close()
        writer.stop()
        await asyncio.wait_for(task, 5)
        assert len(storage._events) == 7
        assert not list((tmp_path / "buffer").glob("*.seg"))  # drained and released
    asyncio.run(scenario())


def test_a_consumer_that_never_moves_does_not_hold_the_writer_back(tmp_path: Path) -> None:
    """Storing never waits for a processor: with a second consumer of the log stuck at the start, the writer
    stores every batch; the log keeps what that consumer has not passed (and counts it in the backlog) until
    it moves, then deletes the segments."""
    async def scenario() -> None:
        buf = DurableBuffer(str(tmp_path / "buffer"), max_bytes=10**7, segment_bytes=4096)
        stuck = buf.cursor("stuck")
        await buf.open()
        storage = Recording()
        writer = Writer(buf, storage, batch_events=10, flush_interval_s=0.01)
        task = asyncio.create_task(writer.run())
        for i in range(40):
            await buf.append(b"".join(line(f"e{i}-{j}") for j in range(5)), 5, 1, 1)
        for _ in range(500):
            if writer.consumed_events == 200:
                break
            await asyncio.sleep(0.01)
        assert len(storage._events) == 200 and buf.lag_events(buf.writer) == 0
        assert buf.lag_events(stuck) == 200 and buf.lag_seconds(stuck) > 0
        segments = sorted((tmp_path / "buffer").glob("*.seg"))
        assert len(segments) > 2 and buf.backlog_bytes == sum(p.stat().st_size for p in segments)
        buf.advance(stuck, buf.writer.position, 200)
        assert buf.backlog_bytes == 0
        await buf.released()
        assert len(list((tmp_path / "buffer").glob("*.seg"))) == 1
        writer.stop()
        await asyncio.wait_for(task, 10)
        await buf.close()
    asyncio.run(scenario())


def test_a_backlog_is_read_ahead_in_order_from_disk(tmp_path: Path) -> None:
    """With a backlog of several batches and nothing kept in memory, the next batch is read from the
    segment files while the current one is written: every event once, in order."""
    async def scenario() -> list[str]:
        buf = DurableBuffer(str(tmp_path / "buffer"), max_bytes=10**7, segment_bytes=4096, recent_bytes=0)
        await buf.open()
        for i in range(40):
            await buf.append(b"".join(line(f"e{i}-{j}") for j in range(5)), 5, 1, 1)
        storage = Recording()
        writer = Writer(buf, storage, batch_events=20, flush_interval_s=0.01)
        task = asyncio.create_task(writer.run())
        for _ in range(500):
            if writer.consumed_events == 200:
                break
            await asyncio.sleep(0.01)
        writer.stop()
        await asyncio.wait_for(task, 10)
        await buf.close()
        assert buf.disk_reads > 0 and buf.recent.hits == 0
        assert storage.batch_sizes == [20] * 10
        return [e.event_id for e in sorted(storage._events.values(), key=lambda e: e.received_at)]
    ids = asyncio.run(scenario())
    assert sorted(ids) == sorted(f"e{i}-{j}" for i in range(40) for j in range(5)) and len(set(ids)) == 200


def test_the_flush_interval_counts_from_when_the_oldest_waiting_event_arrived(tmp_path: Path) -> None:
    """An event appended while a slow write was running is written one interval after it arrived,
    not one interval after the writer got round to it."""
    class Slow(Recording):
        async def write_batch(self, batch: Batch):
            if not self.batch_sizes:
                await asyncio.sleep(0.8)
            return await super().write_batch(batch)

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        buf = DurableBuffer(str(tmp_path / "buffer"), max_bytes=10**7, segment_bytes=10**6)
        await buf.open()
        storage = Slow()
        writer = Writer(buf, storage, batch_events=2, flush_interval_s=1.0)
        task = asyncio.create_task(writer.run())
        started = loop.time()
        await buf.append(line("a") + line("b"), 2, 1, 1)  # a full batch: written at once, slowly
        await asyncio.sleep(0.05)
        await buf.append(line("c"), 1, 1, 1)  # waits for a partner or the interval, from now
        while writer.stats.events_written < 3 and loop.time() - started < 5:
            await asyncio.sleep(0.01)
        took = loop.time() - started
        writer.stop()
        await asyncio.wait_for(task, 10)
        await buf.close()
        return took
    took = asyncio.run(scenario())
    assert took < 1.5, f"c was written {took:.2f} s after start: its interval began when the writer saw it (≈1.8 s)"


def test_an_idle_writer_sleeps_and_flush_writes_at_once(tmp_path: Path) -> None:
    async def go() -> None:
        storage = Recording()
        buf = DurableBuffer(str(tmp_path / "buffer"), max_bytes=10**7, segment_bytes=10**6)
        await buf.open()
        writer = Writer(buf, storage, batch_events=1000, flush_interval_s=60.0)  # only flush() writes one event now
        task = asyncio.create_task(writer.run())
        await asyncio.sleep(0.3)
        assert writer.trigger.waits == 1  # asleep since it started: no polling while idle
        await buf.append(line("a"), 1, 1, 1)
        await asyncio.sleep(0.05)
        assert writer.consumed_events == 0  # one event of 1000, 60 s interval: still waiting
        writer.flush()
        for _ in range(500):
            if writer.consumed_events == 1:
                break
            await buf.writer.advanced.wait(0.01)
        assert writer.consumed_events == 1 and storage.batch_sizes == [1]
        await buf.close()
        writer.stop()
        await asyncio.wait_for(task, 10)
    asyncio.run(go())
