"""ProcessorRunner on its own: batches cut at batch_size or flushed after batch_timeout, retry_attempts
counted as Telemetron counts them, Telemetron's processor metrics with its meaning, and a DLQ entry
that storage refuses kept in the fallback file (then moved into storage)."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest

from tea.telemetry import Telemetry
from tea.pipeline.process import ProcessorRunner
from tea.storage.memory import MemoryStorage
from tea.types import Batch, DeadLetter, Event

T0 = 1_767_225_600_000_000


def batch(*ids: str) -> Batch:
    return Batch.from_events([Event(event_type="x", event_id=i, tenant_id="t", timestamp=T0, received_at=T0,
                                    attributes=msgspec.Raw(b"{}")) for i in ids])


class Recorder:
    def __init__(self, fail: int = 0) -> None:
        self.fail, self.calls = fail, 0
        self.batches: list[tuple[float, list[str]]] = []

    async def __call__(self, events: list[Event]) -> None:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise RuntimeError("sink down")
        self.batches.append((time.monotonic(), [e.event_id for e in events]))  # type: ignore[misc]


def sample(t: Telemetry, name: str, **labels: str) -> float:
    return t.registry.get_sample_value(name, labels) or 0.0


async def until(predicate, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_batches_are_cut_at_batch_size_and_the_rest_flushed_after_batch_timeout() -> None:
    async def main() -> None:
        sink = Recorder()
        runner = ProcessorRunner([("sink", sink)], MemoryStorage(), batch_size=3, batch_timeout_s=0.5)
        task = asyncio.create_task(runner.run())
        sent = time.monotonic()
        await runner.submit(batch(*[f"e{i}" for i in range(7)]))
        await until(lambda: len(sink.batches) == 2, 0.4)  # two full batches at once, not after the timeout
        assert [ids for _, ids in sink.batches] == [["e0", "e1", "e2"], ["e3", "e4", "e5"]]
        await until(lambda: len(sink.batches) == 3)
        at, rest = sink.batches[2]
        assert rest == ["e6"] and at - sent >= 0.45  # the partial batch waited for batch_timeout
        task.cancel()
    asyncio.run(main())


def test_retry_attempts_count_every_try_and_metrics_have_telemetrons_meaning() -> None:
    async def main() -> None:
        t = Telemetry()
        good, bad = Recorder(), Recorder(fail=10)
        storage = MemoryStorage()
        runner = ProcessorRunner([("good", good), ("bad", bad)], storage, batch_size=2, batch_timeout_s=0.01,
                                 retry_attempts=3, retry_delay_s=0.0, telemetry=t)
        await runner.submit(batch("a", "b"))
        await runner.drain()
        assert bad.calls == 3 and good.calls == 1  # 3 tries in all, as Telemetron
        assert sample(t, "telemetron_processor_plugin_errors_total", plugin="bad") == 1  # once per DLQ'd batch
        assert sample(t, "telemetron_processor_plugin_duration_seconds_count", plugin="bad", status="error") == 1
        assert sample(t, "telemetron_processor_plugin_duration_seconds_count", plugin="bad", status="success") == 0
        assert sample(t, "telemetron_processor_plugin_duration_seconds_count", plugin="good", status="success") == 1
        assert sample(t, "telemetron_events_processed_total") == 0  # one processor failed on the batch
        [entry] = await storage.list_dead_letters()
        assert (entry.stage, entry.attempts, entry.event_count) == ("bad", 3, 2)

        bad.fail = 2  # fails twice, succeeds on the third (last) try
        await runner.submit(batch("c", "d"))
        await runner.drain()
        assert sample(t, "telemetron_processor_plugin_errors_total", plugin="bad") == 1
        assert sample(t, "telemetron_processor_plugin_duration_seconds_count", plugin="bad", status="success") == 1
        assert sample(t, "telemetron_events_processed_total") == 2  # both processors succeeded
        assert len(await storage.list_dead_letters()) == 1
    asyncio.run(main())


@pytest.mark.parametrize("attempts, calls", [(0, 1), (1, 1), (2, 2)])
def test_zero_and_one_attempt_both_mean_one_try(attempts: int, calls: int) -> None:
    async def main() -> None:
        bad = Recorder(fail=10)
        runner = ProcessorRunner([("bad", bad)], MemoryStorage(), batch_size=1, retry_attempts=attempts,
                                 retry_delay_s=0.0)
        await runner.submit(batch("a"))
        await runner.drain()
        assert bad.calls == calls
    asyncio.run(main())


def test_events_no_processor_gets_count_as_processed_at_the_commit() -> None:
    async def main() -> None:
        t = Telemetry()
        await ProcessorRunner([], MemoryStorage(), telemetry=t).submit(batch("a", "b", "c"))
        assert sample(t, "telemetron_events_processed_total") == 3

        class Picky(Recorder):
            def wants(self, line: bytes) -> bool:
                return b'"want"' in line
        picky = Picky()
        runner = ProcessorRunner([("picky", picky)], MemoryStorage(), batch_size=10, telemetry=t)
        await runner.submit(batch("want", "skip1", "skip2"))
        assert sample(t, "telemetron_events_processed_total") == 5  # the two nobody wants, at once
        await runner.drain()
        assert [ids for _, ids in picky.batches] == [["want"]]
        assert sample(t, "telemetron_events_processed_total") == 6
    asyncio.run(main())


class RefusingStorage(MemoryStorage):
    async def add_dead_letter(self, entry: DeadLetter) -> None:
        raise ConnectionError("storage unreachable")


def test_a_dead_letter_storage_refuses_goes_to_the_fallback_file_then_into_storage(tmp_path: Path) -> None:
    fallback = tmp_path / "dead-letter" / "dlq.ndjson"

    async def main() -> None:
        t = Telemetry()
        bad = Recorder(fail=10)
        runner = ProcessorRunner([("bad", bad)], RefusingStorage(), batch_size=5, retry_attempts=1,
                                 retry_delay_s=0.0, telemetry=t, fallback_path=str(fallback))
        await runner.submit(batch("a", "b"))
        await runner.drain()
        assert runner.dlq_fallback == 1 and sample(t, "tea_dlq_fallback_entries_total", stage="bad") == 1
        assert sample(t, "tea_dlq_entries_total", stage="bad") == 1
        [kept] = [msgspec.json.decode(line, type=DeadLetter) for line in fallback.read_bytes().splitlines()]
        assert (kept.stage, kept.event_count) == ("bad", 2) and b'"a"' in kept.payload.encode()

        storage = MemoryStorage()  # the next start: storage works again
        restarted = ProcessorRunner([("bad", bad)], storage, fallback_path=str(fallback))
        assert await restarted.recover_fallback() == 1
        assert not fallback.exists()
        [entry] = await storage.list_dead_letters()
        assert entry == kept  # listable and replayable again
        assert await restarted.recover_fallback() == 0
    asyncio.run(main())


def test_the_fallback_file_stays_while_storage_still_refuses(tmp_path: Path) -> None:
    fallback = tmp_path / "dlq.ndjson"
    entry = DeadLetter(id="d1", at=T0, stage="s", error="E", attempts=1, event_count=1, payload="{}\n")
    fallback.write_bytes(msgspec.json.encode(entry) + b"\n")

    async def main() -> None:
        assert await ProcessorRunner([], RefusingStorage(), fallback_path=str(fallback)).recover_fallback() == 0
        assert fallback.exists()
        storage = MemoryStorage()
        await storage.add_dead_letter(entry)  # already moved once (a crash before the file went): not twice
        assert await ProcessorRunner([], storage, fallback_path=str(fallback)).recover_fallback() == 0
        assert not fallback.exists() and len(await storage.list_dead_letters()) == 1
    asyncio.run(main())
