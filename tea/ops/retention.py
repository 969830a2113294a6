"""The retention job: on a schedule, delete events older than their tenant's retention, audit-log rows
older than ``audit.retention_hours``, and records (alert history, the registry's transitions and audit)
older than ``records.retention_hours``.

A tenant's retention is, in order: an override set through the admin API (stored with the data),
an override from the settings (``retention_tenant_hours``), else ``retention_hours``. 0 keeps
events (or audit rows, or records) forever.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable, Mapping

from tea.lifecycle import Periodic
from tea.telemetry import Telemetry
from tea.storage.base import Storage
from tea.storage.capabilities import signals_of
from tea.timeutil import now_us

log = logging.getLogger(__name__)
HOUR_US = 3_600_000_000


class RetentionJob:
    def __init__(self, storage: Storage, hours: int, interval_s: float, clock: Callable[[], int] = now_us,
                 tenant_hours: Mapping[str, int] | None = None, telemetry: Telemetry | None = None,
                 audit_hours: int = 0, records_hours: int = 0) -> None:
        self.storage = storage
        self.hours = hours
        self.audit_hours = audit_hours
        self.audit_purged_total = 0
        self.records_hours = records_hours
        self.records_purged_total = 0
        self.interval_s = interval_s
        self.clock = clock
        self.tenant_hours = dict(tenant_hours or {})
        self.telemetry = telemetry
        self.purged_total = 0
        self.last_run_at: float | None = None
        self.last_purged = 0
        self.last_error: str | None = None

    async def overrides(self) -> dict[str, int]:
        """Tenant → hours for every tenant that does not follow ``hours``."""
        return {**self.tenant_hours, **await self.storage.retention_overrides()}

    async def set_override(self, tenant_id: str, hours: int | None) -> None:
        """Set (or, with None, remove) a tenant's override through the admin API; stored with the data."""
        await self.storage.set_retention_override(tenant_id, hours)

    async def run_once(self) -> int:
        """Delete what is past retention now; returns rows deleted."""
        overrides = await self.overrides()
        now = self.clock()
        purged = 0
        if self.hours > 0:
            purged += await self._purge(now - self.hours * HOUR_US, exclude_tenant_ids=tuple(sorted(overrides)))
        for tenant, hours in sorted(overrides.items()):
            if hours > 0:
                purged += await self._purge(now - hours * HOUR_US, tenant_ids=(tenant,))
        audit_purged = await self.purge_audit(now)
        records_purged = await self.purge_records(now)
        # together, once the run is over: /health never shows a run's purge count with the previous run's time
        self.purged_total += purged
        self.last_purged = purged
        self.last_run_at = time.time()
        if self.telemetry is not None:
            self.telemetry.retention_purged.inc(purged)
            self.telemetry.retention_runs.labels("ok").inc()
        if purged or audit_purged or records_purged:
            log.info("retention: deleted %d events, %d audit-log rows, %d history records", purged, audit_purged,
                     records_purged)
        return purged

    async def _purge(self, cutoff_us: int, **tenants: Any) -> int:
        """Events, and the metric points and log records beside them, before ``cutoff_us``."""
        purged = await self.storage.purge_older_than(cutoff_us, **tenants)
        signals = signals_of(self.storage)
        if signals is not None:
            purged += await signals.purge_older_than(cutoff_us, **tenants)
        return purged

    async def purge_audit(self, now: int) -> int:
        """Delete audit-log rows past ``audit_hours`` (0: keep them); returns rows deleted."""
        purged = await self._purge_past(self.audit_hours, self.storage.purge_audit_older_than, now, "audit_purged")
        self.audit_purged_total += purged
        return purged

    async def purge_records(self, now: int) -> int:
        """Delete alert-history and registry records past ``records_hours`` (0: keep them); returns rows deleted."""
        purged = await self._purge_past(self.records_hours, self.storage.purge_records_older_than, now,
                                        "records_purged")
        self.records_purged_total += purged
        return purged

    async def _purge_past(self, hours: int, purge: Callable[[int], Awaitable[int]], now: int, counter: str) -> int:
        """``purge`` what is older than ``hours`` (0: nothing), counted in the telemetry counter ``counter``."""
        if hours <= 0:
            return 0
        purged = await purge(now - hours * HOUR_US)
        if self.telemetry is not None:
            getattr(self.telemetry, counter).inc(purged)
        return purged

    def schedule(self) -> Periodic:
        """``run_once`` at start and every ``interval_s``; a failure is logged and counted, and the schedule kept."""
        return Periodic("retention", self._scheduled_run, self.interval_s, failed=self._failed)

    async def _scheduled_run(self) -> None:
        await self.run_once()
        self.last_error = None

    def _failed(self, exc: Exception) -> None:  # storage boundary: log, keep the schedule
        self.last_error = str(exc)
        if self.telemetry is not None:
            self.telemetry.retention_runs.labels("error").inc()
        log.error("retention run failed: %s", exc)
