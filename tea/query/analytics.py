"""Analytics routes: ``/v1/metrics``, the seed's ``/metrics`` (beside the Prometheus scrape),
``/v1/stats`` and ``/v1/stats/{source}`` (``/v1/usage``: tea.query.usage)."""
from __future__ import annotations

from typing import Any, Callable

import msgspec

from tea.auth.gate import Gate
from tea.auth.principal import READ
from tea.errors import NotFound
from tea.http import Request, Response, Route
from tea.http.params import choice, choices, parse, text, whole
from tea.http.response import JSON, encode_json
from tea.http.router import params_of
from tea.http.schemas import error_responses
from tea.query import metrics as m
from tea.query.readers import Readers
from tea.query.spec import Filters, Window, event_filter
from tea.telemetry import CONTENT_TYPE, Telemetry
from tea.timeutil import format_us
from tea.types import Agg, AggregateSpec


class Series(msgspec.Struct):
    group: dict[str, str | None]
    points: list[dict[str, Any]]


class MetricsResponse(msgspec.Struct):
    start_time: str
    end_time: str
    granularity: str
    metrics: list[str]
    group_by: list[str]
    series: list[Series]


class TeaMetricPoint(msgspec.Struct):
    timestamp: str
    total_requests: int
    error_rate: float
    avg_latency_ms: float
    total_data_mb: float


class TeaMetrics(msgspec.Struct):
    metrics: list[TeaMetricPoint]
    granularity: str


class Stats(msgspec.Struct):
    sources_count: int
    events_count: int
    event_types: dict[str, int]


class SourceStats(msgspec.Struct):
    source: str
    total_events: int
    first_event: str
    last_event: str
    event_types: dict[str, int]


class MetricsParams(Filters):
    metrics: choices("comma list of: " + ", ".join(m.METRICS) + f" (default {','.join(m.DEFAULT_METRICS)})",
                     tuple(m.METRICS)) = m.DEFAULT_METRICS  # type: ignore[valid-type]
    granularity: choice("minute, hour, day, week (ISO, Monday), month, or auto (default: from the range)",
                        m.GRANULARITIES) = "auto"  # type: ignore[valid-type]
    group_by: choices("comma list of: " + ", ".join(m.GROUP_BY) + "; one series per group",
                      m.GROUP_BY) = ()  # type: ignore[valid-type]
    limit: whole("with group_by: keep the top N groups by order_by (default 10, max 1000)",  # type: ignore[valid-type]
                 1, 1000) = 10
    order_by: choice("with group_by: the metric groups are ranked by over the whole range, largest first "
                     "(metrics that add up over buckets, or their min/max; default requests)",
                     tuple(m.RANKABLE)) = "requests"  # type: ignore[valid-type]


class SeedMetricsParams(Filters):
    metric_type: text("requests, errors, latency, … (informative)") | None = None  # type: ignore[valid-type]
    granularity: choice("hour (default), day, week, minute, month",  # type: ignore[valid-type]
                        m.GRANULARITIES) = "hour"


class SourceParams(Window, kw_only=True):
    PATH = frozenset({"source"})
    source: text("the source")  # type: ignore[valid-type]


_TEA_METRICS = ("requests", "error_rate", "avg_latency_ms", "data_mb")



def routes(readers: Readers, gate: Gate, telemetry: Telemetry, clock: Callable[[], int]) -> list[Route]:
    async def run_metrics(request: Request, query: m.MetricsQuery) -> list[Series]:
        spec, inputs = m.aggregate_spec(query)
        rows = await readers.of(request).aggregate(spec)
        return [Series(s["group"], s["points"]) for s in m.build_series(query, rows, inputs)]

    async def metrics(request: Request, p: MetricsParams) -> Response:
        query = m.metrics_query(event_filter(p), clock(), p.metrics, p.granularity, p.group_by, p.limit, p.order_by)
        series = await run_metrics(request, query)
        body = MetricsResponse(format_us(query.start_us), format_us(query.end_us), query.granularity,
                               list(query.metrics), list(query.group_by), series)
        return Response(encode_json(body), 200, JSON)

    async def seed_metrics(request: Request, p: SeedMetricsParams) -> Response:
        query = m.metrics_query(event_filter(p), clock(), _TEA_METRICS, p.granularity, (), 1)
        [series] = await run_metrics(request, query)
        points = [TeaMetricPoint(p["timestamp"], p["requests"], float(p["error_rate"]), float(p["avg_latency_ms"] or 0),
                                 float(p["data_mb"])) for p in series.points]
        return Response(encode_json(TeaMetrics(points, query.granularity)), 200, JSON)

    async def metrics_or_scrape(request: Request) -> Response:
        if not request.scope.get("query_string") and "json" not in (request.header("accept") or ""):
            return Response(telemetry.exposition(), 200, CONTENT_TYPE.encode())
        await gate.admit(request, READ)  # the seed's aggregate is tenant data: it needs a credential
        return await seed_metrics(request, parse(SeedMetricsParams, request.query, request.path_params))

    async def stats(request: Request, p: Filters) -> Response:
        spec = AggregateSpec(event_filter(p), (Agg("count"),), None, ("source", "event_type"))
        rows = await readers.of(request).aggregate(spec)
        types: dict[str, int] = {}
        for _, _source, event_type, n in rows:
            types[event_type] = types.get(event_type, 0) + n
        sources = {source for _, source, _, _ in rows if source is not None}
        body = Stats(len(sources), sum(types.values()), dict(sorted(types.items())))
        return Response(encode_json(body), 200, JSON)

    async def source_stats(request: Request, p: SourceParams) -> Response:
        spec = AggregateSpec(event_filter(p, source=p.source),
                             (Agg("count"), Agg("min", "timestamp"), Agg("max", "timestamp")), None, ("event_type",))
        rows = await readers.of(request).aggregate(spec)
        if not rows:
            raise NotFound(f"no events from source {p.source!r}", code="source_not_found",
                           details={"source": p.source})
        body = SourceStats(p.source, sum(r[2] for r in rows), format_us(min(r[3] for r in rows)),
                           format_us(max(r[4] for r in rows)), {r[1]: r[2] for r in sorted(rows, key=lambda r: r[1])})
        return Response(encode_json(body), 200, JSON)

    seed = {200: ("TEA metrics", {"application/json": TeaMetrics}), **error_responses(400)}
    return [
        Route("GET", "/v1/metrics", metrics, "Time series of request, error, latency (with percentiles), data, "
              "token, cost and user metrics, optionally one series per group", tags=("analytics",),
              query=MetricsParams,
              responses={200: ("Series, every bucket present", {"application/json": MetricsResponse}),
                         **error_responses(400)}),
        Route("GET", "/metrics", metrics_or_scrape,
              "TEA compatibility metrics (with query parameters or Accept: application/json); "
              "otherwise TEA's own Prometheus metrics", tags=("analytics", "operations"),
              params=params_of(SeedMetricsParams),
              responses={200: ("TEA metrics (JSON) or the Prometheus exposition (text)",
                               {"application/json": TeaMetrics, "text/plain": {"type": "string"}}),
                         # (the JSON aggregate admits the caller itself: the exposition needs no credential)
                         **error_responses(400, 401, 403, 429, 503)}, scope=None),
        Route("GET", "/tea/metrics", seed_metrics, "TEA compatibility metrics (the seed's /tea/ route)",
              tags=("analytics",), query=SeedMetricsParams, responses=seed),
        Route("GET", "/v1/stats", stats, "How many sources and events, events per type", tags=("analytics",),
              query=Filters, responses={200: ("Stats", {"application/json": Stats}), **error_responses(400)}),
        Route("GET", "/v1/stats/{source}", source_stats, "One source: event count, first and last event, types",
              tags=("analytics",), query=SourceParams,
              responses={200: ("Source stats", {"application/json": SourceStats}), **error_responses(400, 404)}),
    ]

