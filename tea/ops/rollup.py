"""Keeps a backend's per-minute pre-aggregates (``tea.storage.capabilities.RollsUp``: DuckDB's Prometheus
rollup) caught up with the events, every few seconds. Reads are exact without it (they take the events of
whatever is not rolled up yet); it keeps them fast."""
from __future__ import annotations

import logging
from typing import Callable

from tea.lifecycle import Periodic
from tea.storage.capabilities import RollsUp
from tea.timeutil import now_us

log = logging.getLogger(__name__)
INTERVAL_S = 5.0


def keep_rolled_up(storage: RollsUp, clock: Callable[[], int] = now_us, interval_s: float = INTERVAL_S) -> Periodic:
    """The catch-up at start and every ``interval_s``; a failure is logged and the schedule kept (the reads stay
    exact)."""
    return Periodic("rollup", lambda: storage.roll_up(clock()), interval_s,
                    failed=lambda exc: log.error("rollup catch-up failed: %s", exc))
