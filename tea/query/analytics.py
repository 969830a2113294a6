"""Analytics routes: ``/v1/metrics``, the seed's ``/metrics`` (beside the Prometheus scrape),
``/v1/stats``, ``/v1/stats/{source}`` and ``/v1/usage``."""
from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

import msgspec

from tea import timebuckets
from tea.errors import BadRequest, NotFound
from tea.http import Param, Request, Response, Route
from tea.http.response import JSON, encode_json
from tea.http.schemas import error_responses
from tea.auth.principal import READ
from tea.ops.telemetry import CONTENT_TYPE
from tea.query import metrics as m
from tea.query.spec import FILTER_FIELDS, FILTER_PARAMS, check_params, event_filter, time_param, text_param
from tea.timeutil import format_us
from tea.types import Agg, AggregateSpec, EventFilter

if TYPE_CHECKING:
    from tea.app import TeaApp


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


class UsageRow(msgspec.Struct):
    tenant_id: str
    period: str
    period_start: str
    events: int
    errors: int
    requests_by_method: dict[str, int]
    data_mb_in: float
    data_mb_out: float
    tokens: int
    cost: float
    unique_users: int


class Usage(msgspec.Struct):
    period: str
    start_time: str
    end_time: str
    rows: list[UsageRow]


USAGE_COLUMNS = tuple(UsageRow.__struct_fields__)
_TEA_METRICS = ("requests", "error_rate", "avg_latency_ms", "data_mb")
_USAGE_AGGS = (Agg("count"), Agg("errors"), Agg("sum", "request_size"), Agg("sum", "response_size"),
               Agg("sum", "tokens_used"), Agg("sum", "cost"), Agg("count_distinct", "user_id"))


def routes(app: "TeaApp") -> list[Route]:
    telemetry = app.telemetry

    async def run_metrics(request: Request, query: m.MetricsQuery) -> list[Series]:
        spec, inputs = m.aggregate_spec(query)
        rows = await app.reader(request).aggregate(spec)
        return [Series(s["group"], s["points"]) for s in m.build_series(query, rows, inputs)]

    async def metrics(request: Request) -> Response:
        check_params(request, m.METRIC_PARAMS)
        query = m.parse(request, app.clock())
        series = await run_metrics(request, query)
        body = MetricsResponse(format_us(query.start_us), format_us(query.end_us), query.granularity,
                               list(query.metrics), list(query.group_by), series)
        return Response(encode_json(body), 200, JSON)

    async def tea_metrics(request: Request) -> Response:
        check_params(request, {*FILTER_FIELDS, "start_time", "end_time", "granularity", "metric_type"})
        text_param(request, "metric_type")  # the seed's metric_type only chooses a chart; every field is sent
        query = m.parse(request, app.clock(), default_granularity="hour")
        query = m.MetricsQuery(query.filter, _TEA_METRICS, query.granularity, (), 1)
        [series] = await run_metrics(request, query)
        points = [TeaMetricPoint(p["timestamp"], p["requests"], float(p["error_rate"]), float(p["avg_latency_ms"] or 0),
                                 float(p["data_mb"])) for p in series.points]
        return Response(encode_json(TeaMetrics(points, query.granularity)), 200, JSON)

    async def metrics_or_scrape(request: Request) -> Response:
        if not request.scope.get("query_string") and "json" not in (request.header("accept") or ""):
            return Response(telemetry.exposition(), 200, CONTENT_TYPE.encode())
        await app.admit(request, READ)  # the seed's aggregate is tenant data: it needs a credential
        return await tea_metrics(request)

    async def stats(request: Request) -> Response:
        check_params(request, {*FILTER_FIELDS, "start_time", "end_time"})
        spec = AggregateSpec(event_filter(request), (Agg("count"),), None, ("source", "event_type"))
        rows = await app.reader(request).aggregate(spec)
        types: dict[str, int] = {}
        for _, _source, event_type, n in rows:
            types[event_type] = types.get(event_type, 0) + n
        sources = {source for _, source, _, _ in rows if source is not None}
        body = Stats(len(sources), sum(types.values()), dict(sorted(types.items())))
        return Response(encode_json(body), 200, JSON)

    async def source_stats(request: Request) -> Response:
        check_params(request, {"tenant_id", "start_time", "end_time"})
        source = request.path_params["source"]
        base = event_filter(request)
        spec = AggregateSpec(EventFilter(tenant_ids=base.tenant_ids, source=source, start_us=base.start_us,
                                         end_us=base.end_us),
                             (Agg("count"), Agg("min", "timestamp"), Agg("max", "timestamp")), None, ("event_type",))
        rows = await app.reader(request).aggregate(spec)
        if not rows:
            raise NotFound(f"no events from source {source!r}", code="source_not_found", details={"source": source})
        body = SourceStats(source, sum(r[2] for r in rows), format_us(min(r[3] for r in rows)),
                           format_us(max(r[4] for r in rows)), {r[1]: r[2] for r in sorted(rows, key=lambda r: r[1])})
        return Response(encode_json(body), 200, JSON)

    async def usage(request: Request) -> Response:
        check_params(request, {"tenant_id", "period", "start_time", "end_time", "format"})
        period = request.param("period") or "month"
        fmt = request.param("format") or "json"
        if period not in ("day", "month"):
            raise BadRequest("parameter `period` must be day or month", code="invalid_parameter",
                             details={"parameter": "period"})
        if fmt not in ("json", "csv"):
            raise BadRequest("parameter `format` must be json or csv", code="invalid_parameter",
                             details={"parameter": "format"})
        now = app.clock()
        end = time_param(request, "end_time") or now
        start = time_param(request, "start_time") or timebuckets.floor(end - 1, period)
        if end <= start:
            raise BadRequest("`end_time` must be after `start_time`", code="invalid_parameter",
                             details={"parameter": "end_time"})
        tenant = text_param(request, "tenant_id")
        f = EventFilter(tenant_ids=(tenant,) if tenant else None, start_us=start, end_us=end)
        totals = await app.reader(request).aggregate(AggregateSpec(f, _USAGE_AGGS, period, ("tenant_id",)))
        by_method = await app.reader(request).aggregate(AggregateSpec(f, (Agg("count"),), period, ("tenant_id", "method")))
        methods: dict[tuple[int, str], dict[str, int]] = {}
        for bucket, tenant_id, method, n in sorted(by_method, key=lambda r: (r[0], r[1], r[2] or "")):
            if method is not None:
                methods.setdefault((bucket, tenant_id), {})[method] = n
        rows = [UsageRow(t, period, format_us(b), n, e, methods.get((b, t), {}), (req or 0) / 1e6,
                         (resp or 0) / 1e6, tokens or 0, cost or 0.0, users)
                for b, t, n, e, req, resp, tokens, cost, users in sorted(totals, key=lambda r: (r[1], r[0]))]
        if fmt == "csv":
            return Response(_usage_csv(rows), 200, b"text/csv; charset=utf-8",
                            {"content-disposition": f'attachment; filename="tea-usage-{period}.csv"'})
        return Response(encode_json(Usage(period, format_us(start), format_us(end), rows)), 200, JSON)

    filters = FILTER_PARAMS
    tea_params = (Param("tenant_id", "the tenant"), Param("metric_type", "requests, errors, latency, … (informative)"),
                  Param("granularity", "hour (default), day, week, minute, month"),
                  Param("start_time", "default: 24 h before end_time"), Param("end_time", "default: now"))
    return [
        Route("GET", "/v1/metrics", metrics, "Time series of request, error, latency (with percentiles), data, "
              "token, cost and user metrics, optionally one series per group", tags=("analytics",),
              params=filters + m.PARAMS,
              responses={200: ("Series, every bucket present", {"application/json": MetricsResponse}),
                         **error_responses(400)}),
        Route("GET", "/metrics", metrics_or_scrape,
              "TEA compatibility metrics (with query parameters or Accept: application/json); "
              "otherwise TEA's own Prometheus metrics", tags=("analytics", "operations"), params=tea_params,
              responses={200: ("TEA metrics (JSON) or the Prometheus exposition (text)",
                               {"application/json": TeaMetrics, "text/plain": {"type": "string"}}),
                         **error_responses(400)}, scope=None),
        Route("GET", "/tea/metrics", tea_metrics, "TEA compatibility metrics (the seed's /tea/ route)",
              tags=("analytics",), params=tea_params,
              responses={200: ("TEA metrics", {"application/json": TeaMetrics}), **error_responses(400)}),
        Route("GET", "/v1/stats", stats, "How many sources and events, events per type", tags=("analytics",),
              params=filters, responses={200: ("Stats", {"application/json": Stats}), **error_responses(400)}),
        Route("GET", "/v1/stats/{source}", source_stats, "One source: event count, first and last event, types",
              tags=("analytics",), params=(Param("source", "the source", location="path", required=True),
                                           *[p for p in filters if p.name in ("tenant_id", "start_time", "end_time")]),
              responses={200: ("Source stats", {"application/json": SourceStats}), **error_responses(400, 404)}),
        Route("GET", "/v1/usage", usage, "Usage and billing per tenant and day or month (JSON or CSV)",
              tags=("analytics",),
              params=(Param("tenant_id", "one tenant (default: every tenant)"),
                      Param("period", "day or month (default month)", {"type": "string", "enum": ["day", "month"]}),
                      Param("start_time", "default: start of the current period"),
                      Param("end_time", "default: now"),
                      Param("format", "json (default) or csv", {"type": "string", "enum": ["json", "csv"]})),
              responses={200: ("Usage rows", {"application/json": Usage, "text/csv": {"type": "string"}}),
                         **error_responses(400)}),
    ]


def _usage_csv(rows: list[UsageRow]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(USAGE_COLUMNS)
    for row in rows:
        writer.writerow([msgspec.json.encode(v).decode() if isinstance(v, dict) else v
                         for v in (getattr(row, c) for c in USAGE_COLUMNS)])
    return out.getvalue().encode()
