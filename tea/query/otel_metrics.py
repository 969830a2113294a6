"""``GET /v1/otel/metrics``: time-bucketed series of one OTLP metric (tea.signals.series says how each
aggregate is computed), filtered and grouped by attributes; ``GET /v1/otel/metrics/names``: the metrics
stored in a range, with their kind, unit and series."""
from __future__ import annotations

from typing import Annotated, Callable

import msgspec

from tea import timebuckets
from tea.errors import InvalidParameter
from tea.http import Request, Response, Route
from tea.http.params import choice, text, whole
from tea.http.response import JSON, encode_json
from tea.http.schemas import error_responses
from tea.query.logs import Attributes, attribute_pairs, signals_of
from tea.query.metrics import GRANULARITIES, MAX_BUCKETS, auto_granularity
from tea.query.readers import Readers
from tea.query.spec import Window
from tea.signals import series as s
from tea.signals.model import MetricData, PointQuery
from tea.timeutil import format_us

MAX_POINTS = 1_000_000  # points one answer may read
DEFAULT_AGG = {"gauge": "avg", "sum": "rate", "histogram": "p95", "exponential_histogram": "p95", "summary": "p95"}
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class OtelMetricParams(Window, kw_only=True):
    name: text("the metric's name, as exported (e.g. http.server.request.duration)")  # type: ignore[valid-type]
    agg: choice("sum, avg, min, max, last, count; increase, rate (monotonic sums); p50, p75, p90, p95, p99 "
                "(histograms, summaries); default: avg for a gauge, rate for a sum, p95 otherwise",
                s.AGGS) | None = None  # type: ignore[valid-type]
    granularity: choice("minute, hour, day, week (ISO, Monday), month, or auto (default: from the range)",
                        GRANULARITIES) = "auto"  # type: ignore[valid-type]
    group_by: Annotated[tuple[Key, ...], msgspec.Meta(
        description="comma list of attribute keys (and service); one series per group")] = ()
    attributes: Attributes | None = None  # type: ignore[valid-type]
    service: text("the resource's service.name") | None = None  # type: ignore[valid-type]


class NamesParams(Window):
    pass


class PointsParams(Window, kw_only=True):
    name: text("the metric's name, as exported")  # type: ignore[valid-type]
    attributes: Attributes | None = None  # type: ignore[valid-type]
    service: text("the resource's service.name") | None = None  # type: ignore[valid-type]
    limit: whole("at most this many points, oldest first (default 1000)", 1, 100_000) = 1000  # type: ignore[valid-type]


class PointView(msgspec.Struct):
    id: str
    tenant_id: str
    timestamp: str
    service: str | None
    metric: MetricData
    attributes: msgspec.Raw
    resource: msgspec.Raw
    scope: str | None


class PointsPage(msgspec.Struct):
    points: list[PointView]
    has_more: bool


class OtelPoint(msgspec.Struct):
    timestamp: str
    value: float | None


class OtelSeries(msgspec.Struct):
    group: dict[str, str | None]
    points: list[OtelPoint]


class OtelMetric(msgspec.Struct):
    name: str
    kind: str | None
    unit: str | None
    agg: str
    start_time: str
    end_time: str
    granularity: str
    group_by: list[str]
    series: list[OtelSeries]


class MetricName(msgspec.Struct):
    name: str
    kinds: list[str]
    units: list[str]
    series: int


class MetricNames(msgspec.Struct):
    start_time: str
    end_time: str
    metrics: list[MetricName]


def window(p: Window, now_us: int) -> tuple[int, int]:
    end = p.end_time if p.end_time is not None else now_us
    start = p.start_time if p.start_time is not None else end - timebuckets.DAY_US
    if end <= start:
        raise InvalidParameter("end_time", "`end_time` must be after `start_time`")
    return start, end


def routes(readers: Readers, clock: Callable[[], int]) -> list[Route]:
    async def metric(request: Request, p: OtelMetricParams) -> Response:
        start, end = window(p, clock())
        granularity = auto_granularity(end - start) if p.granularity == "auto" else p.granularity
        if timebuckets.count(start, end, granularity) > MAX_BUCKETS:
            raise InvalidParameter("granularity", f"{granularity} buckets over this range would be more than "
                                   f"{MAX_BUCKETS}; choose a coarser granularity or a shorter range")
        lookback = max(timebuckets.next_start(timebuckets.floor(start, granularity), granularity)
                       - timebuckets.floor(start, granularity), 600_000_000)  # (each series' point before the range)
        q = PointQuery(tenant_ids=(p.tenant_id,) if p.tenant_id else None, names=(p.name,), start_us=start - lookback,
                       end_us=end, service=p.service, attributes=attribute_pairs(p.attributes), limit=MAX_POINTS)
        points = await signals_of(readers, request).points(q)
        if len(points) > MAX_POINTS:
            raise InvalidParameter("start_time", f"the range holds more than {MAX_POINTS} points of {p.name!r}; "
                                   "narrow it (a shorter range, attributes, service)")
        kind = next((pt.data.kind for pt in points if pt.timestamp >= start), None)
        agg = p.agg or DEFAULT_AGG.get(kind or "gauge", "avg")
        try:
            kind_found, rows = s.build(points, agg, granularity, p.group_by, start, end)
        except s.SeriesError as exc:
            raise InvalidParameter("agg", str(exc)) from None
        unit = next((pt.data.unit for pt in points), None)
        body = OtelMetric(p.name, kind_found or None, unit, agg, format_us(start), format_us(end),
                          granularity, list(p.group_by),
                          [OtelSeries(dict(zip(p.group_by, group)), [OtelPoint(format_us(b), v) for b, v in row])
                           for group, row in rows])
        return Response(encode_json(body), 200, JSON)

    async def names(request: Request, p: NamesParams) -> Response:
        start, end = window(p, clock())
        keys = await signals_of(readers, request).series(PointQuery(
            tenant_ids=(p.tenant_id,) if p.tenant_id else None, start_us=start, end_us=end))
        by_name: dict[str, list] = {}
        for key in keys:
            by_name.setdefault(key.name, []).append(key)
        found = [MetricName(name, sorted({k.kind for k in ks}), sorted({k.unit for k in ks}), len(ks))
                 for name, ks in sorted(by_name.items())]
        return Response(encode_json(MetricNames(format_us(start), format_us(end), found)), 200, JSON)

    async def raw_points(request: Request, p: PointsParams) -> Response:
        start, end = window(p, clock())
        found = await signals_of(readers, request).points(PointQuery(
            tenant_ids=(p.tenant_id,) if p.tenant_id else None, names=(p.name,), start_us=start, end_us=end,
            service=p.service, attributes=attribute_pairs(p.attributes), limit=p.limit))
        views = [PointView(pt.id, pt.tenant_id, format_us(pt.timestamp), pt.service, pt.data, pt.attributes,
                           pt.resource, pt.scope) for pt in found[: p.limit]]
        return Response(encode_json(PointsPage(views, len(found) > p.limit)), 200, JSON)

    return [
        Route("GET", "/v1/otel/metrics/points", raw_points, "The stored points of one OTLP metric, oldest first: "
              "every value as received (sums, gauges, histogram buckets, summaries)", tags=("otlp",),
              query=PointsParams,
              responses={200: ("Points", {"application/json": PointsPage}), **error_responses(400, 401, 403)}),
        Route("GET", "/v1/otel/metrics", metric, "Time-bucketed series of one OTLP metric: values, rate/increase "
              "of counters (resets handled), percentiles of histograms; filtered and grouped by attributes",
              tags=("otlp", "analytics"), query=OtelMetricParams,
              responses={200: ("Series, every bucket present", {"application/json": OtelMetric}),
                         **error_responses(400, 401, 403)}),
        Route("GET", "/v1/otel/metrics/names", names, "The OTLP metrics stored in a range: kinds, units, series",
              tags=("otlp", "analytics"), query=NamesParams,
              responses={200: ("Metric names", {"application/json": MetricNames}), **error_responses(400, 401, 403)}),
    ]
