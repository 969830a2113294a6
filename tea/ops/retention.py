"""The retention job: on a schedule, delete events older than ``retention_hours``."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from tea.storage.base import Storage
from tea.timeutil import now_us

log = logging.getLogger(__name__)


class RetentionJob:
    def __init__(self, storage: Storage, hours: int, interval_s: float, clock: Callable[[], int] = now_us) -> None:
        self.storage = storage
        self.hours = hours
        self.interval_s = interval_s
        self.clock = clock
        self.purged_total = 0
        self.last_run_at: float | None = None
        self.last_purged = 0
        self.last_error: str | None = None

    async def run_once(self) -> int:
        """Delete what is past retention now; returns rows deleted (0 when retention is off)."""
        if self.hours <= 0:
            return 0
        cutoff = self.clock() - self.hours * 3_600_000_000
        purged = await self.storage.purge_older_than(cutoff)
        self.purged_total += purged
        self.last_purged = purged
        self.last_run_at = time.time()
        if purged:
            log.info("retention: deleted %d events older than %d h", purged, self.hours)
        return purged

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
                self.last_error = None
            except Exception as exc:  # storage boundary: log, keep the schedule
                self.last_error = str(exc)
                log.error("retention run failed: %s", exc)
            await asyncio.sleep(self.interval_s)
