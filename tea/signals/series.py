"""Time-bucketed series of one OTLP metric, from its stored points (the arithmetic of GET /v1/otel/metrics).

* ``sum``/``avg``/``min``/``max``/``count`` over every point of a group in a bucket; ``last``: each series'
  last value in the bucket, added up over the group's series (gauges, and sums read as values).
* ``increase``/``rate`` (sums): a delta sum's values added up; a cumulative sum's increase between
  consecutive points of each series, where a value below the one before it — or a new start time — is a
  counter reset (the counter began again from zero, so the new value is all increase). A series' first
  point counts only when its counter started inside the range. ``rate`` = increase / bucket seconds.
* ``p50``…``p99`` (histograms): the bucket counts of the group's points in the bucket — added up for delta
  temporality, increases per series (resets as above) for cumulative — merged by bound and interpolated
  within the bucket holding the rank (as Prometheus's histogram_quantile); exponential histograms become
  explicit bounds first (base 2^(2^-scale)). ``count``/``sum``/``avg`` of a histogram: of its observations.
* ``p50``…``p99`` of a summary: the point's own quantile (its last value in the bucket, averaged over series).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import msgspec
import numpy as np

from tea import timebuckets
from tea.signals.model import MetricPoint
from tea.signals.quantile import bucket_quantile

QUANTILES = {"p50": 0.5, "p75": 0.75, "p90": 0.9, "p95": 0.95, "p99": 0.99}
AGGS = ("sum", "avg", "min", "max", "last", "count", "increase", "rate", *QUANTILES)
_VALUES = ("sum", "avg", "min", "max", "last", "count")
ALLOWED = {"gauge": _VALUES, "sum": (*_VALUES, "increase", "rate"),
           "histogram": ("count", "sum", "avg", *QUANTILES), "exponential_histogram": ("count", "sum", "avg", *QUANTILES),
           "summary": ("count", "sum", "avg", *QUANTILES)}
_attrs = msgspec.json.Decoder(dict[str, Any])


class SeriesError(ValueError):
    """A question the metric's kind cannot answer (the route's 400)."""


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    last: dict[Any, tuple[int, float]] = field(default_factory=dict)   # series -> (time, value)
    hist: dict[float, float] = field(default_factory=dict)             # upper bound -> count
    count: float = 0.0
    total: float = 0.0


def group_of(point: MetricPoint, group_by: Sequence[str]) -> tuple[Any, ...]:
    if not group_by:
        return ()
    attrs = _attrs.decode(point.attributes)
    return tuple(point.service if key == "service" else _text(attrs.get(key)) for key in group_by)


def _text(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else msgspec.json.encode(value).decode()


def _series_key(p: MetricPoint) -> tuple[Any, ...]:
    return (p.tenant_id, p.service, bytes(p.attributes), bytes(p.resource))


def explicit_buckets(p: MetricPoint) -> dict[float, float]:
    """Upper bound -> count of one histogram point (explicit, or exponential turned explicit)."""
    d = p.data
    if d.kind == "histogram":
        bounds = [*(d.bounds or []), math.inf]
        return {b: float(c) for b, c in zip(bounds, d.counts or [])}
    base = 2.0 ** (2.0 ** -(d.scale or 0))
    out: dict[float, float] = {0.0: float(d.zero_count or 0)}
    for k, c in enumerate(d.positive_counts or []):
        out[base ** ((d.positive_offset or 0) + k + 1)] = out.get(base ** ((d.positive_offset or 0) + k + 1), 0) + c
    for k, c in enumerate(d.negative_counts or []):
        bound = -(base ** ((d.negative_offset or 0) + k))
        out[bound] = out.get(bound, 0) + c
    return out


def _increase(previous: MetricPoint | None, p: MetricPoint, range_start: int) -> float:
    """What a cumulative sum grew by since the previous point of its series."""
    value = p.data.value or 0.0
    if previous is None:
        started = p.data.start_us is not None and p.data.start_us >= range_start
        return value if started else 0.0
    before = previous.data.value or 0.0
    reset = value < before or (p.data.start_us != previous.data.start_us and p.data.start_us is not None)
    return value if reset else value - before


def _hist_increase(previous: MetricPoint | None, p: MetricPoint, range_start: int) -> tuple[dict[float, float],
                                                                                          float, float]:
    now, count, total = explicit_buckets(p), float(p.data.count or 0), p.data.sum or 0.0
    if p.data.temporality == "delta":
        return now, count, total
    if previous is None:
        started = p.data.start_us is not None and p.data.start_us >= range_start
        return (now, count, total) if started else ({}, 0.0, 0.0)
    before = explicit_buckets(previous)
    if count < (previous.data.count or 0) or p.data.start_us != previous.data.start_us:
        return now, count, total  # a reset: everything since is new
    return ({b: c - before.get(b, 0.0) for b, c in now.items()}, count - (previous.data.count or 0),
            total - (previous.data.sum or 0.0))


def cells(points: Iterable[MetricPoint], agg: str, granularity: str, group_by: Sequence[str],
          range_start: int) -> dict[tuple[Any, ...], dict[int, Cell]]:
    """(group, bucket start) -> what the bucket's points contribute to ``agg``."""
    out: dict[tuple[Any, ...], dict[int, Cell]] = {}
    previous: dict[tuple[Any, ...], MetricPoint] = {}
    for p in sorted(points, key=lambda p: p.timestamp):
        key = _series_key(p)
        prior = previous.get(key)
        previous[key] = p
        if p.timestamp < range_start:
            continue  # (read only to know the value before the range)
        cell = out.setdefault(group_of(p, group_by), {}).setdefault(timebuckets.floor(p.timestamp, granularity), Cell())
        _add(cell, agg, prior, p, key, range_start)
    return out


def _add(cell: Cell, agg: str, prior: MetricPoint | None, p: MetricPoint, key: tuple[Any, ...],
         range_start: int) -> None:
    d = p.data
    if d.kind in ("gauge", "sum") and agg in _VALUES:
        cell.values.append(d.value if d.value is not None else math.nan)
        cell.last[key] = (p.timestamp, d.value if d.value is not None else math.nan)
    elif d.kind == "sum":
        cell.total += (d.value or 0.0) if d.temporality == "delta" else _increase(prior, p, range_start)
    elif d.kind == "summary":
        q = QUANTILES.get(agg)
        if q is not None:
            found = [v for quantile, v in d.quantiles or () if abs(quantile - q) < 1e-9]
            if not found:
                raise SeriesError(f"summary {d.name!r} carries no {q} quantile")
            cell.last[key] = (p.timestamp, found[0])
        else:
            cell.count += d.count or 0
            cell.total += d.sum or 0.0
    else:
        buckets, count, total = _hist_increase(prior, p, range_start)
        for bound, c in buckets.items():
            cell.hist[bound] = cell.hist.get(bound, 0.0) + c
        cell.count += count
        cell.total += total


def value(cell: Cell, agg: str, kind: str, width_s: float) -> float | None:
    """The bucket's answer (None: nothing to say)."""
    if kind in ("gauge", "sum") and agg in _VALUES:
        present = [v for v in cell.values if not math.isnan(v)]
        if agg == "count":
            return float(len(cell.values))
        if agg == "last":
            last = [v for _, v in cell.last.values() if not math.isnan(v)]
            return math.fsum(last) if last else None
        if not present:
            return None
        return {"sum": math.fsum, "min": min, "max": max}.get(agg, lambda vs: math.fsum(vs) / len(vs))(present)
    if agg in ("increase", "rate"):
        return cell.total if agg == "increase" else cell.total / width_s
    if agg == "count":
        return cell.count
    if agg in ("sum", "avg"):
        return cell.total if agg == "sum" else (cell.total / cell.count if cell.count else None)
    if kind == "summary":
        found = [v for _, v in cell.last.values()]
        return math.fsum(found) / len(found) if found else None
    return _quantile(cell.hist, QUANTILES[agg])


def _quantile(hist: dict[float, float], q: float) -> float | None:
    if not hist:
        return None
    bounds = np.array(sorted(hist))
    if bounds[-1] != math.inf:
        bounds = np.append(bounds, math.inf)
        hist = {**hist, math.inf: 0.0}
    counts = np.cumsum([hist[b] for b in bounds]).reshape(-1, 1)
    found = float(bucket_quantile(np.array([q]), bounds, counts)[0])
    return None if math.isnan(found) else found


def build(points: list[MetricPoint], agg: str, granularity: str, group_by: Sequence[str], start_us: int,
          end_us: int) -> tuple[str, list[tuple[tuple[Any, ...], list[tuple[int, float | None]]]]]:
    """(kind, [(group values, [(bucket start, value)])]): every bucket of the range, in each group."""
    kinds = {p.data.kind for p in points if p.timestamp >= start_us}
    if len(kinds) > 1:
        raise SeriesError(f"the metric has points of several kinds ({', '.join(sorted(kinds))}): choose one by name")
    if not kinds:
        return "", []  # (no point in the range: no series, whatever the agg)
    kind = kinds.pop()
    if agg not in ALLOWED[kind]:
        raise SeriesError(f"agg {agg!r} does not apply to a {kind} (accepted: {', '.join(ALLOWED[kind])})")
    if agg in ("increase", "rate") and any(p.data.monotonic is False for p in points):
        raise SeriesError("increase and rate apply to monotonic sums (counters); this sum is not monotonic")
    found = cells(points, agg, granularity, group_by, start_us)
    starts = timebuckets.starts(start_us, end_us, granularity)
    out = []
    for group in sorted(found, key=lambda g: [(v is None, v or "") for v in g]):
        by_bucket = found[group]
        row = []
        for b in starts:
            width_s = (timebuckets.next_start(b, granularity) - b) / 1e6
            cell = by_bucket.get(b)
            row.append((b, value(cell, agg, kind, width_s) if cell is not None else
                        (0.0 if agg in ("increase", "rate", "count") else None)))
        out.append((group, row))
    return kind, out
