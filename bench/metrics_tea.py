"""TEA's own pieces of the metrics request, run in this process to split its HTTP time.

``tea_sql`` is the SQL TEA sends DuckDB for ``metrics_query.PATH``; ``shaping`` is what TEA does
with the rows before the bytes go out (zero-filled series, JSON encoding). Both import TEA's
modules; others edit tea/ meanwhile, so a failure here is reported and the benchmark goes on.
"""
from __future__ import annotations

from typing import Any, Callable

from bench.dataset import DAY_START_US, DAY_US

TENANT = "tenant-3"
METRICS = ("requests", "avg_latency_ms", "p95_latency_ms")
GROUPS = 20


def _query() -> Any:
    from tea.query import metrics as m
    from tea.types import EventFilter
    window = EventFilter(tenant_ids=(TENANT,), start_us=DAY_START_US, end_us=DAY_START_US + DAY_US)
    return m.MetricsQuery(window, METRICS, "hour", ("method",), GROUPS)


def tea_sql() -> tuple[str, list[Any]] | None:
    """The SQL and parameters TEA runs for the benchmark's request."""
    try:
        from tea.query import metrics as m
        from tea.storage.duckdb.sql import DIALECT
        from tea.storage.sql.events import aggregate
        spec, _ = m.aggregate_spec(_query())
        return aggregate(spec, DIALECT)
    except Exception as exc:  # noqa: BLE001
        print(f"  (TEA's own SQL not available: {exc!r})")
        return None


def shaping(rows: list[tuple]) -> Callable[[], bytes] | None:
    """A call doing what TEA's /v1/metrics handler does with the storage rows: series, then JSON."""
    try:
        from tea.http.response import encode_json
        from tea.query import metrics as m
        from tea.query.analytics import MetricsResponse, Series
        from tea.timeutil import format_us
        query = _query()
        _, inputs = m.aggregate_spec(query)
    except Exception as exc:  # noqa: BLE001
        print(f"  (TEA's response shaping not timed: {exc!r})")
        return None

    def call() -> bytes:
        series = [Series(s["group"], s["points"]) for s in m.build_series(query, rows, inputs)]
        body = MetricsResponse(format_us(query.start_us), format_us(query.end_us), query.granularity,
                               list(query.metrics), list(query.group_by), series)
        return encode_json(body)
    return call
