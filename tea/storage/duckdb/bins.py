"""DuckDB's ``aggregate_bins``: an aggregate per bucket, group and histogram bin of one column, for the
Prometheus API's latency histogram (``tea.prom.cells.dense_bins`` sums the bins into per-bound counts).

One ``CASE`` puts each event in its bin, so the scan counts it once instead of once per bound (17
filtered counts of a million events cost ~1.6x the binned scan). The filter, the buckets and the
aggregates are compiled by ``tea.storage.duckdb.sql`` as for ``aggregate``."""
from __future__ import annotations

import math
from typing import Any

from tea.storage.duckdb import sql as duckdb_sql
from tea.storage.sql import events
from tea.types import Agg, AggregateSpec


def bin_expr(column: str, bounds: tuple[float, ...]) -> str:
    """The bin of ``column``: i for values in (bounds[i-1], bounds[i]], len(bounds) above them all (NaN too,
    as ``count_le`` at +Inf counts it), NULL without a value."""
    Agg("count_le", column, le=math.inf)  # (validates the column)
    if any(not math.isfinite(b) for b in bounds) or list(bounds) != sorted(set(bounds)):
        raise ValueError("bins need finite bounds in ascending order")
    whens = " ".join(f"WHEN {column} <= {float(b)!r} THEN {i}" for i, b in enumerate(bounds))
    return f"CASE {whens} WHEN {column} IS NOT NULL THEN {len(bounds)} END"


def aggregate_bins(spec: AggregateSpec, column: str, bounds: tuple[float, ...],
                   d: duckdb_sql.DuckDBDialect = duckdb_sql.DIALECT) -> tuple[str, list[Any]]:
    if spec.top is not None:
        raise ValueError("aggregate_bins does not rank groups")
    frm, params = duckdb_sql.scan(spec.filter, d)
    groups = list(spec.group_by)
    select = ", ".join([f"{events.bucket_expr(spec, d)} AS bucket", *groups, f"{bin_expr(column, bounds)} AS bin",
                        *(f"{events.agg_sql(a, d)} AS a{i}" for i, a in enumerate(spec.aggs))])
    return f"SELECT {select}{frm} GROUP BY " + ", ".join(["bucket", *groups, "bin"]), params
