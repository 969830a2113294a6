"""TEA's events as Prometheus counters and a latency histogram (the mapping is documented in docs/grafana.md).

Each stored event is one increment of ``tea_requests_total`` for its label set (its tenant, event type,
source, method, tool, model, status, protocol, target); an error also of ``tea_errors_total``; its
tokens, cost and bytes add to their ``*_total`` counters; its ``duration_ms`` is one observation of the
histogram ``tea_request_duration_ms`` (``_bucket{le}``, ``_sum``, ``_count``). The value of a counter
at time t is what the events before t add up to, so

* ``increase(x[r])`` at t is exactly what the events in [t - r, t) add (no extrapolation: TEA has the
  events themselves, not samples of them), and ``rate(x[r])`` is that divided by r in seconds;
* a series is present over a range query's whole range when it has an event anywhere in it (its
  rate is 0 at steps without events in their window), and a plain selector's series from its first event.

Every selector is answered by one ``AggregateSpec`` through the tenant-scoped reader: the counts, sums
and per-bound counts of every metric the selector names, per group of the labels the query needs and
per fixed-width bucket (the greatest common divisor of the step and the range, aligned on the first
window's start), summed into each step's window here.
"""
from __future__ import annotations

import math
from decimal import Decimal
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from tea.prom import cells
from tea.prom.engine import NAME, Keep, Labels, Series
from tea.prom.plan import Matcher, PromError, Selector
from tea.query.scope import ScopedStorage
from tea.types import Agg, AggregateSpec, EventFilter

# label -> the event column it comes from
LABELS: dict[str, str] = {"tenant_id": "tenant_id", "event_type": "event_type", "source": "source",
                          "method": "method", "tool": "tool", "model": "model", "status": "status",
                          "protocol": "protocol", "target": "target"}
# labels whose `=` matcher narrows the storage filter itself (the others are matched on the groups)
_FILTERED = ("event_type", "source", "method", "tool", "model", "status", "protocol", "target")
DURATION_BUCKETS_MS: tuple[float, ...] = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
                                          60000)
MAX_BUCKETS = 200_000
HISTOGRAM = "tea_request_duration_ms"


@dataclass(frozen=True)
class Metric:
    name: str
    agg: Agg
    kind: str       # counter | histogram (a part of tea_request_duration_ms)
    help: str
    le: str | None = None


COUNTERS: tuple[Metric, ...] = (
    Metric("tea_requests_total", Agg("count"), "counter", "Events recorded"),
    Metric("tea_errors_total", Agg("errors"), "counter",
           "Events that are errors (status error or timeout; without a status: an error type, a status code "
           ">= 400 or a negative JSON-RPC code)"),
    Metric("tea_tokens_total", Agg("sum", "tokens_used"), "counter", "Tokens used (tokens_used)"),
    Metric("tea_input_tokens_total", Agg("sum", "input_tokens"), "counter", "GenAI input tokens (input_tokens)"),
    Metric("tea_output_tokens_total", Agg("sum", "output_tokens"), "counter", "GenAI output tokens (output_tokens)"),
    Metric("tea_cost_total", Agg("sum", "cost"), "counter", "Cost (cost)"),
    Metric("tea_request_bytes_total", Agg("sum", "request_size"), "counter", "Request bytes (request_size)"),
    Metric("tea_response_bytes_total", Agg("sum", "response_size"), "counter", "Response bytes (response_size)"),
    Metric(f"{HISTOGRAM}_sum", Agg("sum", "duration_ms"), "histogram", "Sum of the events' durations in ms"),
    Metric(f"{HISTOGRAM}_count", Agg("count_le", "duration_ms", le=math.inf), "histogram",
           "Events with a duration"),
)
_COUNT = Agg("count")


def go_float(value: float) -> str:
    """A float as Go's strconv.FormatFloat(v, 'g', -1, 64) writes it: the text of a Prometheus ``le``."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0 or math.isnan(value):
        return "0" if value == 0 else "NaN"
    digits = Decimal(repr(value))
    exp = digits.adjusted()
    if -4 <= exp < 6:  # (Go: %e when the exponent is < -4 or >= 6 for the shortest form)
        return np.format_float_positional(value, unique=True, trim="-")
    mantissa = np.format_float_positional(float(digits.scaleb(-exp)), unique=True, trim="-")
    return f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def histogram(bounds_ms: Sequence[float]) -> tuple[Metric, ...]:
    return tuple(Metric(f"{HISTOGRAM}_bucket", Agg("count_le", "duration_ms", le=float(b)), "histogram",
                        "Events whose duration is at most le ms", go_float(float(b)))
                 for b in (*bounds_ms, math.inf))


def catalogue(bounds_ms: Sequence[float] = DURATION_BUCKETS_MS) -> tuple[Metric, ...]:
    return (*COUNTERS, *histogram(bounds_ms))


def _matches(matchers: Sequence[Matcher], label: str, value: str) -> bool:
    return all(m.matches(value) for m in matchers if m.name == label)


@dataclass(frozen=True)
class _Plan:
    metrics: tuple[Metric, ...]
    aggs: tuple[Agg, ...]            # what storage computes: the count (presence) first, then each metric's
    filter: EventFilter
    groups: tuple[str, ...]          # labels grouped on in storage
    matched: tuple[Matcher, ...]     # matchers checked on the groups
    keep: tuple[str, ...]            # labels the answer carries


class EventSource:
    """Selectors over TEA's event metrics, read through one request's tenant-scoped reader."""

    def __init__(self, reader: ScopedStorage, metrics: tuple[Metric, ...]) -> None:
        self.reader = reader
        self.metrics = metrics
        self.names = tuple(dict.fromkeys(m.name for m in metrics))

    def _plan(self, selector: Selector, keep: Keep) -> _Plan | None:
        matchers = selector.matchers
        metrics = tuple(m for m in self.metrics if _matches(matchers, NAME, m.name)
                        and _matches(matchers, "le", m.le or ""))
        if not metrics:
            return None
        fields: dict[str, Any] = {}
        matched: list[Matcher] = []
        for m in matchers:
            if m.name in (NAME, "le"):
                continue
            if m.name not in LABELS:  # a label no event metric has: it matches only what matches ""
                if not m.matches(""):
                    return None
            elif m.op == "=" and m.value and m.name in _FILTERED and m.name not in fields:
                fields[m.name] = m.value
            elif m.op == "=" and m.value and m.name == "tenant_id" and "tenant_ids" not in fields:
                allowed = self.reader.tenants(None)
                if allowed is not None and m.value not in allowed:
                    return None
                fields["tenant_ids"] = (m.value,)
            else:
                matched.append(m)
        wanted = tuple(LABELS) if keep is None else tuple(label for label in LABELS if label in keep)
        groups = tuple(dict.fromkeys([*wanted, *(m.name for m in matched)]))
        aggs = tuple(dict.fromkeys([_COUNT, *(m.agg for m in metrics)]))
        return _Plan(metrics, aggs, EventFilter(**fields), groups, tuple(matched), wanted)

    async def _cells(self, plan: _Plan, f: EventFilter, width_us: int | None,
                     origin_us: int) -> tuple[list[Labels], np.ndarray]:
        """Per group (labels of ``plan.keep``): (aggregates, buckets) of the plan's metrics and the count."""
        n_buckets = 1 if width_us is None else max(1, (f.end_us - origin_us + width_us - 1) // width_us)  # type: ignore[operator]
        keys, blocks = await self._dense(plan, f, width_us, origin_us, n_buckets)
        matched = [(plan.groups.index(m.name), m) for m in plan.matched]
        keep_at = [plan.groups.index(label) for label in plan.keep]
        merged: dict[Labels, np.ndarray] = {}
        for values, block in zip(keys, blocks):
            if not all(m.matches(values[at]) for at, m in matched):
                continue
            labels = tuple((plan.keep[i], values[at]) for i, at in enumerate(keep_at) if values[at] != "")
            merged[labels] = merged[labels] + block if labels in merged else block
        if len(merged) == len(keys):  # (nothing merged or left out: the blocks as they are)
            return list(merged), blocks
        return list(merged), np.stack(list(merged.values())) if merged else np.zeros((0, len(plan.aggs), n_buckets))

    async def _dense(self, plan: _Plan, f: EventFilter, width_us: int | None, origin_us: int,
                     n_buckets: int) -> tuple[list[tuple[str, ...]], np.ndarray]:
        """Storage's cells of the plan: a histogram's bins where the backend counts them, else each aggregate."""
        groups = tuple(LABELS[g] for g in plan.groups)
        read_minutes = getattr(self.reader, "aggregate_minutes", None)
        if read_minutes is not None:  # (the backend's per-minute rollup, where it answers the spec)
            spec = AggregateSpec(f, plan.aggs, None, groups, bucket_us=width_us, origin_us=origin_us)
            found = await read_minutes(spec)
            if found is not None:
                return cells.dense(found, len(groups), len(plan.aggs), n_buckets, width_us, origin_us)
        binned = cells.histogram_of(plan.aggs)
        read_bins = getattr(self.reader, "aggregate_bins", None)
        if binned is not None and read_bins is not None:
            rest = tuple(a for a in plan.aggs if a.fn != "count_le")
            found = await read_bins(AggregateSpec(f, rest, None, groups, bucket_us=width_us, origin_us=origin_us),
                                    *binned)
            return cells.dense_bins(found, len(groups), plan.aggs, binned[1], n_buckets, width_us, origin_us)
        spec = AggregateSpec(f, plan.aggs, None, groups, bucket_us=width_us, origin_us=origin_us)
        found = await cells.columns(self.reader, spec)
        return cells.dense(found, len(groups), len(plan.aggs), n_buckets, width_us, origin_us)

    def _series(self, plan: _Plan, keys: list[Labels], values: np.ndarray, with_name: bool) -> Series:
        out: Series = {}
        for m in plan.metrics:
            at = plan.aggs.index(m.agg)
            for key, row in zip(keys, values[:, at]):
                pairs = dict(key)
                if m.le is not None:
                    pairs["le"] = m.le
                if with_name:
                    pairs[NAME] = m.name
                labels = tuple(sorted(pairs.items()))
                if labels in out:
                    raise PromError("vector cannot contain metrics with the same labelset", "execution", 422)
                out[labels] = row
        return out

    # ------------------------------------------------------------ Source
    async def select(self, selector: Selector, steps: np.ndarray, keep: Keep) -> Series:
        plan = self._plan(selector, keep)
        if plan is None:
            return {}
        at = steps - selector.offset_us
        base_f = replace(plan.filter, end_us=int(at[0]))
        keys, base = await self._cells(plan, base_f, None, 0)
        totals: dict[Labels, np.ndarray] = {k: np.repeat(base[i], len(steps), axis=1) for i, k in enumerate(keys)}
        if len(steps) > 1:
            step = int(steps[1] - steps[0])
            f = replace(plan.filter, start_us=int(at[0]), end_us=int(at[-1]))
            later_keys, later = await self._cells(plan, f, step, int(at[0]))
            for i, key in enumerate(later_keys):
                running = np.concatenate([np.zeros((later.shape[1], 1)), np.cumsum(later[i], axis=1)], axis=1)
                running = running[:, :len(steps)]
                totals[key] = totals[key] + running if key in totals else running
        present = 0  # (the plan's first aggregate: the count of events)
        series_keys = list(totals)
        stacked = np.stack([totals[k] for k in series_keys]) if totals else np.zeros((0, len(plan.aggs), len(steps)))
        alive = stacked[:, present:present + 1, :] > 0
        return self._series(plan, series_keys, np.where(alive, stacked, np.nan), True)

    async def range_fn(self, fn: str, selector: Selector, range_us: int, steps: np.ndarray, keep: Keep) -> Series:
        plan = self._plan(selector, keep)
        if plan is None or range_us <= 0:
            return {}
        ends = steps - selector.offset_us
        if len(steps) == 1:
            f = replace(plan.filter, start_us=int(ends[0]) - range_us, end_us=int(ends[0]))
            keys, cells = await self._cells(plan, f, None, 0)
            windows = cells
        else:
            step = int(steps[1] - steps[0])
            width = math.gcd(step, range_us)
            origin = int(ends[0]) - range_us
            if (int(ends[-1]) - origin) // width > MAX_BUCKETS:
                raise PromError(f"the step ({step / 1e6:g}s) and the range ({range_us / 1e6:g}s) divide the query "
                                f"into more than {MAX_BUCKETS} intervals; use a step that divides the range",
                                "bad_data", 400)
            f = replace(plan.filter, start_us=origin, end_us=int(ends[-1]))
            keys, cells = await self._cells(plan, f, width, origin)
            running = np.zeros(cells.shape[:2] + (cells.shape[2] + 1,))
            np.cumsum(cells, axis=2, out=running[:, :, 1:])
            stride, span = step // width, range_us // width  # (each window: span buckets, one every stride)
            windows = running[:, :, span::stride][:, :, :len(steps)] - running[:, :, ::stride][:, :, :len(steps)]
        if fn == "rate":
            windows = windows / (range_us / 1e6)
        return self._series(plan, keys, windows, False)

    # ------------------------------------------------------------ series and label discovery
    async def series(self, selector: Selector, start_us: int, end_us: int) -> list[Labels]:
        """The label sets (with ``__name__``) of the series ``selector`` matches with events in [start, end)."""
        plan = self._plan(selector, None)
        if plan is None:
            return []
        f = replace(plan.filter, start_us=start_us, end_us=end_us)
        keys, cells = await self._cells(plan, f, None, 0)
        return list(self._series(plan, keys, cells[:, :, 0], True))

    def metadata(self) -> dict[str, list[dict[str, str]]]:
        """What /api/v1/metadata says of each metric family."""
        out: dict[str, list[dict[str, str]]] = {}
        for m in self.metrics:
            family = HISTOGRAM if m.kind == "histogram" else m.name
            if family not in out:
                help_text = "Duration of the events in ms" if m.kind == "histogram" else m.help
                out[family] = [{"type": m.kind, "help": help_text, "unit": "ms" if m.kind == "histogram" else ""}]
        return out
