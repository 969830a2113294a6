"""Turn decoded events into canonical ones: ids, UTC microsecond timestamps, clock-skew policy."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

import uuid_utils

from tea import semconv
from tea.pricing import PriceTable
from tea.timeutil import MAX_US, datetime_to_us, now_us, format_us
from tea.pipeline.stages import Drop, Invalid, Stage
from tea.pipeline.storable import all_objects, attributes_of
from tea.types import EMPTY_OBJECT, Event, ItemError

_MAX_MS = MAX_US // 1000
_OPEN_BRACE = 0x7B



# events that arrive without an id get a sortable one, ``str(_uuid7())`` (UUIDv7; called inline: a Python call
# per event costs as much as the id)
_uuid7 = uuid_utils.uuid7


class Normaliser:
    """Decided once at start-up; called on every decoded batch."""

    def __init__(self, *, default_tenant: str = "default", max_future_skew_s: float = 86400.0,
                 clock: Callable[[], int] = now_us, stages: tuple[Stage, ...] = (),
                 prices: PriceTable | None = None) -> None:
        self.stages = stages  # validators and redaction, in order; first refusal wins
        self.prices = prices if prices is not None else PriceTable({})  # an event's cost from its model and tokens
        self.dropped = 0
        self.default_tenant = default_tenant
        self.max_future_us = int(max_future_skew_s * 1e6) if max_future_skew_s > 0 else None
        self.clock = clock

    def __call__(self, events: list[Event], indexes: list[int] | None, source_protocol: str,
                 tenant_id: str | None = None, only_tenant: str | None = None, timestamps_us: bool = False,
                 attributes: Any = None) -> tuple[list[Event], list[ItemError], int, int]:
        """Normalise in place. Returns (accepted, errors, min timestamp, max timestamp).

        ``tenant_id`` fills events that name none (default: ``default_tenant``); with ``only_tenant``
        (a tenant-scoped caller) an event naming another tenant is refused (``forbidden_tenant``).
        Tenants starting with ``_`` are TEA's own and refused. ``timestamps_us``: integer timestamps are
        already microseconds (receivers that build events themselves), not the wire's milliseconds.
        ``attributes``: the events' attributes as ``attributes_of`` gives them, when the caller has them."""
        unit = 1 if timestamps_us else 1000
        max_int = MAX_US if timestamps_us else _MAX_MS
        now = self.clock()
        latest = now + self.max_future_us if self.max_future_us is not None else MAX_US
        default_tenant = only_tenant or tenant_id or self.default_tenant
        # (OTLP spans were mapped with the same rules already; a batch whose attributes name no key of theirs
        # is not searched event by event)
        lift = False
        if source_protocol != "otlp":
            if attributes is None:
                attributes = attributes_of(events)
            lift = semconv.marked(attributes)
        # (every attributes an object, as usual: not looked at event by event; one event's look costs less)
        objects = attributes is not None and len(events) > 1 and all_objects(attributes)
        accepted: list[Event] = []
        accept = accepted.append
        errors: list[ItemError] = []
        low, high = MAX_US, 0
        stages, uuid7 = self.stages, _uuid7
        for position, event in enumerate(events):
            ts = event.timestamp
            if ts is None:
                us = now
            elif type(ts) is int:
                if not 0 <= ts <= max_int:
                    errors.append(self._error(indexes, position, event, "invalid_timestamp",
                                              "timestamp in epoch milliseconds is out of range", "timestamp"))
                    continue
                us = ts * unit
            else:
                us = datetime_to_us(ts)  # type: ignore[arg-type]
                if not 0 <= us <= MAX_US:
                    errors.append(self._error(indexes, position, event, "invalid_timestamp",
                                              "timestamp is before 1970-01-01T00:00:00Z", "timestamp"))
                    continue
            if us > latest:
                errors.append(self._error(
                    indexes, position, event, "clock_skew",
                    f"timestamp {format_us(us)} is more than {self.max_future_us // 1_000_000} s in the future "
                    f"(server time {format_us(now)})", "timestamp"))
                continue
            if not objects and memoryview(event.attributes)[0] != _OPEN_BRACE:
                if bytes(event.attributes) == b"null":
                    event.attributes = EMPTY_OBJECT
                else:
                    errors.append(self._error(indexes, position, event, "invalid_event",
                                              "attributes must be a JSON object", "attributes"))
                    continue
            tenant = event.tenant_id
            if tenant is not None and (tenant[0] == "_" or (only_tenant is not None and tenant != only_tenant)):
                errors.append(self._error(indexes, position, event, "forbidden_tenant",
                                          f"this credential cannot write to tenant {tenant!r}", "tenant_id"))
                continue
            event.timestamp = us
            event.received_at = now
            event.source_protocol = source_protocol
            if event.event_id is None:
                event.event_id = str(uuid7())
            if tenant is None:
                event.tenant_id = default_tenant
            if lift:
                semconv.lift(event)
            if event.model is not None and event.cost is None:
                event.cost = self.prices.cost(event.model, event.input_tokens, event.output_tokens)
            if stages:
                try:
                    for stage in stages:
                        event = stage(event)
                except Invalid as exc:
                    errors.append(self._error(indexes, position, event, exc.code, exc.message, exc.field))
                    continue
                except Drop:
                    self.dropped += 1
                    continue
            if us < low:
                low = us
            if us > high:
                high = us
            accept(event)
        return accepted, errors, low, high

    @staticmethod
    def _error(indexes: list[int] | None, position: int, event: Event, code: str, message: str,
               field: str | None) -> ItemError:
        index = indexes[position] if indexes is not None else position
        return ItemError(index, code, message, event.event_id, field)


def is_datetime(value: object) -> bool:
    return isinstance(value, datetime)
