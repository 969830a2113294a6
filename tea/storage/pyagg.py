"""Aggregation in plain Python over events in memory: the memory backend's ``aggregate``."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

from tea import timebuckets
from tea.types import Agg, AggregateSpec, Event


def is_error(event: Event) -> bool:
    if event.status is not None:
        return event.status in ("error", "timeout")
    code = event.status_code
    return event.error_type is not None or (code is not None and (code >= 400 or code < 0))


def quantile(values: list[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (DuckDB quantile_cont, numpy 'linear')."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _compute(agg: Agg, events: list[Event]) -> Any:
    if agg.fn == "count":
        return len(events)
    if agg.fn == "errors":
        return sum(1 for e in events if is_error(e))
    values = [v for v in (getattr(e, agg.column) for e in events) if v is not None]  # type: ignore[arg-type]
    if agg.fn == "count_distinct":
        return len(set(values))
    if agg.fn == "sum":
        return (math.fsum(values) if any(isinstance(v, float) for v in values) else sum(values)) if values else None
    if agg.fn == "avg":
        return math.fsum(values) / len(values) if values else None
    if agg.fn == "min":
        return min(values, default=None)
    if agg.fn == "max":
        return max(values, default=None)
    if agg.fn == "count_le":
        return sum(1 for v in values if v <= agg.le)  # type: ignore[operator]
    return quantile(values, agg.q)  # type: ignore[arg-type]


def aggregate(events: Iterable[Event], spec: AggregateSpec) -> list[tuple[Any, ...]]:
    events = list(events)
    if spec.top is not None and spec.group_by:
        groups: dict[tuple[Any, ...], list[Event]] = defaultdict(list)
        for event in events:
            groups[tuple(getattr(event, c) for c in spec.group_by)].append(event)
        rank = {group: _compute(spec.top_by, members) for group, members in groups.items()}
        ranked = sorted(groups, key=lambda g: (rank[g] is None, -(rank[g] or 0), tuple(_sortable(v) for v in g)))
        keep = set(ranked[: spec.top])
        events = [e for e in events if tuple(getattr(e, c) for c in spec.group_by) in keep]
    cells: dict[tuple[Any, ...], list[Event]] = defaultdict(list)
    for event in events:
        bucket = _bucket(event.timestamp, spec)  # type: ignore[arg-type]
        cells[(bucket, *(getattr(event, c) for c in spec.group_by))].append(event)
    return [(*key, *(_compute(agg, members) for agg in spec.aggs)) for key, members in cells.items()]


def _bucket(ts: int, spec: AggregateSpec) -> int | None:
    if spec.bucket_us is not None:
        return ts - (ts - spec.origin_us) % spec.bucket_us  # (Python's % floors)
    return timebuckets.floor(ts, spec.bucket) if spec.bucket else None


def _sortable(value: Any) -> tuple[bool, Any]:
    return (value is None, value if value is not None else "")
