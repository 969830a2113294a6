"""``/v1/analytics/…``: the seed Telemetry Processor's tables and its three README queries."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tea.http import Param, Request, Response, Route
from tea.http.response import JSON, encode_json
from tea.http.schemas import error_responses
from tea.query.scope import request_filter
from tea.query.spec import check_params, int_param, text_param, time_param
from tea.storage.projections import FILTERABLE, TABLES
from tea.timeutil import format_us

if TYPE_CHECKING:
    from tea.app import TeaApp

DAY_US = 86_400_000_000


def _render(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("timestamp", "created_at", "latest"):
        if isinstance(out.get(key), int):
            out[key] = format_us(out[key])
    return out


def routes(app: "TeaApp") -> list[Route]:
    def tenants(request: Request) -> tuple[str, ...] | None:
        return request_filter(request).tenant_ids

    def table_handler(table: str):  # type: ignore[no-untyped-def]
        async def handler(request: Request) -> Response:
            check_params(request, {*FILTERABLE[table], "tenant_id", "start_time", "end_time", "limit"})
            filters: dict[str, Any] = {}
            for column in FILTERABLE[table]:
                value = text_param(request, column)
                if value is not None:
                    filters[column] = int(value) if column == "status_code" and value.isdigit() else value
            rows = await app.reader(request).query_rows(table, tenant_ids=tenants(request), filters=filters,
                                                        start_us=time_param(request, "start_time"),
                                                        end_us=time_param(request, "end_time"),
                                                        limit=int_param(request, "limit", 100, 1, 10000))
            return Response(encode_json({"rows": [_render(r) for r in rows]}), 200, JSON)
        return handler

    def report_handler(report: str):  # type: ignore[no-untyped-def]
        async def handler(request: Request) -> Response:
            check_params(request, {"tenant_id"})
            rows = await app.reader(request).projection_report(report, tenant_ids=tenants(request),
                                                               since_us=app.clock() - DAY_US)
            return Response(encode_json({"rows": [_render(r) for r in rows]}), 200, JSON)
        return handler

    out = [Route("GET", f"/v1/analytics/{table}", table_handler(table),
                 f"The seed's {table} table (from OTLP spans), newest first", tags=("analytics",),
                 params=tuple(Param(c, f"only rows with this {c}") for c in FILTERABLE[table]) + (
                     Param("tenant_id", "admins: one tenant"), Param("start_time", "from"), Param("end_time", "until"),
                     Param("limit", "1 to 10000 (default 100)")),
                 responses={200: ("Rows", {"application/json": {"type": "object"}}), **error_responses(400, 401, 403)})
           for table in TABLES]
    for path, report, summary in (("summary", "summary", "Rows per table"),
                                  ("recent-activity", "recent_activity", "User activity of the last 24 h by type"),
                                  ("top-endpoints", "top_endpoints", "The 10 busiest endpoints of the last 24 h")):
        out.append(Route("GET", f"/v1/analytics/{path}", report_handler(report), summary, tags=("analytics",),
                         responses={200: ("Rows", {"application/json": {"type": "object"}}),
                                    **error_responses(401, 403)}))
    return out

