"""The on-disk record format of buffer segments.

A segment is a file of records; each record is one acknowledged group of events::

    header  <magic u32> <payload_len u32> <count u32> <crc32 u32> <min_ts i64> <max_ts i64> <append_ts i64>
    payload NDJSON of canonical events (``count`` lines)

``crc32`` covers the other header fields and the payload, so a torn or corrupt record is detected
and never replayed as data. Timestamps are UTC microseconds.
"""
from __future__ import annotations

import logging
import os
import struct
import zlib
from concurrent.futures import Future
from typing import Any, Iterable, Iterator, NamedTuple

log = logging.getLogger(__name__)
MAGIC = 0x31414554  # b"TEA1" little-endian
HEADER = struct.Struct("<IIIIqqq")
_FIELDS = struct.Struct("<IIIqqq")  # the header without the crc, for the checksum
SUFFIX = ".seg"
_IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 1024  # buffers per writev


class CorruptRecord(Exception):
    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: corrupt record at offset {offset}: {reason}")
        self.offset = offset


class Record(NamedTuple):  # a tuple: cheap to build by the thousand, untracked by the cyclic GC
    offset: int
    end: int
    count: int
    min_ts: int
    max_ts: int
    append_ts: int
    payload: bytes
    kinds: frozenset[str] | None = None  # the event types of its lines, when memory knows them (not on disk)


def kinds_of(records: Iterable[Record]) -> frozenset[str] | None:
    """Every event type of ``records``' lines, if each record's are known (None: search their lines)."""
    return union_kinds(record.kinds for record in records)


def union_kinds(each: Iterable[frozenset[str] | None]) -> frozenset[str] | None:
    """The union of records' event-type sets, None when one of them is unknown."""
    found: set[str] = set()
    last = None
    for kinds in each:
        if kinds is None:
            return None
        if kinds is last:  # (receivers hand over one shared set for the usual kinds: one test per record)
            continue
        found.update(kinds)
        last = kinds
    return frozenset(found)


def encode_header(payload: bytes, count: int, min_ts: int, max_ts: int, append_ts: int) -> bytes:
    """The header of the record carrying ``payload`` (``zlib.crc32`` releases the GIL on large payloads)."""
    crc = zlib.crc32(payload, zlib.crc32(_FIELDS.pack(MAGIC, len(payload), count, min_ts, max_ts, append_ts)))
    return HEADER.pack(MAGIC, len(payload), count, crc, min_ts, max_ts, append_ts)


def encode_record(payload: bytes, count: int, min_ts: int, max_ts: int, append_ts: int) -> bytes:
    return encode_header(payload, count, min_ts, max_ts, append_ts) + payload


def record_size(payload: bytes) -> int:
    """Bytes the record carrying ``payload`` takes in a segment."""
    return HEADER.size + len(payload)


def write_records(fd: int, groups: list[tuple[bytes, int, int, int, int, frozenset[str] | None]]) -> int:
    """Append the records of ``groups`` (payload, count, min_ts, max_ts, append_ts, kinds) to ``fd`` with
    ``writev`` — header and payload straight from their buffers, no joined copy. Returns the bytes written."""
    parts: list[bytes] = []
    for payload, count, min_ts, max_ts, append_ts, _kinds in groups:
        parts.append(encode_header(payload, count, min_ts, max_ts, append_ts))
        parts.append(payload)
    total = 0
    for start in range(0, len(parts), _IOV_MAX):
        chunk = parts[start:start + _IOV_MAX]
        want = sum(map(len, chunk))
        written = os.writev(fd, chunk)
        if written < want:  # a short write (rare on files): the rest the plain way
            rest = memoryview(b"".join(chunk))[written:]
            while rest:
                rest = rest[os.write(fd, rest):]
        total += want
    return total


def delete_passed(directory: str, cursors: list[Any], paths: list[str]) -> None:
    """Delete segment files every consumer has passed: each ``cursors``' position on disk first, fsynced (each at
    least where it was when the segments were passed), so no consumer can resume inside a deleted file."""
    for cursor in cursors:
        cursor.save(durable=True, tmp=".release.tmp")
    fsync_dir(directory)
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def log_delete_failure(future: "Future[None]") -> None:
    exc = future.exception()
    if exc is not None:  # (the segments stay until the next start, which deletes those every consumer passed)
        log.error("buffer: deleting the segments every consumer has passed failed: %s", exc)


def segment_name(segment_id: int) -> str:
    return f"{segment_id:012d}{SUFFIX}"


def list_segments(directory: str) -> list[int]:
    ids = []
    for name in os.listdir(directory):
        if name.endswith(SUFFIX) and name[: -len(SUFFIX)].isdigit():
            ids.append(int(name[: -len(SUFFIX)]))
    return sorted(ids)


def read_records(path: str, start: int, end: int | None = None, max_events: int | None = None,
                 ) -> Iterator[Record]:
    """Records from ``start`` up to ``end`` (default: end of file), checked; stops after ``max_events``."""
    with open(path, "rb") as fh:
        fh.seek(start)
        offset = start
        events = 0
        while end is None or offset < end:
            head = fh.read(HEADER.size)
            if not head:
                return
            if len(head) < HEADER.size:
                raise CorruptRecord(path, offset, "truncated header")
            magic, length, count, crc, min_ts, max_ts, append_ts = HEADER.unpack(head)
            if magic != MAGIC:
                raise CorruptRecord(path, offset, "bad magic")
            payload = fh.read(length)
            if len(payload) < length:
                raise CorruptRecord(path, offset, "truncated payload")
            if zlib.crc32(payload, zlib.crc32(_FIELDS.pack(magic, length, count, min_ts, max_ts, append_ts))) != crc:
                raise CorruptRecord(path, offset, "checksum mismatch")
            record_end = offset + HEADER.size + length
            yield Record(offset, record_end, count, min_ts, max_ts, append_ts, payload)
            offset = record_end
            events += count
            if max_events is not None and events >= max_events:
                return


def read_span(directory: str, pos: tuple[int, int], end: tuple[int, int], sealed: dict[int, int],
              max_events: int) -> tuple[list[Record], tuple[int, int], int, int]:
    """The records of the segment files of ``directory`` from ``pos`` (segment, offset) before ``end``, checked,
    stopping after ``max_events``; with the position after them, the bytes they span and how many corrupt
    records were met (from one on, the rest of its segment is skipped and kept as ``<segment>.corrupt``)."""
    records: list[Record] = []
    events = spanned = corrupt = 0
    segment, offset = pos
    while (segment, offset) < end and events < max_events:
        limit = end[1] if segment == end[0] else sealed.get(segment)
        if limit is None or offset >= limit:
            later = [s for s in sealed if s > segment]
            segment, offset = (min(later) if later else end[0]), 0
            continue
        path = os.path.join(directory, segment_name(segment))
        try:
            for record in read_records(path, offset, limit, max_events - events):
                records.append(record)
                events += record.count
                spanned += record.end - offset
                offset = record.end
        except CorruptRecord as exc:
            # Only disk corruption gets here (torn tails are cut at open): keep a copy, skip the rest.
            corrupt += 1
            log.error("%s; the rest of the segment is skipped and kept as %s.corrupt", exc, path)
            if not os.path.exists(path + ".corrupt"):
                os.link(path, path + ".corrupt")
            spanned += limit - offset
            offset = limit
    return records, (segment, offset), spanned, corrupt


def recover_segment(path: str) -> tuple[int, int, int]:
    """Check every record; cut a torn or corrupt tail. Returns (valid bytes, events, cut bytes)."""
    return scan_segment(path)[:3]


def scan_segment(path: str, marks: Iterable[int] = ()) -> tuple[int, int, int, dict[int, int]]:
    """``recover_segment``, also answering for each offset of ``marks`` the events of the records before it."""
    valid = 0
    events = 0
    pending = sorted(set(marks), reverse=True)
    before: dict[int, int] = {}
    try:
        for record in read_records(path, 0):
            while pending and pending[-1] <= record.offset:
                before[pending.pop()] = events
            valid = record.end
            events += record.count
    except CorruptRecord:
        pass
    for mark in pending:
        before[mark] = events
    size = os.path.getsize(path)
    if size > valid:
        with open(path, "r+b") as fh:
            fh.truncate(valid)
            fh.flush()
            os.fsync(fh.fileno())
    return valid, events, size - valid, before


def read_append_ts(path: str, offset: int) -> int | None:
    """The append time in the header of the record at ``offset`` (None if there is none)."""
    try:
        with open(path, "rb") as fh:
            head = os.pread(fh.fileno(), HEADER.size, offset)
    except OSError:
        return None
    if len(head) < HEADER.size:
        return None
    magic, *_rest, append_ts = HEADER.unpack(head)
    return append_ts if magic == MAGIC else None


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
