"""The durable buffer: acknowledged events live here, on disk, until storage has committed them.

Appends from many requests are grouped: one write and one fsync serve every request waiting on
that group (group commit), done on a dedicated thread so the event loop never blocks on disk.
``append`` returns only when the record is durable (``ack="durable"``) or, with ``ack="memory"``,
as soon as it is queued — then fsync runs every ``fsync_interval_s`` and a crash can lose what
was queued but not yet written.

Every bound is explicit: the backlog (bytes appended but not yet committed to storage) stays
under ``max_bytes``; past it ``append`` raises ``BufferFull`` (503 with Retry-After).

The writer reads records back in order. The most recent ones (up to ``recent_bytes``) are also kept
in memory once durable — the very payload objects the requests appended — so under steady load the
writer takes them from there instead of reading and checksumming the segment files again (a read
that, record by record, kept handing the GIL back and forth with the event loop). Anything older,
and everything after a restart, is read from disk and checked.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from tea.buffer import segments as seg
from tea.errors import BufferFull, Unavailable
from tea.timeutil import now_us

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint"


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int


class DurableBuffer:
    def __init__(self, directory: str, *, max_bytes: int, segment_bytes: int, ack: str = "durable",
                 fsync_interval_s: float = 0.2, clock: Callable[[], int] = now_us,
                 recent_bytes: int = 256 * 1024 * 1024) -> None:
        if ack not in ("durable", "memory"):
            raise ValueError("ack must be 'durable' or 'memory'")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.ack = ack
        self.fsync_interval_s = fsync_interval_s
        self.clock = clock
        self._io = ThreadPoolExecutor(1, thread_name_prefix="tea-buffer-io")
        # appended, not yet written: (payload, count, min_ts, max_ts, append_ts) per record; the I/O thread
        # encodes the headers (the checksum of a large payload runs there, without the GIL) and writes them
        self._pending: list[tuple[bytes, int, int, int, int]] = []
        # durable groups still in memory, oldest first, contiguous; touched by the loop only. One entry per
        # group commit, (segment, start, end, its records' metadata): nothing is built per record until the
        # writer reads it, so a single-event request pays one tuple for this.
        self.recent_bytes = min(recent_bytes, max_bytes)
        self._recent: deque[tuple[int, int, int, list[tuple[bytes, int, int, int, int]]]] = deque()
        self._recent_size = 0
        self.recent_hits = 0   # records the writer took from memory
        self.disk_reads = 0    # records it read back from the segment files
        self._waiters: list[asyncio.Future[None]] = []
        self._pending_events = 0
        self._wake: asyncio.Event | None = None
        self._data: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._closed = True
        # state touched only by the io thread
        self._fd = -1
        self._active = 0
        self._active_size = 0
        self._last_sync = 0.0
        # state touched only by the event loop thread
        self._sealed: dict[int, int] = {}   # segment id -> final size
        self.durable_end = Position(0, 0)
        self.start = Position(0, 0)         # where the writer resumes after open
        self.durable_events = 0             # events made durable since open (incl. replayed backlog)
        self.replay_events = 0              # events found on disk at open
        self.replay_end = Position(0, 0)
        self._appended_bytes = 0
        self._released_bytes = 0
        self.write_errors = 0
        self.corrupt_records = 0
        self.refusing = False  # set when an append was refused; cleared once the backlog is under 90 %

    # ----------------------------------------------------------------- lifecycle
    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._data = asyncio.Event()
        await loop.run_in_executor(self._io, self._open_sync)
        self._closed = False
        self._flusher = asyncio.create_task(self._flush_loop(), name="tea-buffer-flusher")
        if self.replay_events:
            self._data.set()

    def _open_sync(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        checkpoint = self._read_checkpoint()
        ids = seg.list_segments(self.directory)
        for segment_id in [i for i in ids if i < checkpoint.segment]:
            os.unlink(self._path(segment_id))  # committed before the last stop
        ids = [i for i in ids if i >= checkpoint.segment]
        start = checkpoint if ids and ids[0] == checkpoint.segment else Position(ids[0], 0) if ids else None
        backlog_bytes = 0
        for segment_id in ids:
            path = self._path(segment_id)
            valid, _events, cut = seg.recover_segment(path)
            if cut:
                log.warning("buffer segment %s: cut %d bytes of a torn tail (never acknowledged in durable mode)",
                            path, cut)
            begin = min(start.offset, valid) if start and segment_id == start.segment else 0
            self.replay_events += sum(r.count for r in seg.read_records(path, begin, valid))
            backlog_bytes += valid - begin
            self._sealed[segment_id] = valid
        # Segment ids only ever grow, so a checkpoint can never point past live data.
        self._active = max(ids[-1] + 1 if ids else 1, checkpoint.segment + 1)
        self.start = Position(start.segment, min(start.offset, self._sealed[start.segment])) if start \
            else Position(self._active, 0)
        self._appended_bytes = backlog_bytes
        self._open_active()
        self.durable_end = Position(self._active, 0)
        self.replay_end = Position(ids[-1], self._sealed[ids[-1]]) if ids else self.start
        self.durable_events = self.replay_events
        if self.replay_events:
            log.info("buffer: %d events in %d segments to replay into storage", self.replay_events, len(ids))

    def _open_active(self) -> None:
        self._fd = os.open(self._path(self._active), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._active_size = 0
        seg.fsync_dir(self.directory)

    async def close(self) -> None:
        """Refuse new appends, write and sync what is queued, release the files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            self._wake.set()  # type: ignore[union-attr]
            await self._flusher
        loop = asyncio.get_running_loop()
        size = await loop.run_in_executor(self._io, self._close_sync)
        self._io.shutdown(wait=True)
        if size:  # sealed now: the writer may release it once drained
            self._sealed[self._active] = size

    def _close_sync(self) -> int:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            if self._active_size == 0:
                os.unlink(self._path(self._active))
        return self._active_size

    # ----------------------------------------------------------------- appending
    async def append(self, payload: bytes, count: int, min_ts: int, max_ts: int) -> None:
        """Append one group of events (NDJSON); returns once it is acknowledged-safe (see ack)."""
        if self._closed:
            raise Unavailable("TEA is shutting down", retry_after_s=5, code="shutting_down")
        size = seg.record_size(payload)
        if self.backlog_bytes + size > self.max_bytes:
            self.refusing = True
            raise BufferFull(f"durable buffer is full ({self.max_bytes} bytes not yet stored); retry later",
                             retry_after_s=5)
        self._pending.append((payload, count, min_ts, max_ts, self.clock()))
        self._pending_events += count
        self._appended_bytes += size
        self._wake.set()  # type: ignore[union-attr]
        if self.ack == "durable":
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        wake = self._wake
        assert wake is not None
        while True:
            if not self._pending:
                if self._closed:
                    return
                if self.ack == "memory":
                    try:
                        await asyncio.wait_for(wake.wait(), self.fsync_interval_s)
                    except asyncio.TimeoutError:
                        await loop.run_in_executor(self._io, self._sync_if_due)
                        continue
                else:
                    await wake.wait()
                wake.clear()
                continue
            groups, waiters, events = self._pending, self._waiters, self._pending_events
            self._pending, self._waiters, self._pending_events = [], [], 0
            try:
                end, sealed, (segment, offset) = await loop.run_in_executor(self._io, self._write_group, groups)
            except OSError as exc:
                self.write_errors += 1
                self._appended_bytes -= sum(seg.record_size(g[0]) for g in groups)
                log.error("buffer write failed: %s", exc)
                error = Unavailable("durable buffer write failed; retry later", retry_after_s=5,
                                    code="buffer_write_failed")
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(error)
                continue
            self._sealed.update(sealed)
            self.durable_end = end
            self.durable_events += events
            self._remember(segment, offset, groups)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._data.set()  # type: ignore[union-attr]

    def _write_group(self, groups: list[tuple[bytes, int, int, int, int]],
                     ) -> tuple[Position, dict[int, int], tuple[int, int]]:
        """Write and sync one group; returns the end, segments sealed, and (segment, offset) it starts at."""
        before = self._active_size
        written_to = self._active
        try:
            size = seg.write_records(self._fd, groups)
            if self.ack == "durable":
                os.fdatasync(self._fd)
            else:
                self._sync_if_due()
        except OSError:
            self._recover_after_failure(before)
            raise
        self._active_size += size
        sealed: dict[int, int] = {}
        if self._active_size >= self.segment_bytes:
            os.fsync(self._fd)
            os.close(self._fd)
            sealed[self._active] = self._active_size
            self._active += 1
            self._open_active()
        return Position(self._active, self._active_size), sealed, (written_to, before)

    def _sync_if_due(self) -> None:
        now = time.monotonic()
        if self._fd >= 0 and now - self._last_sync >= self.fsync_interval_s:
            os.fdatasync(self._fd)
            self._last_sync = now

    def _recover_after_failure(self, size: int) -> None:
        """Never leave a torn record before later ones: cut back, or start a fresh segment."""
        try:
            os.ftruncate(self._fd, size)
        except OSError:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._active += 1
            self._open_active()

    # ----------------------------------------------------------------- draining
    def has_data(self, pos: Position) -> bool:
        return self.next_position(pos) < self.durable_end

    def next_position(self, pos: Position) -> Position:
        """Skip past the ends of sealed segments."""
        while pos.segment in self._sealed and pos.offset >= self._sealed[pos.segment]:
            later = [s for s in self._sealed if s > pos.segment]
            pos = Position(min(later) if later else self._active_after(pos.segment), 0)
        return pos

    def _active_after(self, segment: int) -> int:
        return max(self.durable_end.segment, segment + 1)

    async def wait_for_data(self, timeout_s: float | None = None) -> None:
        data = self._data
        assert data is not None
        data.clear()
        try:
            await asyncio.wait_for(data.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass

    def notify(self) -> None:
        if self._data is not None:
            self._data.set()

    def _remember(self, segment: int, offset: int, groups: list[tuple[bytes, int, int, int, int]]) -> None:
        """Keep a durable group's records in memory (bounded by ``recent_bytes``, oldest dropped)."""
        if not self.recent_bytes:
            return
        recent = self._recent
        if recent:  # only a contiguous run is kept: a group that does not follow the last one restarts it
            last_segment, last_end = recent[-1][0], recent[-1][2]
            if not (segment == last_segment and offset == last_end) and \
                    not (offset == 0 and self._sealed.get(last_segment) == last_end):
                recent.clear()
                self._recent_size = 0
        end = offset + sum(seg.record_size(g[0]) for g in groups)
        recent.append((segment, offset, end, groups))
        size = self._recent_size + end - offset
        while size > self.recent_bytes and recent:
            dropped = recent.popleft()
            size -= dropped[2] - dropped[1]
        self._recent_size = size

    def first_append_ts(self, pos: Position) -> int | None:
        """When the group holding the record at ``pos`` was appended (``clock`` µs), if memory still has it."""
        return self._recent[0][3][0][4] if self._recent_at(pos) else None

    def _recent_at(self, pos: Position) -> bool:
        """Drop what memory holds before ``pos``; whether its first group now holds ``pos``."""
        self._forget_before(pos)
        recent = self._recent
        return bool(recent) and recent[0][0] == pos.segment and recent[0][1] <= pos.offset < recent[0][2]

    def _forget_before(self, pos: Position) -> None:
        recent = self._recent
        while recent and (recent[0][0], recent[0][2]) <= (pos.segment, pos.offset):
            dropped = recent.popleft()
            self._recent_size -= dropped[2] - dropped[1]

    def _from_memory(self, pos: Position, max_events: int) -> tuple[list[seg.Record], Position, int] | None:
        """The records from ``pos`` when memory holds the record starting there, else None."""
        if not self._recent_at(pos):
            return None
        recent = self._recent
        records: list[seg.Record] = []
        append, Record = records.append, seg.Record
        events = spanned = 0
        start = pos.offset
        at_segment, at = pos.segment, start
        size = seg.record_size
        for segment, offset, _end, groups in recent:
            if events >= max_events:
                break
            for payload, count, min_ts, max_ts, append_ts in groups:
                end = offset + size(payload)
                if not records:
                    if end <= start:
                        offset = end  # read already, in an earlier batch (the group is split across reads)
                        continue
                    if offset != start:
                        return None  # pos is not a record boundary of this group: let the disk read decide
                append(Record(offset, end, count, min_ts, max_ts, append_ts, payload))
                events += count
                spanned += end - offset
                at_segment, at = segment, end
                offset = end
                if events >= max_events:
                    break
        self.recent_hits += len(records)
        return records, Position(at_segment, at), spanned

    async def read(self, pos: Position, max_events: int) -> tuple[list[seg.Record], Position, int]:
        """Durable records from ``pos`` (at least one if any, stopping after ``max_events``),
        the position after them and the buffer bytes they span."""
        found = self._from_memory(pos, max_events)
        if found is not None:
            return found
        end = self.durable_end
        sealed = dict(self._sealed)
        return await asyncio.get_running_loop().run_in_executor(None, self._read_sync, pos, end, sealed,
                                                                max_events)

    def _read_sync(self, pos: Position, end: Position, sealed: dict[int, int],
                   max_events: int) -> tuple[list[seg.Record], Position, int]:
        records: list[seg.Record] = []
        events = 0
        spanned = 0
        while pos < end and events < max_events:
            limit = sealed.get(pos.segment, end.offset if pos.segment == end.segment else None)
            if limit is None or pos.offset >= limit:
                later = [s for s in sealed if s > pos.segment]
                pos = Position(min(later) if later else end.segment, 0)
                continue
            path = self._path(pos.segment)
            try:
                for record in seg.read_records(path, pos.offset, limit, max_events - events):
                    self.disk_reads += 1
                    records.append(record)
                    events += record.count
                    spanned += record.end - pos.offset
                    pos = Position(pos.segment, record.end)
            except seg.CorruptRecord as exc:
                # Only disk corruption gets here (torn tails are cut at open): keep a copy, skip the rest.
                self.corrupt_records += 1
                log.error("%s; the rest of the segment is skipped and kept as %s.corrupt", exc, path)
                if not os.path.exists(path + ".corrupt"):
                    os.link(path, path + ".corrupt")
                spanned += limit - pos.offset
                pos = Position(pos.segment, limit)
        return records, pos, spanned

    def release(self, pos: Position, nbytes: int) -> None:
        """Storage has committed everything before ``pos``: drop whole segments, move the checkpoint."""
        self._released_bytes += nbytes
        if self.refusing and self.backlog_bytes < 0.9 * self.max_bytes:
            self.refusing = False
        self._forget_before(pos)  # committed: not needed in memory
        pos = self.next_position(pos)
        for segment_id in sorted(s for s in self._sealed if s < pos.segment):
            del self._sealed[segment_id]
            try:
                os.unlink(self._path(segment_id))
            except FileNotFoundError:
                pass
        self._write_checkpoint(pos)

    # ----------------------------------------------------------------- gauges
    @property
    def backlog_bytes(self) -> int:
        return self._appended_bytes - self._released_bytes

    @property
    def segment_count(self) -> int:
        return len(self._sealed) + 1

    # ----------------------------------------------------------------- files
    def _path(self, segment_id: int) -> str:
        return os.path.join(self.directory, seg.segment_name(segment_id))

    def _read_checkpoint(self) -> Position:
        try:
            with open(os.path.join(self.directory, CHECKPOINT)) as fh:
                segment, offset = fh.read().split()
            return Position(int(segment), int(offset))
        except (FileNotFoundError, ValueError):
            return Position(0, 0)

    def _write_checkpoint(self, pos: Position) -> None:
        # Not fsynced on purpose: a stale checkpoint only means a longer, idempotent replay.
        path = os.path.join(self.directory, CHECKPOINT)
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{pos.segment} {pos.offset}\n")
        os.replace(tmp, path)
