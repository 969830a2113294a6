"""The audit log: authentication failures, token administration, admin cross-tenant reads,
retention changes. Recording never blocks a request: rows go to a bounded queue that a background
task writes to storage every second (or every 500 rows); what does not fit is counted, not kept.

In ``/metrics``: ``tea_audit_records_total{action}`` (recorded), ``tea_audit_dropped_total{reason}``
(``queue_full``, ``write_failed``). The retention job deletes rows past ``audit.retention_hours``."""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from tea.telemetry import Telemetry
from tea.storage.base import Storage
from tea.timeutil import now_us
from tea.types import AuditRecord

log = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, storage: Storage, clock: Callable[[], int] = now_us, max_queue: int = 10000,
                 flush_every_s: float = 1.0, batch: int = 500, telemetry: Telemetry | None = None) -> None:
        self.storage = storage
        self.telemetry = telemetry
        self.clock = clock
        self.flush_every_s = flush_every_s
        self.batch = batch
        self.queue: asyncio.Queue[AuditRecord] = asyncio.Queue(max_queue)
        self.dropped = 0
        self.written = 0
        # one flush at a time: a caller's flush waits for the rows the background flush is writing
        self._flushing = asyncio.Lock()

    def record(self, action: str, *, actor: str | None = None, tenant_id: str | None = None,
               remote_addr: str | None = None, success: bool = True, reason: str | None = None,
               **details: str) -> None:
        row = AuditRecord(self.clock(), action, actor, tenant_id, remote_addr, success, reason,
                          {k: str(v) for k, v in details.items()})
        t = self.telemetry
        try:
            self.queue.put_nowait(row)
        except asyncio.QueueFull:
            self.dropped += 1
            if t is not None:
                t.child(t.audit_dropped, "queue_full").inc()
            return
        if t is not None:
            t.child(t.audit_records, action).inc()

    async def flush(self) -> int:
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> int:
        rows: list[AuditRecord] = []
        while not self.queue.empty():
            rows.append(self.queue.get_nowait())
        if rows:
            try:
                await self.storage.append_audit(rows)
            except Exception as exc:  # storage boundary: count and carry on
                self.dropped += len(rows)
                if self.telemetry is not None:
                    self.telemetry.child(self.telemetry.audit_dropped, "write_failed").inc(len(rows))
                log.error("audit log write failed, %d rows lost: %s", len(rows), exc)
                return 0
            self.written += len(rows)
        return len(rows)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._full(), self.flush_every_s)
            except asyncio.TimeoutError:
                pass
            await self.flush()

    async def _full(self) -> None:
        while self.queue.qsize() < self.batch:
            await asyncio.sleep(0.05)
