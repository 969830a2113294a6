"""Processor ``communication_activity``: committed communication events move ``last_activity``,
``activity_count`` and ``error_count`` of the registry entities they name (source and target, by the
registry type of their communication type: mcp → mcp_server, workflow → n8n_workflow, external →
service). Errors are status ``error`` or ``timeout``. Updates are merged in memory and applied at most
every ``flush_interval_s`` (one document update per entity per flush, however many calls named it),
so a busy stream costs the registry a handful of writes a second. Like every processor this runs
after the commit: a crash can lose the counts of the last interval, never the communications."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec

from tea.comms.records import EVENT_TYPE
from tea.comms.registry import COMM_TYPES, Registry
from tea.pipeline.scan import contains_any
from tea.types import Event

_MARK = f'"event_type":"{EVENT_TYPE}"'.encode()
log = logging.getLogger(__name__)


class CommunicationActivity:
    wants_any_takes_chunks = True  # wants_any searches a list of NDJSON chunks in one call

    @staticmethod
    def wants(line: bytes) -> bool:
        return _MARK in line

    @staticmethod
    def wants_any(ndjson: bytes | list[bytes]) -> bool:
        """Whether committed NDJSON holds any communication (one scan, without the GIL)."""
        return contains_any(ndjson, (_MARK,))

    def __init__(self, registry: Registry, flush_interval_s: float = 0.5) -> None:
        self.registry = registry
        self.flush_interval_s = flush_interval_s
        self._pending: dict[tuple[str, str, str], list[int]] = {}
        self._last_flush = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None

    async def flush(self) -> None:
        """Apply what is pending now (a processor retry re-applies nothing: merged updates are taken first)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        updates, self._pending = self._pending, {}
        self._last_flush = time.monotonic()
        if updates:
            await self.registry.apply_activity({k: (v[0], v[1], v[2]) for k, v in updates.items()})

    def _flush_later(self) -> None:
        async def run() -> None:
            try:
                await self.flush()
            except Exception:  # storage boundary: counted as lost, the next calls go on
                log.exception("registry activity update failed")
        self._timer = None
        self._flushing = asyncio.get_running_loop().create_task(run())

    async def __call__(self, events: list[Event]) -> None:
        updates = self._pending
        for e in events:
            if e.event_type != EVENT_TYPE:
                continue
            attrs: dict[str, Any] = msgspec.json.decode(e.attributes) if e.attributes else {}
            failed = int(e.status in ("error", "timeout"))
            for ident, kind in ((e.source, attrs.get("source_type")), (e.target, attrs.get("target_type"))):
                registry_type = COMM_TYPES.get(kind or "")
                if ident is None or registry_type is None:
                    continue
                entry = updates.setdefault((e.tenant_id, registry_type, ident), [0, 0, 0])  # type: ignore[arg-type]
                entry[0] += 1
                entry[1] += failed
                entry[2] = max(entry[2], e.timestamp)  # type: ignore[call-overload]
        if not updates:
            return
        wait = self.flush_interval_s - (time.monotonic() - self._last_flush)
        if wait <= 0:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait, self._flush_later)
