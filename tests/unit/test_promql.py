"""The PromQL subset: what is refused and how, histogram_quantile against Prometheus's algorithm written
out step by step, vector matching, and the wire forms of numbers."""
from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tea.prom.engine import Engine, Scalar, Vector
from tea.signals.quantile import bucket_quantile
from tea.prom.events import go_float
from tea.prom.plan import Aggregate, Binary, PromError, RangeFn, Selector, parse
from tea.prom.wire import parse_step, parse_time, sample_text, steps_of


def prometheus_bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """promql/quantile.go bucketQuantile (Prometheus 2.x), one step, written out as Go does it."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets, key=lambda b: b[0])
    if not math.isinf(buckets[-1][0]):
        return math.nan
    merged: list[list[float]] = []
    for bound, count in buckets:  # coalesceBuckets
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    for i in range(1, len(merged)):  # ensureMonotonic
        merged[i][1] = max(merged[i][1], merged[i - 1][1])
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * (rank / count if count else math.nan)  # (Go: 0/0 is NaN)


@settings(max_examples=300, deadline=None)
@given(q=st.sampled_from([0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 1.0, -0.5, 1.5]),
       bounds=st.lists(st.sampled_from([-5.0, 0.0, 1.0, 2.5, 5.0, 10.0, 100.0]), min_size=0, max_size=6),
       counts=st.lists(st.integers(0, 50), min_size=7, max_size=7), inf=st.booleans())
def test_bucket_quantile_is_prometheus(q: float, bounds: list[float], counts: list[int], inf: bool) -> None:
    bounds = sorted(bounds) + ([math.inf] if inf else [])
    if not bounds:
        return
    cumulative = [float(c) for c in np.cumsum(counts[:len(bounds)])]
    want = prometheus_bucket_quantile(q, list(zip(bounds, cumulative)))
    got = bucket_quantile(np.array([q]), np.array(bounds), np.array(cumulative).reshape(-1, 1))[0]
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(want, rel=1e-12)


def test_bucket_quantile_over_many_steps_at_once() -> None:
    bounds = np.array([1.0, 10.0, math.inf])
    counts = np.array([[0.0, 5.0, 1.0, 0.0], [0.0, 10.0, 1.0, 0.0], [0.0, 10.0, 4.0, np.nan]])
    got = bucket_quantile(np.full(4, 0.5), bounds, counts)
    assert math.isnan(got[0]) and math.isnan(got[3])  # no observations; a bucket without a value
    assert got[1] == pytest.approx(1.0) and got[2] == pytest.approx(10.0)


@pytest.mark.parametrize("query, message", [
    ("topk(3, tea_requests_total)", "aggregation topk is not supported"),
    ("quantile(0.9, tea_requests_total)", "aggregation quantile is not supported"),
    ("irate(tea_requests_total[5m])", "function irate() is not supported"),
    ("tea_requests_total[5m]", "range selector"),
    ("rate(tea_requests_total[5m:1m])", "rate() takes a range selector"),
    ("tea_requests_total @ 100", "@ modifier"),
    ("tea_requests_total > 5", "operator > is not supported"),
    ("tea_requests_total and tea_errors_total", "operator and is not supported"),
    ("sum by (a) (x) / on (a) group_left (b) y", "group_left"),
    ('"text"', "string literals"),
    ("sum(", "invalid parameter \"query\""),
    ("", "empty query"),
    ('x{a=~"("}', "illegal regex"),
])
def test_unsupported_queries_are_named(query: str, message: str) -> None:
    with pytest.raises(PromError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        parse(query)
    assert info.value.kind == "bad_data" and info.value.status == 400


def test_the_plan_of_the_dashboard_latency_query() -> None:
    node = parse('histogram_quantile(0.95, sum by (le, method) (rate(tea_request_duration_ms_bucket{method!=""}[5m] '
                 "offset 1m)))")
    agg = node.vector  # type: ignore[union-attr]
    assert isinstance(agg, Aggregate) and agg.labels == ("le", "method") and not agg.without
    assert isinstance(agg.expr, RangeFn) and agg.expr.range_us == 300_000_000
    assert agg.expr.selector.offset_us == 60_000_000
    assert [(m.name, m.op, m.value) for m in agg.expr.selector.matchers] == [
        ("__name__", "=", "tea_request_duration_ms_bucket"), ("method", "!=", "")]


class FakeSource:
    """Series given by hand, to check what the engine does above the selectors."""

    def __init__(self, series: dict[str, dict[tuple, list[float]]]) -> None:
        self.series = series
        self.asked: list[object] = []

    async def select(self, selector: Selector, steps, keep):
        self.asked.append(keep)
        name = selector.matchers[0].value
        return {k: np.array(v, dtype=float) for k, v in self.series[name].items()}

    async def range_fn(self, fn, selector, range_us, steps, keep):
        self.asked.append(keep)
        name = selector.matchers[0].value
        return {tuple(p for p in k if p[0] != "__name__"): np.array(v, dtype=float) for k, v in self.series[name].items()}


def run(source: FakeSource, query: str, steps: int = 2):
    return asyncio.run(Engine(source, np.arange(steps, dtype=np.int64)).run(parse(query)))


def test_matching_aggregation_and_the_labels_sums_push_down() -> None:
    a = (("__name__", "a"), ("m", "x"), ("s", "ok"))
    b = (("__name__", "a"), ("m", "y"), ("s", "ok"))
    c = (("__name__", "a"), ("m", "y"), ("s", "err"))
    source = FakeSource({"a": {a: [1, 2], b: [3, math.nan], c: [5, 6]},
                         "e": {(("__name__", "e"), ("m", "x")): [1, 1], (("__name__", "e"), ("m", "y")): [2, 2]}})
    got = run(source, "sum by (m) (rate(a[5m])) / on (m) sum by (m) (rate(e[5m]))")
    assert isinstance(got, Vector)
    assert {k: list(v) for k, v in got.series.items()} == {(("m", "x"),): [1.0, 2.0], (("m", "y"),): [4.0, 3.0]}
    assert source.asked == [frozenset({"m"}), frozenset({"m"})]  # only the labels the sums keep
    source.asked.clear()
    got = run(source, "count without (s) (a)")
    assert {k: list(v) for k, v in got.series.items()} == {(("m", "x"),): [1.0, 1.0], (("m", "y"),): [2.0, 1.0]}
    assert source.asked == [None]
    got = run(source, "max(a) - min(a) * 2")
    assert [list(v) for v in got.series.values()] == [[3.0, 2.0]]  # (5 - 1 * 2, 6 - 2 * 2)
    with pytest.raises(PromError, match="many-to-many"):
        run(source, "a / ignoring (s) e")
    scalar = run(source, "(1 + 2) ^ 2 % 5", steps=1)
    assert isinstance(scalar, Scalar) and list(scalar.values) == [4.0]


def test_wire_forms() -> None:
    assert [go_float(v) for v in (1.0, 2.5, 0.005, 60000.0, 1e6, 1.5e-7, math.inf)] == \
        ["1", "2.5", "0.005", "60000", "1e+06", "1.5e-07", "+Inf"]
    assert [sample_text(v) for v in (0.1, 1e22, 3.0, math.nan, -math.inf, 1e-7)] == \
        ["0.1", "10000000000000000000000", "3", "NaN", "-Inf", "0.0000001"]
    assert parse_time("1767225600.5", "time") == 1_767_225_600_500_000
    assert parse_time("2026-01-01T00:00:00Z", "time") == 1_767_225_600_000_000
    assert parse_step("1m30s") == 90_000_000 and parse_step("15") == 15_000_000
    for bad in ("0", "-1", "abc"):
        with pytest.raises(PromError):
            parse_step(bad)
    with pytest.raises(PromError, match="cannot parse"):
        parse_time("yesterday", "start")
    with pytest.raises(PromError, match="11,000 points"):
        steps_of(0, 11_000 * 1_000_000, 1_000_000)
    assert list(steps_of(0, 30_000_000, 15_000_000)) == [0, 15_000_000, 30_000_000]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=False), max_size=30))
def test_values_written_at_once_read_as_one_at_a_time(values: list[float]) -> None:
    from tea.prom.wire import texts
    written = texts(np.array(values, dtype=float))
    assert written == [sample_text(v) for v in values]
    assert [float(t.replace("Inf", "inf")) for t in written] == values


def test_rate_of_otlp_samples_is_prometheus_extrapolated_rate() -> None:
    from tea.prom.otlp import _window
    t = np.array([15, 30, 45, 60]) * 1_000_000
    s = 1_000_000
    # from zero: no extrapolation below zero at the start, none needed at the end
    assert _window(t, np.array([0.0, 10, 20, 30]), 0, 60 * s, False, "increase") == pytest.approx(30.0)
    # from 10: extrapolated back to the window's start (15 s before the first sample)
    assert _window(t, np.array([10.0, 20, 30, 40]), 0, 60 * s, False, "increase") == pytest.approx(40.0)
    assert _window(t, np.array([10.0, 20, 30, 40]), 0, 60 * s, False, "rate") == pytest.approx(40 / 60)
    # a reset (10 → 2) adds the value before it
    assert _window(t, np.array([5.0, 10, 2, 6]), 14 * s, 60 * s, False, "increase") == pytest.approx(11 * 46 / 45)
    assert math.isnan(_window(t, np.array([1.0, 2, 3, 4]), 50 * s, 60 * s, False, "rate"))  # one sample
    assert _window(t, np.array([1.0, 2, 3, 4]), 20 * s, 60 * s, True, "increase") == 9.0  # deltas add up


def test_division_by_zero_is_infinite_or_nan_as_in_prometheus() -> None:
    source = FakeSource({"a": {(("__name__", "a"),): [0.0, 2.0]}})
    assert list(run(source, "1 / 0", steps=1).values) == [math.inf]
    got = run(source, "a / 0")
    assert math.isnan(got.series[()][0]) and got.series[()][1] == math.inf
