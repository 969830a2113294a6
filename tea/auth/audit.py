"""The audit log: authentication failures, token administration, admin cross-tenant reads,
retention changes. Recording never blocks a request: rows go to a bounded batcher (``tea.batching``)
whose loop writes them to storage a second after the first one waiting (or at 500 rows); what does not fit is
counted, not kept.

In ``/metrics``: ``tea_audit_records_total{action}`` (recorded), ``tea_audit_dropped_total{reason}``
(``queue_full``, ``write_failed``). The retention job deletes rows past ``audit.retention_hours``."""
from __future__ import annotations

import logging
from typing import Callable

from tea.batching import Batcher
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
        self.batcher: Batcher[AuditRecord] = Batcher("audit log", self._write, max_items=batch,
                                                     max_interval_s=flush_every_s, max_queue=max_queue)
        self.dropped = 0
        self.written = 0

    def record(self, action: str, *, actor: str | None = None, tenant_id: str | None = None,
               remote_addr: str | None = None, success: bool = True, reason: str | None = None,
               **details: str) -> None:
        row = AuditRecord(self.clock(), action, actor, tenant_id, remote_addr, success, reason,
                          {k: str(v) for k, v in details.items()})
        t = self.telemetry
        if not self.batcher.offer(row):
            self.dropped += 1
            if t is not None:
                t.child(t.audit_dropped, "queue_full").inc()
            return
        if t is not None:
            t.child(t.audit_records, action).inc()

    async def flush(self) -> None:
        """Write what was recorded until now, and wait until it is written (or given up on)."""
        await self.batcher.flushed()

    async def _write(self, rows: list[AuditRecord]) -> None:
        try:
            await self.storage.append_audit(rows)
        except Exception as exc:  # storage boundary: count and carry on
            self.dropped += len(rows)
            if self.telemetry is not None:
                self.telemetry.child(self.telemetry.audit_dropped, "write_failed").inc(len(rows))
            log.error("audit log write failed, %d rows lost: %s", len(rows), exc)
            return
        self.written += len(rows)

    async def run(self) -> None:
        """Write batches until ``drain()``."""
        await self.batcher.run()

    async def drain(self, timeout_s: float) -> int:
        """Write what is queued and stop, within ``timeout_s``; returns the rows left unwritten."""
        return await self.batcher.drain(timeout_s)
