"""Processor ``communication_activity``: committed communication events move ``last_activity``,
``activity_count`` and ``error_count`` of the registry entities they name (source and target, by the
registry type of their communication type: mcp → mcp_server, workflow → n8n_workflow, external →
service). Errors are status ``error`` or ``timeout``. One document update per entity and batch."""
from __future__ import annotations

from typing import Any

import msgspec

from tea.comms.records import EVENT_TYPE
from tea.comms.registry import COMM_TYPES, Registry
from tea.types import Event

_MARK = f'"event_type":"{EVENT_TYPE}"'.encode()


class CommunicationActivity:
    @staticmethod
    def wants(line: bytes) -> bool:
        return _MARK in line

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def __call__(self, events: list[Event]) -> None:
        updates: dict[tuple[str, str, str], list[int]] = {}
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
        if updates:
            await self.registry.apply_activity({k: (v[0], v[1], v[2]) for k, v in updates.items()})
