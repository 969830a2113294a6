"""Whether this node takes traffic, and the live state ``/health`` and ``/readyz`` report."""
from __future__ import annotations

import time

from tea.buffer.log import DurableBuffer
from tea.buffer.writer import Writer


class Status:
    def __init__(self, buffer: DurableBuffer, writer: Writer) -> None:
        self.buffer = buffer
        self.writer = writer
        self.started = False  # set by the lifespan once start-up finished, cleared at shutdown
        self.started_monotonic = time.monotonic()
        self.events_stored = 0  # the last count /health could read
        self.storage_reachable = True

    def start(self) -> None:
        self.started = True
        self.started_monotonic = time.monotonic()

    def is_ready(self) -> tuple[bool, str | None]:
        if not self.started:
            return False, "starting"
        if not self.writer.replayed.is_set():
            return False, "replaying the durable buffer into storage"
        if self.buffer.refusing:
            return False, "durable buffer full"
        return True, None
