"""``GET /v1/usage`` (and ``tea usage``): per tenant and day or month, each signal counted on its own —
events, spans, metric points, log records — and the sum of those ``usage.billable`` names, beside
errors, methods, data, tokens, cost and users (of the events and spans)."""
from __future__ import annotations

import csv
import io
from typing import Callable

import msgspec

from tea import timebuckets
from tea.errors import InvalidParameter
from tea.http import Request, Response, Route
from tea.http.params import choice
from tea.http.response import JSON, encode_json
from tea.http.schemas import error_responses
from tea.query.readers import Readers
from tea.query.scope import ScopedStorage, tenant_filter
from tea.query.spec import Window
from tea.settings import Settings
from tea.timeutil import format_us
from tea.types import Agg, AggregateSpec, EventFilter


class UsageRow(msgspec.Struct):
    tenant_id: str
    period: str
    period_start: str
    events: int                     # events that are not spans, metric points or log records
    errors: int
    requests_by_method: dict[str, int]
    data_mb_in: float
    data_mb_out: float
    tokens: int
    cost: float
    unique_users: int
    spans: int = 0
    metric_points: int = 0
    log_records: int = 0
    billable: int = 0               # the sum of the signals usage.billable names
    input_tokens: int = 0
    output_tokens: int = 0


class Usage(msgspec.Struct):
    period: str
    start_time: str
    end_time: str
    billable_signals: list[str]
    rows: list[UsageRow]


class UsageParams(Window):
    period: choice("day or month (default month)", ("day", "month")) = "month"  # type: ignore[valid-type]
    format: choice("json (default) or csv", ("json", "csv")) = "json"  # type: ignore[valid-type]


USAGE_COLUMNS = tuple(UsageRow.__struct_fields__)
_TOTALS = (Agg("errors"), Agg("sum", "request_size"), Agg("sum", "response_size"), Agg("sum", "tokens_used"),
           Agg("sum", "cost"), Agg("count_distinct", "user_id"), Agg("sum", "input_tokens"), Agg("sum", "output_tokens"))
# events of these types are counted as those signals (metric points and log records an older TEA kept as events)
_SIGNAL_OF_TYPE = {"span": "spans", "metric": "metric_points", "log": "log_records"}
Key = tuple[int, str]


async def signal_counts(reader: ScopedStorage, f: EventFilter,
                        period: str) -> tuple[dict[Key, dict[str, int]], dict[Key, dict[str, int]]]:
    """(period start, tenant) -> signal -> count, and -> method -> requests: one scan grouped by event type
    and method answers both (the pairs are few; a second scan per method cost as much as the first)."""
    counts: dict[Key, dict[str, int]] = {}
    methods: dict[Key, dict[str, int]] = {}
    rows = await reader.aggregate(AggregateSpec(f, (Agg("count"),), period, ("tenant_id", "event_type", "method")))
    for bucket, tenant, event_type, method, n in rows:
        cell = counts.setdefault((bucket, tenant), {})
        signal = _SIGNAL_OF_TYPE.get(event_type, "events")
        cell[signal] = cell.get(signal, 0) + n
        if method is not None:
            by_method = methods.setdefault((bucket, tenant), {})
            by_method[method] = by_method.get(method, 0) + n
    methods = {key: dict(sorted(by_method.items())) for key, by_method in methods.items()}
    if reader.signals is not None:
        for bucket, tenant, signal, n in await reader.signals.counts(f.tenant_ids, f.start_us, f.end_us,  # type: ignore[arg-type]
                                                                     period):
            cell = counts.setdefault((bucket, tenant), {})
            cell[signal] = cell.get(signal, 0) + n
    return counts, methods


def routes(readers: Readers, settings: Settings, clock: Callable[[], int]) -> list[Route]:
    billable = settings.usage.billable

    async def usage(request: Request, p: UsageParams) -> Response:
        end = p.end_time if p.end_time is not None else clock()
        start = p.start_time if p.start_time is not None else timebuckets.floor(end - 1, p.period)
        if end <= start:
            raise InvalidParameter("end_time", "`end_time` must be after `start_time`")
        f = tenant_filter(p.tenant_id, start_us=start, end_us=end)
        reader = readers.of(request)
        counts, methods = await signal_counts(reader, reader.scope(f), p.period)
        totals = {(r[0], r[1]): r[2:] for r in await reader.aggregate(AggregateSpec(f, _TOTALS, p.period,
                                                                                     ("tenant_id",)))}
        rows = []
        for key in sorted(counts, key=lambda k: (k[1], k[0])):
            cell = counts[key]
            e, req, resp, tokens, cost, users, inp, out = totals.get(key, (0, 0, 0, 0, 0.0, 0, 0, 0))
            rows.append(UsageRow(key[1], p.period, format_us(key[0]), cell.get("events", 0), e or 0,
                                 methods.get(key, {}), (req or 0) / 1e6, (resp or 0) / 1e6, tokens or 0, cost or 0.0,
                                 users or 0, cell.get("spans", 0), cell.get("metric_points", 0),
                                 cell.get("log_records", 0), sum(cell.get(s, 0) for s in billable), inp or 0,
                                 out or 0))
        if p.format == "csv":
            return Response(_usage_csv(rows), 200, b"text/csv; charset=utf-8",
                            {"content-disposition": f'attachment; filename="tea-usage-{p.period}.csv"'})
        body = Usage(p.period, format_us(start), format_us(end), list(billable), rows)
        return Response(encode_json(body), 200, JSON)

    return [Route("GET", "/v1/usage", usage, "Usage and billing per tenant and day or month: events, spans, metric "
                  "points and log records counted apart, the billable sum, tokens and cost (JSON or CSV)",
                  tags=("analytics",), query=UsageParams,
                  responses={200: ("Usage rows", {"application/json": Usage, "text/csv": {"type": "string"}}),
                             **error_responses(400)})]


def _usage_csv(rows: list[UsageRow]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(USAGE_COLUMNS)
    for row in rows:
        writer.writerow([msgspec.json.encode(v).decode() if isinstance(v, dict) else v
                         for v in (getattr(row, c) for c in USAGE_COLUMNS)])
    return out.getvalue().encode()
