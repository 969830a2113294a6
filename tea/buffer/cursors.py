"""The log's consumers: each reads the durable buffer from its own durable position.

The writer is one consumer (its position is the ``checkpoint`` file, as before consumers existed);
each processor is another (``checkpoint.<name>``). A position is the (segment, offset) of the
first record the consumer has not passed yet. Positions are written by rename, not fsynced on every
move — a process crash keeps them (the page cache survives it) and a stale one only means the
consumer sees some records again — but every position is fsynced before a segment file is deleted,
so no consumer can ever resume inside a deleted segment.
"""
from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass
from urllib.parse import quote

from tea.batching import Pulse

CHECKPOINT = "checkpoint"
WRITER = "writer"
LOG_ID = "log_id"


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int


class Cursor:
    """One consumer's position. ``events`` counts the events before it since the log's origin at open (the
    oldest position of any consumer), so two cursors' counts compare: their difference is events between them."""

    def __init__(self, name: str, directory: str) -> None:
        self.name = name
        filename = CHECKPOINT if name == WRITER else f"{CHECKPOINT}.{quote(name, safe='')}"
        self.path = os.path.join(directory, filename)
        self.position = Position(0, 0)
        self.events = 0
        self.advanced = Pulse()  # fired when the position moves
        self._append_ts: tuple[Position, int] | None = None  # when the record at a position was appended

    async def reached(self, events: int, deadline: float) -> bool:
        """Whether this consumer has passed the log's first ``events`` events by ``deadline`` (the event loop's
        clock), woken by its position moving — never polling. True at once when it has."""
        loop = asyncio.get_running_loop()
        while self.events < events:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await self.advanced.wait(remaining)
        return True

    def load(self) -> Position | None:
        try:
            with open(self.path) as fh:
                segment, offset = fh.read().split()
            return Position(int(segment), int(offset))
        except (FileNotFoundError, ValueError):
            return None

    def save(self, durable: bool = False, tmp: str = ".tmp") -> None:
        """Write the position (by rename; ``tmp``: the suffix of the file renamed, one per thread that saves)."""
        tmp = self.path + tmp
        with open(tmp, "w") as fh:
            fh.write(f"{self.position.segment} {self.position.offset}\n")
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def note_append_ts(self, pos: Position, append_ts: int) -> None:
        """Remember when the record at ``pos`` was appended (for the lag in seconds)."""
        self._append_ts = (pos, append_ts)

    def append_ts_at(self, pos: Position) -> int | None:
        known = self._append_ts
        return known[1] if known is not None and known[0] == pos else None


def stale_checkpoints(directory: str, cursors: dict[str, Cursor]) -> list[str]:
    """Checkpoint files of consumers that no longer exist (a processor removed from the configuration)."""
    kept = {os.path.basename(c.path) for c in cursors.values()}
    return [os.path.join(directory, name) for name in os.listdir(directory)
            if name.startswith(CHECKPOINT + ".") and not name.endswith(".tmp") and name not in kept]


def load_log_id(directory: str) -> str:
    """The name of the log in ``directory``, made once (positions of two logs never compare: a processor that
    records positions records them per log — per node, and anew when a data directory starts empty)."""
    path = os.path.join(directory, LOG_ID)
    try:
        with open(path) as fh:
            found = fh.read().strip()
        if found:
            return found
    except FileNotFoundError:
        pass
    made = uuid.uuid4().hex
    with open(path + ".tmp", "w") as fh:
        fh.write(made + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(path + ".tmp", path)
    return made
