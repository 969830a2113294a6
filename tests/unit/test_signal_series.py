"""The OTLP metric series arithmetic: counters' increase across resets and restarts, delta sums, gauges'
values per bucket, percentiles from explicit and exponential histograms, the kinds' refusals."""
from __future__ import annotations

import math

import msgspec
import pytest

from tea.signals.model import MetricData, MetricPoint
from tea.signals.series import SeriesError, build, explicit_buckets

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
MIN = 60_000_000


def pt(minute: float, data: MetricData, attrs: bytes = b'{"q":"a"}', ident: str = "") -> MetricPoint:
    ts = T0 + int(minute * MIN)
    return MetricPoint("t", ident or f"{ts}{attrs!r}", ts, "svc", data, msgspec.Raw(attrs))


def counter(value: float, start_minute: float = -10.0, **kw) -> MetricData:  # type: ignore[no-untyped-def]
    return MetricData("c", "sum", temporality="cumulative", monotonic=True, start_us=T0 + int(start_minute * MIN),
                      value=value, **kw)


def values(points, agg, group_by=(), minutes=3):  # type: ignore[no-untyped-def]
    _, rows = build(points, agg, "minute", group_by, T0, T0 + minutes * MIN)
    return {group: [v for _, v in row] for group, row in rows}


def test_increase_and_rate_of_a_counter_across_a_reset_and_a_restart() -> None:
    points = [pt(-0.5, counter(100)), pt(0.2, counter(110)), pt(0.7, counter(130)),
              pt(1.2, counter(5)),                              # reset: fell below 130 → 5 new
              pt(1.8, counter(7, start_minute=1.5)),            # restart (new start time) → 7 new
              pt(2.5, counter(9, start_minute=1.5))]
    assert values(points, "increase") == {(): [30.0, 12.0, 2.0]}
    assert values(points, "rate") == {(): [0.5, 0.2, 2 / 60]}


def test_a_series_first_point_counts_only_when_its_counter_began_inside_the_range() -> None:
    old = [pt(0.5, counter(1000)), pt(1.5, counter(1010))]
    new = [pt(0.5, counter(4, start_minute=0.1), b'{"q":"b"}'), pt(1.5, counter(6, start_minute=0.1), b'{"q":"b"}')]
    assert values(old + new, "increase", ("q",)) == {("a",): [0.0, 10.0, 0.0], ("b",): [4.0, 2.0, 0.0]}


def test_delta_sums_add_up_and_gauges_aggregate_per_bucket() -> None:
    delta = [pt(m, MetricData("d", "sum", temporality="delta", monotonic=True, value=v))
             for m, v in ((0.1, 2), (0.9, 3), (2.2, 4))]
    assert values(delta, "increase") == {(): [5.0, 0.0, 4.0]}
    gauge = [pt(0.1, MetricData("g", "gauge", value=1.0)), pt(0.6, MetricData("g", "gauge", value=5.0)),
             pt(0.4, MetricData("g", "gauge", value=10.0), b'{"q":"b"}'), pt(1.5, MetricData("g", "gauge", value=math.nan))]
    assert values(gauge, "avg") == {(): [16 / 3, None, None]}
    assert values(gauge, "last") == {(): [15.0, None, None]}  # each series' last value, added up
    assert values(gauge, "min") == {(): [1.0, None, None]} and values(gauge, "count") == {(): [3.0, 1.0, 0.0]}
    assert values(gauge, "max", ("q",)) == {("a",): [5.0, None, None], ("b",): [10.0, None, None]}


def hist(minute: float, counts: list[int], total: float, start: float = -1.0, temporality: str = "cumulative"):  # type: ignore[no-untyped-def]
    return pt(minute, MetricData("h", "histogram", temporality=temporality, start_us=T0 + int(start * MIN),
                                 count=sum(counts), sum=total, bounds=[10.0, 100.0], counts=counts))


def test_histogram_percentiles_come_from_the_increase_of_each_bucket() -> None:
    points = [hist(-0.5, [5, 0, 0], 10.0), hist(0.5, [5, 10, 0], 510.0), hist(1.5, [6, 10, 4], 1100.0),
              hist(2.5, [1, 0, 0], 2.0)]  # reset: the counts fell
    assert values(points, "count") == {(): [10.0, 5.0, 1.0]}
    assert values(points, "sum") == {(): [500.0, 590.0, 2.0]}
    p50 = values(points, "p50")[()]
    assert p50[0] == pytest.approx(10 + 90 * 0.5)           # 10 observations in (10, 100]: rank 5 halfway
    assert p50[1] == pytest.approx(100.0)                    # rank 2.5 of 5 lands in +Inf: the highest bound
    assert p50[2] == pytest.approx(5.0)                      # one in (0, 10]
    deltas = [hist(0.2, [1, 1, 0], 50, temporality="delta"), hist(0.8, [0, 2, 0], 80, temporality="delta")]
    assert values(deltas, "p95")[()][0] == pytest.approx(10 + 90 * (3.8 - 1) / 3)


def test_exponential_histograms_become_explicit_bounds() -> None:
    data = MetricData("e", "exponential_histogram", temporality="delta", count=6, sum=20.0, scale=0, zero_count=1,
                      positive_offset=1, positive_counts=[2, 3], negative_offset=0, negative_counts=[])
    assert explicit_buckets(pt(0, data)) == {0.0: 1.0, 4.0: 2.0, 8.0: 3.0}  # (2, 4] and (4, 8] at scale 0
    assert values([pt(0.5, data)], "p50")[()][0] == pytest.approx(4.0)  # rank 3: the top of (0, 4]
    assert values([pt(0.5, data)], "p99")[()][0] == pytest.approx(4 + 4 * (5.94 - 3) / 3)


def test_what_a_kind_cannot_answer_is_refused() -> None:
    gauge = [pt(0.5, MetricData("g", "gauge", value=1.0))]
    with pytest.raises(SeriesError, match="agg 'rate' does not apply to a gauge"):
        values(gauge, "rate")
    updown = [pt(0.5, MetricData("u", "sum", temporality="cumulative", monotonic=False, value=1.0))]
    with pytest.raises(SeriesError, match="monotonic"):
        values(updown, "increase")
    mixed = gauge + [pt(0.6, counter(1))]
    with pytest.raises(SeriesError, match="several kinds"):
        values(mixed, "sum")
    summary = [pt(0.5, MetricData("s", "summary", count=2, sum=3.0, quantiles=[(0.5, 1.0)]))]
    assert values(summary, "p50") == {(): [1.0, None, None]}
    with pytest.raises(SeriesError, match="no 0.99 quantile"):
        values(summary, "p99")
