"""Keeps a backend's per-minute pre-aggregates (``tea.storage.capabilities.RollsUp``: DuckDB's Prometheus
rollup) caught up with the events, every few seconds. Reads are exact without it (they take the events of
whatever is not rolled up yet); it keeps them fast."""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from tea.storage.capabilities import RollsUp
from tea.timeutil import now_us

log = logging.getLogger(__name__)
INTERVAL_S = 5.0


async def keep_rolled_up(storage: RollsUp, clock: Callable[[], int] = now_us, interval_s: float = INTERVAL_S) -> None:
    while True:
        try:
            await storage.roll_up(clock())
        except Exception as exc:  # storage boundary: log, keep the schedule (the reads stay exact)
            log.error("rollup catch-up failed: %s", exc)
        await asyncio.sleep(interval_s)
