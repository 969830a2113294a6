"""Time-bucketed metrics: parameters → one AggregateSpec → zero-filled series.

Every metric is computed exactly by the backend (counts, sums with compensated summation,
averages, exact percentiles by linear interpolation). ``error_rate`` is errors / requests;
``*_mb`` are 10^6 bytes. Empty buckets are present with zeros, so a chart can draw a series as is.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from tea import timebuckets
from tea.errors import InvalidParameter
from tea.timeutil import format_us
from tea.types import RANK_MERGE, Agg, AggregateSpec, EventFilter

COUNT = Agg("count")
ERRORS = Agg("errors")
_REQ = Agg("sum", "request_size")
_RESP = Agg("sum", "response_size")


def _q(q: float) -> Agg:
    return Agg("quantile", "duration_ms", q)


def _mb(*values: Any) -> float:
    return sum(v or 0 for v in values) / 1e6


# metric -> (aggregates it needs, how its value follows from them)
METRICS: dict[str, tuple[tuple[Agg, ...], Callable[..., Any]]] = {
    "requests": ((COUNT,), lambda n: n),
    "errors": ((ERRORS,), lambda e: e),
    "error_rate": ((COUNT, ERRORS), lambda n, e: e / n if n else 0.0),  # a fraction, 0 to 1
    "avg_latency_ms": ((Agg("avg", "duration_ms"),), lambda v: v),
    "min_latency_ms": ((Agg("min", "duration_ms"),), lambda v: v),
    "max_latency_ms": ((Agg("max", "duration_ms"),), lambda v: v),
    "p50_latency_ms": ((_q(0.5),), lambda v: v),
    "p90_latency_ms": ((_q(0.9),), lambda v: v),
    "p95_latency_ms": ((_q(0.95),), lambda v: v),
    "p99_latency_ms": ((_q(0.99),), lambda v: v),
    "request_mb": ((_REQ,), _mb),
    "response_mb": ((_RESP,), _mb),
    "data_mb": ((_REQ, _RESP), _mb),
    "tokens": ((Agg("sum", "tokens_used"),), lambda v: v or 0),
    "input_tokens": ((Agg("sum", "input_tokens"),), lambda v: v or 0),
    "output_tokens": ((Agg("sum", "output_tokens"),), lambda v: v or 0),
    "cost": ((Agg("sum", "cost"),), lambda v: v or 0.0),
    "unique_users": ((Agg("count_distinct", "user_id"),), lambda v: v),
}
# metrics whose value is their one aggregate as is (no arithmetic): copied straight from the row
DIRECT = frozenset({"requests", "errors", "avg_latency_ms", "min_latency_ms", "max_latency_ms", "p50_latency_ms",
                    "p90_latency_ms", "p95_latency_ms", "p99_latency_ms", "unique_users"})
INTEGER_METRICS = frozenset({"requests", "errors", "tokens", "input_tokens", "output_tokens", "unique_users"})
# what `order_by` ranks groups by: the metrics that are one aggregate adding up (or taking the min/max)
# across buckets, so the ranking comes out of the same scan as the series
RANKABLE: dict[str, Agg] = {"requests": COUNT, "errors": ERRORS, "tokens": Agg("sum", "tokens_used"),
                            "cost": Agg("sum", "cost"), "request_mb": _REQ, "response_mb": _RESP,
                            "min_latency_ms": Agg("min", "duration_ms"), "max_latency_ms": Agg("max", "duration_ms")}
DEFAULT_METRICS = ("requests", "errors", "error_rate", "avg_latency_ms", "p95_latency_ms", "data_mb")
GROUP_BY = ("event_type", "method", "source", "target", "status", "protocol", "user_id", "tenant_id", "tool", "model")
GRANULARITIES = ("minute", "hour", "day", "week", "month", "auto")
MAX_BUCKETS = 10_000
DAY_US = timebuckets.DAY_US


@dataclass(frozen=True)
class MetricsQuery:
    filter: EventFilter
    metrics: tuple[str, ...]
    granularity: str
    group_by: tuple[str, ...]
    limit: int
    order_by: str = "requests"

    @property
    def start_us(self) -> int:
        return self.filter.start_us  # type: ignore[return-value]

    @property
    def end_us(self) -> int:
        return self.filter.end_us  # type: ignore[return-value]


def _merged(pick: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda a, b: a if b is None else b if a is None else pick(a, b)


_MERGE = {"sum": _merged(lambda a, b: a + b), "min": _merged(min), "max": _merged(max)}


def auto_granularity(span_us: int) -> str:
    if span_us <= 3 * timebuckets.HOUR_US:
        return "minute"
    if span_us <= 4 * DAY_US:
        return "hour"
    if span_us <= 120 * DAY_US:
        return "day"
    if span_us <= 3 * 366 * DAY_US:
        return "week"
    return "month"


def metrics_query(f: EventFilter, now_us: int, metrics: tuple[str, ...] = DEFAULT_METRICS, granularity: str = "auto",
                  group_by: tuple[str, ...] = (), limit: int = 10, order_by: str = "requests") -> MetricsQuery:
    """The query over ``f``'s range (default: the 24 h before ``now_us``); 400 when its buckets are too many."""
    end = f.end_us if f.end_us is not None else now_us
    start = f.start_us if f.start_us is not None else end - DAY_US
    if end <= start:
        raise InvalidParameter("end_time", "`end_time` must be after `start_time`")
    if granularity == "auto":
        granularity = auto_granularity(end - start)
    if timebuckets.count(start, end, granularity) > MAX_BUCKETS:
        raise InvalidParameter("granularity", f"{granularity} buckets over this range would be more than "
                               f"{MAX_BUCKETS}; choose a coarser granularity or a shorter range")
    return MetricsQuery(replace(f, start_us=start, end_us=end), tuple(dict.fromkeys(metrics)), granularity,
                        tuple(dict.fromkeys(group_by)), limit, order_by)


def aggregate_spec(query: MetricsQuery) -> tuple[AggregateSpec, dict[str, list[int]]]:
    """The one AggregateSpec answering every metric, and where each metric's inputs are in a row."""
    rank = RANKABLE[query.order_by]
    aggs: list[Agg] = [rank]  # always, first: series are ordered by it
    inputs: dict[str, list[int]] = {}
    for name in query.metrics:
        positions = []
        for agg in METRICS[name][0]:
            if agg not in aggs:
                aggs.append(agg)
            positions.append(aggs.index(agg))
        inputs[name] = positions
    top = query.limit if query.group_by else None
    return AggregateSpec(query.filter, tuple(aggs), query.granularity, query.group_by, top, rank), inputs


def build_series(query: MetricsQuery, rows: list[tuple[Any, ...]], inputs: dict[str, list[int]]) -> list[dict]:
    width = len(query.group_by)
    buckets = timebuckets.starts(query.start_us, query.end_us, query.granularity)
    stamps = [format_us(b) for b in buckets]
    direct = [(name, inputs[name][0]) for name in query.metrics if name in DIRECT]
    derived = [(name, METRICS[name][1], inputs[name]) for name in query.metrics if name not in DIRECT]
    merge = _MERGE[RANK_MERGE[RANKABLE[query.order_by].fn]]
    cells: dict[tuple[Any, ...], dict[int, dict[str, Any]]] = {}
    ranks: dict[tuple[Any, ...], Any] = {}
    for row in rows:
        group, values = row[1:1 + width], row[1 + width:]
        point = {name: values[i] for name, i in direct}
        for name, fn, positions in derived:
            point[name] = fn(*[values[i] for i in positions])
        cells.setdefault(group, {})[row[0]] = point
        ranks[group] = merge(ranks.get(group), values[0])  # the order_by aggregate is always first
    if not query.group_by and () not in cells:
        cells[()] = {}
    zero = {name: 0 if name in INTEGER_METRICS else 0.0 for name in query.metrics}
    # as the backends rank them: largest first, no value last, then by group values (NULL last)
    order = sorted(cells, key=lambda g: (ranks.get(g) is None, -(ranks.get(g) or 0), [(v is None, v or "") for v in g]))
    series = []
    for group in order:
        by_bucket = cells[group]
        series.append({"group": dict(zip(query.group_by, group)),
                       "points": [{"timestamp": stamp, **by_bucket.get(b, zero)} for b, stamp in zip(buckets, stamps)]})
    return series
