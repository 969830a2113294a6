"""ProcessorRunner over a real durable log: batches cut at batch_size or flushed after batch_timeout,
retry_attempts counted as Telemetron counts them, Telemetron's processor metrics with its meaning, and a
DLQ entry that storage refuses kept in the fallback file (then moved into storage)."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest

from tea.buffer.log import DurableBuffer
from tea.telemetry import Telemetry
from tea.pipeline.process import ProcessorRunner
from tea.storage.memory import MemoryStorage
from tea.types import DeadLetter, Event
from tests.consumers import Log, until

T0 = 1_767_225_600_000_000


def batch(*ids: str) -> list[Event]:
    return [Event(event_type="x", event_id=i, tenant_id="t", timestamp=T0, received_at=T0,
                  attributes=msgspec.Raw(b"{}")) for i in ids]


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


def test_batches_are_cut_at_batch_size_and_the_rest_flushed_after_batch_timeout(tmp_path: Path) -> None:
    async def main() -> None:
        sink = Recorder()
        async with Log(tmp_path, [("sink", sink)], MemoryStorage(), batch_size=3, batch_timeout_s=0.5) as log:
            await log.append(batch(*[f"e{i}" for i in range(7)]))
            await asyncio.sleep(0.2)
            assert sink.calls == 0  # not committed by the writer yet: a processor never runs ahead of storage
            sent = time.monotonic()
            log.commit()
            await until(lambda: len(sink.batches) == 2, 0.4)  # two full batches at once, not after the timeout
            assert [ids for _, ids in sink.batches] == [["e0", "e1", "e2"], ["e3", "e4", "e5"]]
            await until(lambda: len(sink.batches) == 3)
            at, rest = sink.batches[2]
            assert rest == ["e6"] and at - sent >= 0.45  # the partial batch waited for batch_timeout
    asyncio.run(main())


def test_retry_attempts_count_every_try_and_metrics_have_telemetrons_meaning(tmp_path: Path) -> None:
    async def main() -> None:
        t = Telemetry()
        good, bad = Recorder(), Recorder(fail=10)
        storage = MemoryStorage()
        async with Log(tmp_path, [("good", good), ("bad", bad)], storage, batch_size=2, batch_timeout_s=0.01,
                       retry_attempts=3, retry_delay_s=0.0, telemetry=t) as log:
            await retry_scenario(log, t, good, bad, storage)
    asyncio.run(main())


async def retry_scenario(log: Log, t: Telemetry, good: Recorder, bad: Recorder, storage: MemoryStorage) -> None:
    await log.commit_records(batch("a", "b"))
    await log.passed()
    assert bad.calls == 3 and good.calls == 1  # 3 tries in all, as Telemetron
    assert sample(t, "telemetron_processor_plugin_errors_total", plugin="bad") == 1  # once per DLQ'd batch
    assert sample(t, "telemetron_processor_plugin_duration_seconds_count", plugin="bad", status="error") == 1
    assert sample(t, "telemetron_processor_plugin_duration_seconds_count", plugin="bad", status="success") == 0
    assert sample(t, "telemetron_processor_plugin_duration_seconds_count", plugin="good", status="success") == 1
    assert sample(t, "telemetron_events_processed_total") == 0  # one processor failed on the batch
    [entry] = await storage.list_dead_letters()
    assert (entry.stage, entry.attempts, entry.event_count) == ("bad", 3, 2)

    bad.fail = 2  # fails twice, succeeds on the third (last) try
    await log.commit_records(batch("c", "d"))
    await log.passed()
    assert sample(t, "telemetron_processor_plugin_errors_total", plugin="bad") == 1
    assert sample(t, "telemetron_processor_plugin_duration_seconds_count", plugin="bad", status="success") == 1
    assert sample(t, "telemetron_events_processed_total") == 2  # both processors succeeded
    assert len(await storage.list_dead_letters()) == 1


@pytest.mark.parametrize("attempts, calls", [(0, 1), (1, 1), (2, 2)])
def test_zero_and_one_attempt_both_mean_one_try(tmp_path: Path, attempts: int, calls: int) -> None:
    async def main() -> None:
        bad = Recorder(fail=10)
        async with Log(tmp_path, [("bad", bad)], MemoryStorage(), batch_size=1, retry_attempts=attempts,
                       retry_delay_s=0.0) as log:
            await log.commit_records(batch("a"))
            await log.passed()
        assert bad.calls == calls
    asyncio.run(main())


def test_events_count_as_processed_once_every_processor_passed_them(tmp_path: Path) -> None:
    """With no processor, events count as processed when the writer commits them; with processors, when every
    one has passed them (those a processor does not want included)."""
    async def main() -> None:
        t = Telemetry()
        async with Log(tmp_path / "none", [], MemoryStorage(), telemetry=t) as log:
            await log.commit_records(batch("a", "b", "c"))
            await until(lambda: sample(t, "telemetron_events_processed_total") == 3)

        class Picky(Recorder):
            def wants(self, line: bytes) -> bool:
                return b'"want"' in line
        picky = Picky()
        async with Log(tmp_path / "picky", [("picky", picky)], MemoryStorage(), batch_size=10,
                       batch_timeout_s=0.2, telemetry=t) as log:
            await log.commit_records(batch("want", "skip1", "skip2"), batch("skip3"))
            await asyncio.sleep(0.05)
            assert sample(t, "telemetron_events_processed_total") == 3  # "want" waits for a batch, so do the rest
            await log.passed()
            assert [ids for _, ids in picky.batches] == [["want"]]
            assert sample(t, "telemetron_events_processed_total") == 7
    asyncio.run(main())


class RefusingStorage(MemoryStorage):
    async def add_dead_letter(self, entry: DeadLetter) -> None:
        raise ConnectionError("storage unreachable")


def test_a_dead_letter_storage_refuses_goes_to_the_fallback_file_then_into_storage(tmp_path: Path) -> None:
    fallback = tmp_path / "dead-letter" / "dlq.ndjson"

    async def main() -> None:
        t = Telemetry()
        bad = Recorder(fail=10)
        async with Log(tmp_path / "log", [("bad", bad)], RefusingStorage(), batch_size=5, retry_attempts=1,
                       retry_delay_s=0.0, telemetry=t, fallback_path=str(fallback)) as log:
            await log.commit_records(batch("a", "b"))
            await log.passed()
        runner = log.runner
        assert runner.dlq_fallback == 1 and sample(t, "tea_dlq_fallback_entries_total", stage="bad") == 1
        assert sample(t, "tea_dlq_entries_total", stage="bad") == 1
        [kept] = [msgspec.json.decode(line, type=DeadLetter) for line in fallback.read_bytes().splitlines()]
        assert (kept.stage, kept.event_count) == ("bad", 2) and b'"a"' in kept.payload.encode()

        storage = MemoryStorage()  # the next start: storage works again
        restarted = ProcessorRunner([("bad", bad)], storage, unopened(tmp_path), fallback_path=str(fallback))
        assert await restarted.recover_fallback() == 1
        assert not fallback.exists()
        [entry] = await storage.list_dead_letters()
        assert entry == kept  # listable and replayable again
        assert await restarted.recover_fallback() == 0
    asyncio.run(main())


def unopened(path: Path) -> DurableBuffer:
    return DurableBuffer(str(path / "buffer"), max_bytes=10**6, segment_bytes=10**5)


def test_the_fallback_file_stays_while_storage_still_refuses(tmp_path: Path) -> None:
    fallback = tmp_path / "dlq.ndjson"
    entry = DeadLetter(id="d1", at=T0, stage="s", error="E", attempts=1, event_count=1, payload="{}\n")
    fallback.write_bytes(msgspec.json.encode(entry) + b"\n")

    async def main() -> None:
        refusing = ProcessorRunner([], RefusingStorage(), unopened(tmp_path), fallback_path=str(fallback))
        assert await refusing.recover_fallback() == 0
        assert fallback.exists()
        storage = MemoryStorage()
        await storage.add_dead_letter(entry)  # already moved once (a crash before the file went): not twice
        assert await ProcessorRunner([], storage, unopened(tmp_path), fallback_path=str(fallback)).recover_fallback() == 0
        assert not fallback.exists() and len(await storage.list_dead_letters()) == 1
    asyncio.run(main())
