"""Processor ``communication_activity``: stored communication events move ``last_activity``,
``activity_count`` and ``error_count`` of the registry entities they name (source and target, by the
registry type of their communication type: mcp → mcp_server, workflow → n8n_workflow, external →
service). Errors are status ``error`` or ``timeout``.

It reads the durable log behind the writer in batches of whatever ``processing.batch_timeout_ms``
brought (one document write per entity per batch, however many calls named it). Counts are exactly once, although a counter
is not idempotent by id:

* a replay of the log (a crash before this processor's position moved on) counts nothing twice: each
  entity's document records, in the same write as its counts, the log position of the last event it
  counted (``Registry.apply_logged_activity``);
* a client resending an event (same id, a new record in the log) counts once: an event counts only as
  the copy storage kept — the one whose ``received_at`` is the stored event's — read back from storage
  for the batch's tenants and time span. An event storage refused (dead-lettered) counts nothing.
"""
from __future__ import annotations

import logging
from typing import Any

import msgspec

from tea.comms.records import EVENT_TYPE
from tea.comms.registry import COMM_TYPES, Registry
from tea.pipeline.consume import Delivery
from tea.scan import contains_any
from tea.types import Event, EventFilter

_MARK = f'"event_type":"{EVENT_TYPE}"'.encode()
CLUSTER_GAP_US = 60_000_000  # a batch's timestamps are read back in spans with no gap wider than this
log = logging.getLogger(__name__)


class CommunicationActivity:
    wants_any_takes_chunks = True  # wants_any searches a list of NDJSON chunks in one call
    event_types = frozenset([EVENT_TYPE])  # records known to hold none are not searched
    takes_delivery = True          # called with the events' log positions
    batch_size = 100_000           # a batch is whatever the interval brought, in one registry write per entity

    @staticmethod
    def wants(line: bytes) -> bool:
        return _MARK in line

    @staticmethod
    def wants_any(ndjson: bytes | list[bytes]) -> bool:
        """Whether committed NDJSON holds any communication (one scan, without the GIL)."""
        return contains_any(ndjson, (_MARK,))

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def __call__(self, events: list[Event], delivery: Delivery | None = None) -> None:
        positions: list[Any] = delivery.positions if delivery is not None else [None] * len(events)
        calls = [(e, p) for e, p in zip(events, positions) if e.event_type == EVENT_TYPE]
        if not calls:
            return
        stored = await self._stored_copies([e for e, _ in calls])
        updates: dict[tuple[str, str, str], list[tuple[Any, int, int]]] = {}
        for e, pos in calls:
            receipt = (e.tenant_id, e.event_id, e.received_at)
            if receipt not in stored:
                continue  # a resent copy storage skipped, or an event it refused
            stored.discard(receipt)  # (the same copy twice in one request counts once)
            attrs: dict[str, Any] = msgspec.json.decode(e.attributes) if e.attributes else {}
            failed = int(e.status in ("error", "timeout"))
            for ident, kind in ((e.source, attrs.get("source_type")), (e.target, attrs.get("target_type"))):
                registry_type = COMM_TYPES.get(kind or "")
                if ident is not None and registry_type is not None:
                    updates.setdefault((e.tenant_id, registry_type, ident), []).append(  # type: ignore[arg-type]
                        (pos, failed, e.timestamp))
        if updates:
            await self.registry.apply_logged_activity(delivery.log_id if delivery is not None else None, updates)

    async def _stored_copies(self, events: list[Event]) -> set[tuple[Any, ...]]:
        """``(tenant_id, event_id, received_at)`` of the stored communications among ``events``' ids: read back
        per tenant over the spans of time the events cover."""
        wanted: dict[str, set[str]] = {}
        stamps: dict[str, list[int]] = {}
        for e in events:
            wanted.setdefault(e.tenant_id, set()).add(e.event_id)  # type: ignore[arg-type]
            stamps.setdefault(e.tenant_id, []).append(e.timestamp)  # type: ignore[arg-type]
        found: set[tuple[Any, ...]] = set()
        for tenant, ids in wanted.items():
            for start_us, end_us in _spans(sorted(stamps[tenant])):
                where = EventFilter(tenant_ids=(tenant,), event_type=EVENT_TYPE, start_us=start_us, end_us=end_us + 1)
                async for chunk in self.registry.storage.iter_events(where):
                    found.update((e.tenant_id, e.event_id, e.received_at) for e in chunk if e.event_id in ids)
        return found


def _spans(stamps: list[int]) -> list[tuple[int, int]]:
    """Sorted timestamps cut where two are more than ``CLUSTER_GAP_US`` apart: ``(first, last)`` of each run."""
    spans: list[tuple[int, int]] = []
    for stamp in stamps:
        if spans and stamp - spans[-1][1] <= CLUSTER_GAP_US:
            spans[-1] = (spans[-1][0], stamp)
        else:
            spans.append((stamp, stamp))
    return spans
