"""The most recent durable records, kept in memory for the log's readers.

The payload objects the requests appended are kept once durable (up to ``max_bytes``, oldest dropped),
so a reader that keeps up — the writer, and processors close behind it — takes records from here
instead of reading and checksumming the segment files again. Entries are whole group commits
``(segment, start, end, records)``: nothing is built per record until someone reads it, so a
single-event request pays one tuple. Only a contiguous run of groups is kept. Touched by the event
loop only.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import deque
from itertools import islice
from tea.buffer import segments as seg
from tea.buffer.cursors import Position

# (payload, count, min_ts, max_ts, append_ts, kinds): one appended record (kinds: its lines' event types, if known)
Pending = tuple[bytes, int, int, int, int, "frozenset[str] | None"]
# (segment, start, end, records, events, kinds): kinds is every event type of the group's lines, None if unknown
_Group = tuple[int, int, int, list[Pending], int, "frozenset[str] | None"]


def _start(group: _Group) -> tuple[int, int]:
    return group[0], group[1]


class Recent:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._groups: deque[_Group] = deque()
        self.size = 0
        self.hits = 0  # records readers took from here

    def remember(self, segment: int, offset: int, groups: list[Pending], sealed: dict[int, int]) -> None:
        """Keep a durable group (``sealed``: final sizes of sealed segments, to see that it follows the last)."""
        if not self.max_bytes:
            return
        kept = self._groups
        if kept:  # a group that does not follow the last one restarts the run
            last_segment, last_end = kept[-1][0], kept[-1][2]
            if not (segment == last_segment and offset == last_end) and \
                    not (offset == 0 and sealed.get(last_segment) == last_end):
                kept.clear()
                self.size = 0
        end, events, kinds = _summary(offset, groups)
        kept.append((segment, offset, end, groups, events, kinds))
        size = self.size + end - offset
        while size > self.max_bytes and kept:
            dropped = kept.popleft()
            size -= dropped[2] - dropped[1]
        self.size = size

    def forget_before(self, pos: Position) -> None:
        """Every reader has passed ``pos``: drop the groups that end at or before it."""
        kept = self._groups
        while kept and (kept[0][0], kept[0][2]) <= (pos.segment, pos.offset):
            dropped = kept.popleft()
            self.size -= dropped[2] - dropped[1]

    def _index(self, pos: Position) -> int | None:
        """Index of the group holding the byte at ``pos``, if memory has it."""
        kept = self._groups
        i = bisect_right(kept, (pos.segment, pos.offset), key=_start) - 1
        if i < 0:
            return None
        segment, start, end = kept[i][:3]
        return i if segment == pos.segment and start <= pos.offset < end else None

    def append_ts(self, pos: Position) -> int | None:
        """When the record starting at ``pos`` was appended (clock µs), if memory has it."""
        i = self._index(pos)
        if i is None:
            return None
        offset, groups = self._groups[i][1], self._groups[i][3]
        for payload, _count, _min, _max, append_ts, _kinds in groups:
            if offset == pos.offset:
                return append_ts
            offset += seg.record_size(payload)
        return None

    def read(self, pos: Position, max_events: int,
             limit: Position) -> tuple[list[seg.Record], tuple[int, int], int] | None:
        """The records from ``pos`` (a record boundary) before ``limit``, stopping after ``max_events``;
        with the (segment, offset) after them and the bytes they span. None when memory lacks ``pos``."""
        i = self._index(pos)
        if i is None:
            return None
        records: list[seg.Record] = []
        append, Record, size = records.append, seg.Record, seg.record_size
        events = spanned = 0
        at = (pos.segment, pos.offset)
        stop = (limit.segment, limit.offset)
        for segment, offset, _end, groups, _events, _kinds in islice(self._groups, i, None):
            for payload, count, min_ts, max_ts, append_ts, kinds in groups:
                end = offset + size(payload)
                if not records:
                    if end <= pos.offset:
                        offset = end  # before pos, in the group holding it
                        continue
                    if offset != pos.offset:
                        return None  # pos is not a record boundary of this group: let the disk read decide
                if events >= max_events or (segment, offset) >= stop:
                    self.hits += len(records)
                    return records, at, spanned
                append(Record(offset, end, count, min_ts, max_ts, append_ts, payload, kinds))
                events += count
                spanned += end - offset
                at = (segment, end)
                offset = end
        self.hits += len(records)
        return records, at, spanned

    def skip(self, pos: Position, max_events: int, limit: Position,
             wanted: frozenset[str]) -> tuple[tuple[int, int], int] | None:
        """Pass over the records from ``pos`` (a record boundary) before ``limit`` whose lines are known to hold
        none of the event types ``wanted``, stopping once ``max_events`` are passed, without building a record
        (a whole group of them costs one test): the (segment, offset) after them and their events. None when
        memory lacks ``pos`` or the record there may hold a wanted type."""
        i = self._index(pos)
        if i is None:
            return None
        events = 0
        at = (pos.segment, pos.offset)
        stop = (limit.segment, limit.offset)
        size = seg.record_size
        first = True
        for segment, start, end, groups, count, kinds in islice(self._groups, i, None):
            if events >= max_events or (segment, start) >= stop:
                break
            whole = not first or start == pos.offset
            first = False
            if whole and kinds is not None and kinds.isdisjoint(wanted) and (segment, end) <= stop:
                events += count
                at = (segment, end)
                continue
            offset = start
            for payload, n, _min, _max, _ts, record_kinds in groups:
                record_end = offset + size(payload)
                if not whole and record_end <= pos.offset:
                    offset = record_end  # before pos, in the group holding it
                    continue
                if events >= max_events or (segment, offset) >= stop or record_kinds is None \
                        or not record_kinds.isdisjoint(wanted):
                    return (at, events) if events else None
                events += n
                at = (segment, record_end)
                offset = record_end
        return (at, events) if events else None


def _summary(offset: int, groups: list[Pending]) -> tuple[int, int, frozenset[str] | None]:
    """Where records appended from ``offset`` end, their events, and every event type of their lines (None
    when a record's are unknown)."""
    size = seg.record_size
    end = offset
    events = 0
    for payload, count, _min, _max, _ts, _kinds in groups:
        end += size(payload)
        events += count
    return end, events, seg.union_kinds([group[5] for group in groups])
