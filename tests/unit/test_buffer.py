"""The durable buffer: record format, recovery, group commit, bounds, release."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tea.buffer import segments as seg
from tea.buffer.log import DurableBuffer, Position
from tea.errors import BufferFull


def run(coro):
    return asyncio.run(coro)


def make(path: Path, **kw) -> DurableBuffer:
    kw.setdefault("max_bytes", 10 * 1024 * 1024)
    kw.setdefault("segment_bytes", 1024 * 1024)
    return DurableBuffer(str(path), **kw)


def payload(n: int, tag: str = "x") -> bytes:
    return b"".join(b'{"event_type":"%s","i":%d}\n' % (tag.encode(), i) for i in range(n))


async def drain(buf: DurableBuffer, pos: Position | None = None) -> tuple[list[seg.Record], Position]:
    pos = pos or buf.start
    out: list[seg.Record] = []
    while buf.has_data(pos):
        records, pos, _spanned = await buf.read(buf.next_position(pos), 1000)
        out += records
        buf.advance(buf.writer, pos, sum(r.count for r in records))
    return out, pos


def test_record_roundtrip_and_checksum(tmp_path: Path) -> None:
    path = tmp_path / "1.seg"
    data = seg.encode_record(b"hello\n", 1, 10, 20, 30) + seg.encode_record(b"world\n", 2, 5, 6, 7)
    path.write_bytes(data)
    records = list(seg.read_records(str(path), 0))
    assert [(r.payload, r.count, r.min_ts, r.max_ts, r.append_ts) for r in records] == [
        (b"hello\n", 1, 10, 20, 30), (b"world\n", 2, 5, 6, 7)]
    corrupted = bytearray(data)
    corrupted[seg.HEADER.size + 1] ^= 0xFF
    path.write_bytes(bytes(corrupted))
    with pytest.raises(seg.CorruptRecord, match="checksum"):
        list(seg.read_records(str(path), 0))


@pytest.mark.parametrize("cut", [1, seg.HEADER.size - 1, seg.HEADER.size + 2])
def test_torn_tail_is_cut_at_recovery(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "1.seg"
    good = seg.encode_record(b"a\n", 1, 1, 1, 1)
    torn = seg.encode_record(b"bbbbbbbb\n", 1, 1, 1, 1)[:cut]
    path.write_bytes(good + torn)
    valid, events, removed = seg.recover_segment(str(path))
    assert (valid, events, removed) == (len(good), 1, cut)
    assert path.read_bytes() == good


def test_append_read_release(tmp_path: Path) -> None:
    async def scenario() -> None:
        buf = make(tmp_path)
        await buf.open()
        await buf.append(payload(3), 3, 1, 3)
        await buf.append(payload(2, "y"), 2, 4, 5)
        assert buf.durable_events == 5 and buf.backlog_bytes > 0
        records, _ = await drain(buf)
        assert [r.count for r in records] == [3, 2] and records[1].payload == payload(2, "y")
        assert buf.backlog_bytes == 0
        await buf.close()
    run(scenario())


def test_group_commit_serves_many_appends_with_few_writes(tmp_path: Path) -> None:
    async def scenario() -> int:
        buf = make(tmp_path)
        await buf.open()
        writes = 0
        original = buf._write_group

        def counting(records):
            nonlocal writes
            writes += 1
            return original(records)
        buf._write_group = counting  # type: ignore[method-assign]
        await asyncio.gather(*(buf.append(payload(1), 1, 1, 1) for _ in range(500)))
        assert buf.durable_events == 500
        await buf.close()
        return writes
    writes = run(scenario())
    assert 1 <= writes < 100  # each fsync served many waiting appends


def test_acknowledged_appends_survive_reopen_and_replay(tmp_path: Path) -> None:
    async def first() -> None:
        buf = make(tmp_path)
        await buf.open()
        for i in range(10):
            await buf.append(payload(1, f"e{i}"), 1, i, i)
        # no close(): simulate a crash after acknowledgement (files are fsynced already)
        buf._io.shutdown(wait=True)

    async def second() -> list[seg.Record]:
        buf = make(tmp_path)
        await buf.open()
        assert buf.replay_events == 10 and buf.backlog_bytes > 0
        records, _ = await drain(buf)
        await buf.close()
        return records
    run(first())
    records = run(second())
    assert [r.payload for r in records] == [payload(1, f"e{i}") for i in range(10)]


def test_checkpoint_skips_committed_records_after_restart(tmp_path: Path) -> None:
    async def first() -> None:
        buf = make(tmp_path)
        await buf.open()
        await buf.append(payload(1, "committed"), 1, 1, 1)
        records, pos, _spanned = await buf.read(buf.start, 10)
        buf.advance(buf.writer, pos, 1)  # storage committed it
        await buf.append(payload(1, "pending"), 1, 2, 2)
        buf._io.shutdown(wait=True)

    async def second() -> list[seg.Record]:
        buf = make(tmp_path)
        await buf.open()
        assert buf.replay_events == 1
        records, _ = await drain(buf)
        await buf.close()
        return records
    run(first())
    assert [r.payload for r in run(second())] == [payload(1, "pending")]


def test_segments_roll_and_are_deleted_once_released(tmp_path: Path) -> None:
    async def scenario() -> None:
        buf = make(tmp_path, segment_bytes=4096)
        await buf.open()
        for _ in range(40):
            await buf.append(payload(20), 20, 1, 1)
        assert len(seg.list_segments(str(tmp_path))) > 3
        records, _ = await drain(buf)
        assert sum(r.count for r in records) == 800
        await buf.released()  # (deleted on the buffer's release thread, after every position is fsynced)
        assert len(seg.list_segments(str(tmp_path))) == 1  # only the active one is left
        await buf.close()
        assert seg.list_segments(str(tmp_path)) == []  # drained and closed: nothing left
    run(scenario())


def test_segment_ids_never_go_back_so_a_checkpoint_cannot_swallow_new_data(tmp_path: Path) -> None:
    async def cycle(tag: str, drain_all: bool) -> None:
        buf = make(tmp_path)
        await buf.open()
        await buf.append(payload(1, tag), 1, 1, 1)
        if drain_all:
            await drain(buf)
            await buf.close()
        else:
            buf._io.shutdown(wait=True)

    async def remaining() -> list[bytes]:
        buf = make(tmp_path)
        await buf.open()
        records, _ = await drain(buf)
        await buf.close()
        return [r.payload for r in records]
    run(cycle("a", drain_all=True))   # leaves a checkpoint past every segment
    run(cycle("b", drain_all=False))  # crash with "b" acknowledged but not stored
    assert run(remaining()) == [payload(1, "b")]


def test_backlog_bound_raises_buffer_full(tmp_path: Path) -> None:
    async def scenario() -> None:
        buf = make(tmp_path, max_bytes=2000)
        await buf.open()
        await buf.append(payload(10), 10, 1, 1)
        with pytest.raises(BufferFull) as info:
            for _ in range(20):
                await buf.append(payload(10), 10, 1, 1)
        assert info.value.status == 503 and info.value.headers["retry-after"]
        assert buf.refusing and buf.backlog_bytes <= 2000
        await drain(buf)
        assert not buf.refusing
        await buf.append(payload(10), 10, 1, 1)  # room again
        await buf.close()
    run(scenario())


def test_memory_ack_returns_before_fsync_and_still_writes(tmp_path: Path) -> None:
    async def scenario() -> None:
        buf = make(tmp_path, ack="memory", fsync_interval_s=0.01)
        await buf.open()
        await buf.append(payload(5), 5, 1, 1)
        assert buf.durable_events == 0  # acknowledged before the write
        for _ in range(200):
            if buf.durable_events == 5:
                break
            await asyncio.sleep(0.01)
        records, _ = await drain(buf)
        assert sum(r.count for r in records) == 5
        await buf.close()
    run(scenario())


def test_appends_after_close_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        buf = make(tmp_path)
        await buf.open()
        await buf.close()
        with pytest.raises(Exception, match="shutting down"):
            await buf.append(payload(1), 1, 1, 1)
    run(scenario())


def test_write_failure_fails_the_waiters_and_leaves_no_torn_record(tmp_path: Path) -> None:
    async def scenario() -> None:
        buf = make(tmp_path)
        await buf.open()
        await buf.append(payload(1, "before"), 1, 1, 1)
        real_write, real_writev = os.write, os.writev
        calls = 0

        def short_writev(fd, parts):  # the disk takes 7 bytes of the record, then fails
            return real_write(fd, b"".join(parts)[:7])

        def failing_write(fd, data):
            nonlocal calls
            calls += 1
            raise OSError(28, "No space left on device")
        os.write, os.writev = failing_write, short_writev  # type: ignore[assignment]
        try:
            with pytest.raises(Exception, match="buffer write failed"):
                await buf.append(payload(1, "lost"), 1, 1, 1)
        finally:
            os.write, os.writev = real_write, real_writev  # type: ignore[assignment]
        assert calls == 1 and buf.write_errors == 1
        await buf.append(payload(1, "after"), 1, 1, 1)
        records, _ = await drain(buf)
        assert [r.payload for r in records] == [payload(1, "before"), payload(1, "after")]
        await buf.close()
    run(scenario())


@pytest.mark.parametrize("recent_bytes", [256 * 1024 * 1024, 3000, 0])
def test_reads_from_memory_match_the_segment_files(tmp_path: Path, recent_bytes: int) -> None:
    """The writer's reads give the same records, positions and spans whether they come from the recent
    records kept in memory or from disk — across segment rolls, with the memory bound evicting, or off."""
    async def scenario() -> None:
        buf = make(tmp_path / "live", segment_bytes=4096, recent_bytes=recent_bytes)
        await buf.open()
        sent = [payload(1 + i % 7, tag=f"t{i}") for i in range(60)]
        for start in range(0, 60, 6):  # bursts: group commits of several records, split by the reads below
            await asyncio.gather(*(buf.append(sent[i], 1 + i % 7, i, i + 1) for i in range(start, start + 6)))
        got, end = [], buf.start
        while buf.has_data(end):
            records, after, spanned = await buf.read(buf.next_position(end), 9)
            assert spanned == sum(r.end - r.offset for r in records) and records
            got += records
            end = after  # not released: the files stay for the comparison below
        assert [r.payload for r in got] == sent and buf.next_position(end) == buf.durable_end
        hits, reads = buf.recent.hits, buf.disk_reads
        await buf.close()
        disk = DurableBuffer(str(tmp_path / "live"), max_bytes=10 * 1024 * 1024, segment_bytes=4096, recent_bytes=0)
        await disk.open()
        again, _ = await drain(disk)
        assert [(r.offset, r.end, r.count, r.min_ts, r.max_ts, r.append_ts, r.payload) for r in again] == \
            [(r.offset, r.end, r.count, r.min_ts, r.max_ts, r.append_ts, r.payload) for r in got]
        await disk.close()
        if recent_bytes > 100_000:
            assert (hits, reads) == (60, 0)
        elif recent_bytes == 0:
            assert (hits, reads) == (0, 60)
        else:
            assert hits + reads == 60 and reads > 0
    run(scenario())


def test_the_bound_counts_the_slowest_consumer(tmp_path: Path) -> None:
    """Storage has everything, but a processor has not read it: the log keeps it, counts it against
    max_bytes and refuses appends past it; once the processor moves on there is room again."""
    async def scenario() -> None:
        buf = make(tmp_path, max_bytes=4000, segment_bytes=1000)
        slow = buf.cursor("slow")
        await buf.open()
        with pytest.raises(BufferFull):
            for _ in range(100):
                await buf.append(payload(10), 10, 1, 1)
                await drain(buf)  # the writer keeps up
        assert buf.lag_events(buf.writer) == 0 and buf.lag_events(slow) > 0
        assert buf.refusing and 4000 - seg.record_size(payload(10)) < buf.backlog_bytes <= 4000
        records, pos, _ = await buf.read(slow.position, 10**6, limit=buf.writer.position)
        buf.advance(slow, pos, sum(r.count for r in records))
        assert buf.backlog_bytes == 0 and not buf.refusing and buf.lag_events(slow) == 0
        await buf.append(payload(10), 10, 1, 1)  # room again
        await buf.close()
    run(scenario())


def test_each_consumer_resumes_from_its_own_position_after_a_crash(tmp_path: Path) -> None:
    """The writer and a processor at different places when the process dies: after the restart each reads
    on from its own position (the processor sees again what it had not passed, nothing it had), segments
    it still needs were kept, and a consumer that no longer exists leaves no position behind."""
    async def first() -> None:
        buf = make(tmp_path, segment_bytes=600)
        proc, gone = buf.cursor("proc"), buf.cursor("gone")
        await buf.open()
        for i in range(12):
            await buf.append(payload(3, f"r{i}"), 3, i, i)
        records, pos, _ = await buf.read(proc.position, 12)  # the processor passed the first four records
        buf.advance(proc, pos, 12)
        records, pos, _ = await buf.read(gone.position, 3)
        buf.advance(gone, pos, 3)  # (a processor removed before the next start)
        await drain(buf)  # the writer passed everything
        assert buf.lag_events(proc) == 24 and buf.lag_events(gone) == 33
        assert (tmp_path / "checkpoint.gone").exists()
        buf._io.shutdown(wait=True)  # no close(): a crash

    async def second() -> None:
        buf = make(tmp_path, segment_bytes=600)
        proc = buf.cursor("proc")
        await buf.open()
        assert not (tmp_path / "checkpoint.gone").exists()
        assert buf.replay_events == 0 and buf.lag_events(buf.writer) == 0 and buf.lag_events(proc) == 24
        records, _, _ = await buf.read(proc.position, 100, limit=buf.writer.position)
        assert [r.payload for r in records] == [payload(3, f"r{i}") for i in range(4, 12)]
        await buf.close()
    run(first())
    run(second())


def test_records_in_memory_carry_the_event_types_they_were_appended_with(tmp_path: Path) -> None:
    """Readers skip records by their event types only when memory knows them; read back from disk, a record's
    types are unknown (None) and its lines are searched."""
    async def scenario() -> None:
        buf = make(tmp_path)
        await buf.open()
        spans, metrics = frozenset(["span"]), frozenset(["metric"])
        await buf.append(payload(2), 2, 1, 1, spans)
        await buf.append(payload(2), 2, 1, 1, metrics)
        records, _, _ = await buf.read(buf.writer.position, 1000)
        assert [r.kinds for r in records] == [spans, metrics] and seg.kinds_of(records) == spans | metrics
        await buf.append(payload(1), 1, 1, 1)  # (a caller that does not know them)
        records, _, _ = await buf.read(buf.writer.position, 1000)
        assert records[-1].kinds is None and seg.kinds_of(records) is None
        await buf.close()
        reopened = make(tmp_path, recent_bytes=0)
        await reopened.open()
        records, _, _ = await reopened.read(reopened.writer.position, 1000)
        assert [r.count for r in records] == [2, 2, 1] and all(r.kinds is None for r in records)
        await reopened.close()
    run(scenario())


def test_records_known_to_hold_no_wanted_type_are_passed_as_a_read_would(tmp_path: Path) -> None:
    """``skip`` passes, without building records, exactly the run of records a read would return whose event
    types are known and none wanted — whole groups and single records, from any record boundary, up to a
    limit — and answers None where the next record may hold a wanted type (or is not in memory)."""
    async def scenario() -> None:
        buf = make(tmp_path, segment_bytes=700)
        await buf.open()
        a, b, ab = frozenset(["a"]), frozenset(["b"]), frozenset(["a", "b"])
        groups = [[b, b, b], [b], [a, b], [b, None], [ab], [b, b], [b, b, b, b], [a], [b]]
        for group in groups:  # appends made together share one group commit
            await asyncio.gather(*(buf.append(payload(2), 2, 1, 1, kinds) for kinds in group))
        records, end, _ = await buf.read(buf.writer.position, 1000)
        assert [r.kinds for r in records] == [k for g in groups for k in g]
        starts, pos = [], buf.writer.position
        while buf.has_data(pos):  # each record's position, one read at a time
            starts.append(buf.next_position(pos))
            _, pos, _ = await buf.read(starts[-1], 1)
        assert len(starts) == len(records) and len({s.segment for s in starts}) > 2
        for i, start in enumerate(starts):
            for limit in [end] + starts[i + 1:]:
                expected_events, expected_at = 0, None
                for j in range(i, len(records)):
                    if j < len(starts) and starts[j] >= limit or records[j].kinds is None or "a" in records[j].kinds:
                        break
                    expected_events += records[j].count
                    expected_at = starts[j + 1] if j + 1 < len(starts) else end
                got = buf.skip(start, 1000, limit, a)
                if expected_events == 0:
                    assert got is None
                else:
                    assert got is not None and got[1] == expected_events
                    assert buf.next_position(got[0]) == buf.next_position(expected_at)
        passed = buf.skip(starts[0], 3, end, a)  # stops once max_events are passed
        assert passed is not None and 3 <= passed[1] < 8
        await buf.close()
    run(scenario())
