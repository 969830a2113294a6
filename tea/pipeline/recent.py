"""The event ids a node acknowledged lately: what storage may not hold yet when a resend arrives."""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable


class RecentIds:
    """``(tenant_id, event_id)`` pairs, at most ``bound`` (the oldest forgotten first). Together with
    storage's ``existing_event_ids`` this answers "was this event already accepted?" for events still in
    the durable buffer, on this node."""

    def __init__(self, bound: int = 100_000) -> None:
        self.bound = bound
        self._ids: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._ids

    def add(self, tenant_id: str, event_ids: Iterable[str]) -> None:
        for event_id in event_ids:
            self._ids[(tenant_id, event_id)] = None
        while len(self._ids) > self.bound:
            self._ids.popitem(last=False)
