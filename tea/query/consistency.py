"""Read-your-writes: a read sees every event this node acknowledged before the read arrived.

An event is acknowledged once it is in the durable buffer; storage holds it once the writer's position
has passed it, and a processor's derived rows (registry counts, OpenTelemetry analytics tables) once
that processor's position has. Positions are counted in events from the log's origin
(``DurableBuffer.acknowledged_events``, ``Cursor.events``), so the check a read makes is one integer
comparison per consumer: when storage (and, for derived data, every processor) has caught up — almost
always, under a steady load — the read costs nothing more.

When it has not, the read asks the writer (and the processors) to write what waits now, not at their
next interval, and waits to be woken by their positions moving, for at most ``reads.max_wait_ms``. If
that runs out (storage down or slow) the read answers with what is stored and the response carries
``TEA-Consistency: stale``. A request chooses with the header ``TEA-Consistency: eventual`` (answer
with what is stored, never wait) or ``read_your_writes``; ``reads.consistency`` is the default.

This holds for writes acknowledged by this node: another node's acknowledged events reach storage at
that node's pace (``writer.flush_interval_ms``); a client that needs read-your-writes across nodes
sends its reads to the node it wrote to (a sticky load balancer).
"""
from __future__ import annotations

import asyncio
from typing import Protocol, Sequence

from tea.buffer.cursors import Cursor
from tea.buffer.log import DurableBuffer
from tea.buffer.writer import Writer
from tea.errors import BadRequest
from tea.http import Request
from tea.telemetry import Telemetry

HEADER = "tea-consistency"  # the request's choice, and the response's "stale"
READ_YOUR_WRITES = "read_your_writes"
EVENTUAL = "eventual"
STALE = "stale"
MODES = (READ_YOUR_WRITES, EVENTUAL)


class Processor(Protocol):
    """A processor's consumer of the log (``tea.pipeline.consume.ProcessorConsumer``), as a read waits for it."""

    cursor: Cursor

    def hurry(self, events: int) -> None: ...

    async def handled_through(self, events: int, deadline: float) -> bool: ...


class ReadConsistency:
    def __init__(self, buffer: DurableBuffer, writer: Writer, processors: Sequence[Processor], *,
                 mode: str = READ_YOUR_WRITES, max_wait_s: float = 2.0, telemetry: Telemetry | None = None) -> None:
        self.buffer = buffer
        self.writer = writer
        self.processors = processors
        self.mode = mode
        self.max_wait_s = max_wait_s
        self.telemetry = telemetry

    def arrived(self, request: Request) -> None:
        """Note what this node has acknowledged when ``request`` arrived (before it is authenticated)."""
        request.state["acknowledged"] = self.buffer.acknowledged_events

    def wanted(self, request: Request) -> str:
        """The request's consistency: its ``TEA-Consistency`` header, else ``reads.consistency``."""
        asked = request.header(HEADER)
        if asked is None:
            return self.mode
        asked = asked.strip().lower()
        if asked not in MODES:
            raise BadRequest(f"TEA-Consistency must be {' or '.join(MODES)}, not {asked[:40]!r}",
                             code="invalid_consistency")
        return asked

    async def settle(self, request: Request, derived: bool = False) -> None:
        """Before a read: wait until storage (and, when ``derived``, every processor) has passed what was
        acknowledged when the request arrived, within ``max_wait_s``; past it mark the response stale."""
        if self.wanted(request) == EVENTUAL:
            return
        target = request.state.get("acknowledged", self.buffer.acknowledged_events)
        consumers = self.processors if derived else ()
        if self.buffer.writer.events >= target and all(c.cursor.events >= target for c in consumers):
            return  # (the usual case: nothing this read needs is pending)
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        for consumer in consumers:  # (hurried at once: each passes the events as soon as the writer has)
            consumer.hurry(target)
        stored = await self.writer.stored_through(target, deadline)
        for consumer in consumers:
            stored = stored and await consumer.handled_through(target, deadline)
        if not stored:
            request.state["response_headers"] = {**request.state.get("response_headers", {}), HEADER: STALE}
        if self.telemetry is not None:
            t = self.telemetry
            t.child(t.read_waits, "stored" if stored else "stale").inc()
