"""``/v1/analytics/…``: the seed Telemetry Processor's tables and its three README queries."""
from __future__ import annotations

import functools
from typing import Annotated, Any, Callable

import msgspec

from tea.http import Request, Response, Route
from tea.http.params import text, whole
from tea.http.response import JSON, encode_json
from tea.http.schemas import error_responses
from tea.query.readers import Readers
from tea.query.spec import Tenant, Window
from tea.storage.projections import FILTERABLE, TABLES
from tea.timeutil import format_us

DAY_US = 86_400_000_000
StatusCode = Annotated[int, msgspec.Meta(ge=0, le=999, description="only rows with this status_code")]


@functools.cache  # (one class per table: its description is cached with it, see params_of)
def table_params(table: str) -> type[Window]:
    """The parameters of ``GET /v1/analytics/{table}``: its filterable columns, a window and a limit."""
    columns = [(c, (StatusCode if c == "status_code" else text(f"only rows with this {c}")) | None,
                None) for c in FILTERABLE[table]]
    limit = ("limit", whole("1 to 10000 (default 100)", 1, 10000), 100)
    return msgspec.defstruct(f"{table.title().replace('_', '')}Params", [*columns, limit], bases=(Window,),
                             kw_only=True, forbid_unknown_fields=True, frozen=True, module=__name__)


def _render(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("timestamp", "created_at", "latest"):
        if isinstance(out.get(key), int):
            out[key] = format_us(out[key])
    return out


def routes(readers: Readers, clock: Callable[[], int]) -> list[Route]:
    def table_handler(table: str):  # type: ignore[no-untyped-def]
        async def handler(request: Request, p: Any) -> Response:
            filters = {c: getattr(p, c) for c in FILTERABLE[table] if getattr(p, c) is not None}
            rows = await readers.of(request).query_rows(
                table, tenant_ids=(p.tenant_id,) if p.tenant_id else None, filters=filters,
                start_us=p.start_time, end_us=p.end_time, limit=p.limit)
            return Response(encode_json({"rows": [_render(r) for r in rows]}), 200, JSON)
        return handler

    def report_handler(report: str):  # type: ignore[no-untyped-def]
        async def handler(request: Request, p: Tenant) -> Response:
            rows = await readers.of(request).projection_report(
                report, tenant_ids=(p.tenant_id,) if p.tenant_id else None, since_us=clock() - DAY_US)
            return Response(encode_json({"rows": [_render(r) for r in rows]}), 200, JSON)
        return handler

    out = [Route("GET", f"/v1/analytics/{table}", table_handler(table),
                 f"The seed's {table} table (from OTLP spans), newest first", tags=("analytics",),
                 query=table_params(table),
                 responses={200: ("Rows", {"application/json": {"type": "object"}}), **error_responses(400, 401, 403)},
                 consistency="derived")
           for table in TABLES]
    for path, report, summary in (("summary", "summary", "Rows per table"),
                                  ("recent-activity", "recent_activity", "User activity of the last 24 h by type"),
                                  ("top-endpoints", "top_endpoints", "The 10 busiest endpoints of the last 24 h")):
        out.append(Route("GET", f"/v1/analytics/{path}", report_handler(report), summary, tags=("analytics",),
                         query=Tenant, responses={200: ("Rows", {"application/json": {"type": "object"}}),
                                                        **error_responses(400, 401, 403)}, consistency="derived"))
    return out
