"""The durable buffer: an append-only log of acknowledged events, read by its consumers.

Appends from many requests are grouped: one write and one fsync serve every request waiting on
that group (group commit), done on a dedicated thread so the event loop never blocks on disk.
``append`` returns only when the record is durable (``ack="durable"``) or, with ``ack="memory"``,
as soon as it is queued — then fsync runs every ``fsync_interval_s`` and a crash can lose what
was queued but not yet written.

The log has consumers (``tea.buffer.cursors``): the writer, which stores events, and each processor,
which reads what the writer has committed. Each reads from its own durable position, at its own pace;
a segment file is deleted once every consumer has passed it. Every bound is explicit: the backlog —
bytes appended that the *slowest* consumer has not passed — stays under ``max_bytes``; past it
``append`` raises ``BufferFull`` (503 with Retry-After).

The most recent records stay in memory (``tea.buffer.recent``, up to ``recent_bytes``), so consumers
that keep up take them from there; anything older, and everything after a restart, is read from the
segment files and checked.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from tea.batching import Pulse
from tea.buffer import segments as seg
from tea.buffer.cursors import WRITER, Cursor, Position, load_log_id, stale_checkpoints
from tea.buffer.recent import Pending, Recent
from tea.errors import BufferFull, Unavailable
from tea.timeutil import now_us

log = logging.getLogger(__name__)

__all__ = ["DurableBuffer", "Position"]


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
        # deletes the segments every consumer has passed, after fsyncing every position (see _release)
        self._releaser = ThreadPoolExecutor(1, thread_name_prefix="tea-buffer-release")
        self._releasing: list[Future[None]] = []
        # appended, not yet written; the I/O thread encodes the headers (the checksum of a large payload
        # runs there, without the GIL) and writes them
        self._pending: list[Pending] = []
        self.recent = Recent(min(recent_bytes, max_bytes))
        self.disk_reads = 0    # records read back from the segment files
        self._waiters: list[asyncio.Future[None]] = []
        self._pending_events = 0
        self._inflight_events = 0  # taken from _pending, being written (acknowledged already with ack="memory")
        self._wake: asyncio.Event | None = None
        self.data = Pulse()  # fired whenever records become durable (and at close)
        self._flusher: asyncio.Task[None] | None = None
        self._closed = True
        self.log_id = ""  # names this log (positions of two logs never compare)
        self.cursors: dict[str, Cursor] = {WRITER: Cursor(WRITER, directory)}
        # state touched only by the io thread
        self._fd = -1
        self._active = 0
        self._active_size = 0
        self._last_sync = 0.0
        # state touched only by the event loop thread
        self._sealed: dict[int, int] = {}   # segment id -> final size
        self.durable_end = Position(0, 0)
        self.durable_events = 0             # events from the origin (the oldest consumer position at open) on
        self.replay_events = 0              # events the writer found on disk at open
        self.replay_end = Position(0, 0)
        self._oldest = Position(0, 0)       # the slowest consumer's position
        self._appended_bytes = 0            # from the origin, including what is queued
        self._released_bytes = 0            # from the origin to the slowest consumer
        self.write_errors = 0
        self.corrupt_records = 0
        self.refusing = False  # set when an append was refused; cleared once the backlog is under 90 %

    # ----------------------------------------------------------------- consumers
    def cursor(self, name: str) -> Cursor:
        """The consumer ``name`` (declared before ``open``). A consumer seen for the first time starts where the
        writer is: it sees what is stored from now on, not the history before it existed."""
        found = self.cursors.get(name)
        if found is None:
            if not self._closed:
                raise RuntimeError("consumers are declared before the buffer opens")
            found = self.cursors[name] = Cursor(name, self.directory)
        return found

    @property
    def writer(self) -> Cursor:
        return self.cursors[WRITER]

    @property
    def start(self) -> Position:
        """Where the writer resumes (its position)."""
        return self.writer.position

    # ----------------------------------------------------------------- lifecycle
    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        await loop.run_in_executor(self._io, self._open_sync)
        self._closed = False
        self._flusher = asyncio.create_task(self._flush_loop(), name="tea-buffer-flusher")

    def _open_sync(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        self.log_id = load_log_id(self.directory)
        for path in stale_checkpoints(self.directory, self.cursors):
            log.warning("buffer: %s belongs to a consumer that no longer exists; removed", path)
            os.unlink(path)
        loaded = {name: c.load() for name, c in self.cursors.items()}
        writer_at = loaded[WRITER] or Position(0, 0)
        positions = {name: pos or writer_at for name, pos in loaded.items()}
        ids = seg.list_segments(self.directory)
        first = min(p.segment for p in positions.values())
        for segment_id in [i for i in ids if i < first]:
            os.unlink(self._path(segment_id))  # every consumer passed it before the last stop
        ids = [i for i in ids if i >= first]
        # Segment ids only ever grow, so a position can never point past live data.
        self._active = max(ids[-1] + 1 if ids else 1, max(p.segment for p in positions.values()) + 1)
        marks: dict[int, set[int]] = {}
        for name, pos in positions.items():
            later = [i for i in ids if i >= pos.segment]
            pos = pos if later and later[0] == pos.segment else Position(later[0] if later else self._active, 0)
            positions[name] = pos
            marks.setdefault(pos.segment, set()).add(pos.offset)
        self._scan(ids, positions, marks)
        for name, found in loaded.items():
            if found is None and name != WRITER:  # a new consumer: its starting point survives a crash from now on
                self.cursors[name].save(durable=True)
        self._open_active()
        self.durable_end = Position(self._active, 0)
        writer = self.writer
        self.replay_events = self.durable_events - writer.events
        self.replay_end = Position(ids[-1], self._sealed[ids[-1]]) if ids else writer.position
        if self.replay_events:
            log.info("buffer: %d events in %d segments to replay into storage", self.replay_events, len(ids))

    def _scan(self, ids: list[int], positions: dict[str, Position], marks: dict[int, set[int]]) -> None:
        """Check every segment (cutting torn tails) and count the events between the consumers' positions."""
        origin = min(positions.values())
        events_at: dict[Position, int] = {}
        events = 0
        for segment_id in ids:
            path = self._path(segment_id)
            valid, count, cut, before = seg.scan_segment(path, marks.get(segment_id, ()))
            if cut:
                log.warning("buffer segment %s: cut %d bytes of a torn tail (never acknowledged in durable mode)",
                            path, cut)
            self._sealed[segment_id] = valid
            base = events - (before[origin.offset] if segment_id == origin.segment else 0)
            for offset, n in before.items():
                events_at[Position(segment_id, min(offset, valid))] = base + n
            events = base + count
        self.durable_events = events
        self._oldest = origin = Position(origin.segment, min(origin.offset, self._sealed.get(origin.segment, 0)))
        for name, pos in positions.items():
            cursor = self.cursors[name]
            cursor.position = Position(pos.segment, min(pos.offset, self._sealed.get(pos.segment, pos.offset)))
            cursor.events = events_at.get(cursor.position, events)
        self._appended_bytes = sum(self._sealed.values()) - (origin.offset if origin.segment in self._sealed else 0)

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
        await self.released()
        self._releaser.shutdown(wait=True)
        if size:  # sealed now: the consumers release it once they have passed it
            self._sealed[self._active] = size
        self.data.fire()

    def _close_sync(self) -> int:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            if self._active_size == 0:
                os.unlink(self._path(self._active))
        return self._active_size

    # ----------------------------------------------------------------- appending
    async def append(self, payload: bytes, count: int, min_ts: int, max_ts: int,
                     kinds: frozenset[str] | None = None) -> None:
        """Append one group of events (NDJSON); returns once it is acknowledged-safe (see ack). ``kinds``: every
        event type its lines have (or more), when the caller knows them: readers that find the record in memory
        need not search its bytes for a type (``Record.kinds``, ``Batch.kinds``)."""
        if self._closed:
            raise Unavailable("TEA is shutting down", retry_after_s=5, code="shutting_down")
        size = seg.record_size(payload)
        if self.backlog_bytes + size > self.max_bytes:
            self.refusing = True
            raise BufferFull(f"durable buffer is full ({self.max_bytes} bytes not yet stored and processed); "
                             "retry later", retry_after_s=5)
        self._pending.append((payload, count, min_ts, max_ts, self.clock(), kinds))
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
            self._inflight_events = events
            try:
                end, sealed, (segment, offset) = await loop.run_in_executor(self._io, self._write_group, groups)
            except OSError as exc:
                self._inflight_events = 0
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
            self._inflight_events = 0
            self.recent.remember(segment, offset, groups, self._sealed)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self.data.fire()

    def _write_group(self, groups: list[Pending]) -> tuple[Position, dict[int, int], tuple[int, int]]:
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

    # ----------------------------------------------------------------- reading
    def has_data(self, pos: Position, limit: Position | None = None) -> bool:
        """Whether durable records (before ``limit``, when given) follow ``pos``."""
        return self.next_position(pos) < (self.durable_end if limit is None else self.next_position(limit))

    def next_position(self, pos: Position) -> Position:
        """Skip past the ends of sealed segments."""
        while pos.segment in self._sealed and pos.offset >= self._sealed[pos.segment]:
            later = [s for s in self._sealed if s > pos.segment]
            pos = Position(min(later) if later else max(self.durable_end.segment, pos.segment + 1), 0)
        return pos

    async def wait_for_data(self, timeout_s: float | None = None) -> None:
        await self.data.wait(timeout_s)

    def first_append_ts(self, pos: Position) -> int | None:
        """When the record at ``pos`` was appended (``clock`` µs), if memory still has it."""
        return self.recent.append_ts(pos)

    async def read(self, pos: Position, max_events: int,
                   limit: Position | None = None) -> tuple[list[seg.Record], Position, int]:
        """Durable records from ``pos`` before ``limit`` (default: all that are durable) — at least one if any,
        stopping after ``max_events`` — the position after them and the buffer bytes they span."""
        end = self.durable_end if limit is None else self.next_position(limit)
        found = self.recent.read(pos, max_events, end)
        if found is not None:
            records, (segment, offset), spanned = found
            return records, Position(segment, offset), spanned
        sealed = dict(self._sealed)
        return await asyncio.get_running_loop().run_in_executor(None, self._read_sync, pos, end, sealed,
                                                                max_events)

    def skip(self, pos: Position, max_events: int, limit: Position,
             wanted: frozenset[str]) -> tuple[Position, int] | None:
        """``read`` for a reader that wants only lines of the event types ``wanted``: the position after the
        records from ``pos`` known to hold none of them (memory knows their types), and their events; None
        when the record at ``pos`` may hold one (or memory lacks it): ``read`` it."""
        found = self.recent.skip(pos, max_events, self.next_position(limit), wanted)
        if found is None:
            return None
        (segment, offset), events = found
        return Position(segment, offset), events

    def _read_sync(self, pos: Position, end: Position, sealed: dict[int, int],
                   max_events: int) -> tuple[list[seg.Record], Position, int]:
        records, (segment, offset), spanned, corrupt = seg.read_span(
            self.directory, (pos.segment, pos.offset), (end.segment, end.offset), sealed, max_events)
        self.disk_reads += len(records)
        self.corrupt_records += corrupt
        return records, Position(segment, offset), spanned

    # ----------------------------------------------------------------- consuming
    def advance(self, cursor: Cursor, pos: Position, events: int) -> None:
        """``cursor`` has passed everything before ``pos`` (``events`` more events): move it, persist it, and
        delete the segments every consumer has now passed."""
        pos = self.next_position(pos)
        cursor.position = pos
        cursor.events += events
        oldest = min(self.next_position(c.position) for c in self.cursors.values())
        doomed = []
        if oldest > self._oldest:
            self._released_bytes += self._bytes_between(self._oldest, oldest)
            self._oldest = oldest
            self.recent.forget_before(oldest)
            doomed = sorted(s for s in self._sealed if s < oldest.segment)
        if doomed:
            for segment_id in doomed:
                del self._sealed[segment_id]
            self._release(doomed)
        else:
            cursor.save()
        if self.refusing and self.backlog_bytes < 0.9 * self.max_bytes:
            self.refusing = False
        cursor.advanced.fire()

    def _release(self, doomed: list[int]) -> None:
        """Delete segments every consumer has passed, on a thread of their own (the fsyncs took up to 250 ms
        of the event loop on a busy disk): every position on disk first, fsynced, so no consumer can resume
        inside a deleted file; then the files. A crash before that leaves them, to be passed again."""
        paths = [self._path(s) for s in doomed]
        if self._closed:  # (a consumer's last moves, past the sealed last segment, at shutdown)
            self._release_sync(paths)
            return
        self._releasing = [f for f in self._releasing if not f.done()]
        future = self._releaser.submit(self._release_sync, paths)
        future.add_done_callback(seg.log_delete_failure)
        self._releasing.append(future)

    def _release_sync(self, paths: list[str]) -> None:
        seg.delete_passed(self.directory, list(self.cursors.values()), paths)

    async def released(self) -> None:
        """Until the segments released so far are deleted (``advance`` deletes them in the background)."""
        for future in list(self._releasing):
            with contextlib.suppress(OSError):
                await asyncio.wrap_future(future)

    def _bytes_between(self, a: Position, b: Position) -> int:
        if a.segment == b.segment:
            return b.offset - a.offset
        middle = sum(size for s, size in self._sealed.items() if a.segment < s < b.segment)
        return self._sealed.get(a.segment, a.offset) - a.offset + middle + b.offset

    # ----------------------------------------------------------------- gauges
    @property
    def backlog_bytes(self) -> int:
        """Bytes appended that the slowest consumer has not passed (what the bound counts)."""
        return self._appended_bytes - self._released_bytes

    @property
    def segment_count(self) -> int:
        return len(self._sealed) + 1

    @property
    def acknowledged_events(self) -> int:
        """Events acknowledged to their senders, counted from the origin like ``Cursor.events``: a consumer whose
        count reached it has passed everything acknowledged so far. With ``ack="memory"`` this includes events
        queued but not yet written (they were acknowledged when queued)."""
        if self.ack == "durable":
            return self.durable_events
        return self.durable_events + self._inflight_events + self._pending_events

    def lag_events(self, cursor: Cursor) -> int:
        """Durable events ``cursor`` has not passed."""
        return max(0, self.durable_events - cursor.events)

    def lag_seconds(self, cursor: Cursor) -> float:
        """Age of the oldest durable record ``cursor`` has not passed."""
        pos = self.next_position(cursor.position)
        if pos >= self.durable_end:
            return 0.0
        appended = cursor.append_ts_at(pos) or self.recent.append_ts(pos) or \
            seg.read_append_ts(self._path(pos.segment), pos.offset)
        if appended is None:
            return 0.0
        cursor.note_append_ts(pos, appended)
        return max(0.0, (self.clock() - appended) / 1e6)

    # ----------------------------------------------------------------- files
    def _path(self, segment_id: int) -> str:
        return os.path.join(self.directory, seg.segment_name(segment_id))
