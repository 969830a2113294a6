"""The event ids a node acknowledged lately: what storage may not hold yet when a resend arrives."""
from __future__ import annotations

from collections import OrderedDict
from typing import Hashable, Iterable


class RecentIds:
    """``(tenant_id, key)`` pairs — a key: an event id, or whatever else names an event (telemetry-kit's id and
    time) — at most ``bound`` (the oldest forgotten first). Together with
    storage's ``existing_event_keys`` this answers "was this event already accepted?" for events still in
    the durable buffer, on this node."""

    def __init__(self, bound: int = 100_000) -> None:
        self.bound = bound
        self._ids: OrderedDict[tuple[str, Hashable], None] = OrderedDict()

    def __contains__(self, key: tuple[str, Hashable]) -> bool:
        return key in self._ids

    def add(self, tenant_id: str, keys: Iterable[Hashable]) -> None:
        for key in keys:
            self._ids[(tenant_id, key)] = None
        while len(self._ids) > self.bound:
            self._ids.popitem(last=False)
