"""The raw groups of the communication views (``tea.comms.views``), compiled for a backend with CTEs (DuckDB,
PostgreSQL): the shapes of ``tea.comms.views.python_groups``, which the other backends compute in Python."""
from __future__ import annotations

from typing import Any

from tea.storage.sql.dialect import Dialect
from tea.storage.sql.events import scan
from tea.timebuckets import DAY_US
from tea.types import EventFilter

_ERR = "count(*) FILTER (WHERE status = 'error')"
_DUR = "CAST(COALESCE(sum(d), 0) AS BIGINT), count(d)"
_PAIR = "source_id, source_type, target_id, target_type, protocol"


def _p95(d: Dialect, rounding: str) -> str:
    """The sorted durations' value at the floor or ceiling of the 95th percentile's rank."""
    return f"{d.sorted_values('d')}[CAST({rounding}(CAST(0.95 AS DOUBLE PRECISION) * (count(d) - 1)) AS BIGINT) + 1]"


def _select(kind: str, d: Dialect) -> str:
    if kind == "health":
        return (f"SELECT protocol, count(*), count(DISTINCT source_id), count(DISTINCT target_id), {_DUR}, {_ERR} "
                "FROM base GROUP BY protocol")
    if kind == "pairs":  # per (pair, day) first, then per pair: the days are the rows, no DISTINCT over events
        return (f"SELECT {_PAIR}, sum(n)::BIGINT, CAST(COALESCE(sum(sd), 0) AS BIGINT), sum(nd)::BIGINT, min(lo), "
                "max(hi), sum(e)::BIGINT, count(*), max(last), CAST(sum(tok) AS BIGINT), CAST(sum(c4) AS BIGINT) "
                f"FROM (SELECT {_PAIR}, {d.floor_to('ts', DAY_US)} AS day, count(*) AS n, sum(d) AS sd, "
                f"count(d) AS nd, min(d) AS lo, max(d) AS hi, {_ERR} AS e, max(ts) AS last, sum(tok) AS tok, "
                f"sum(c4) AS c4 FROM base GROUP BY {_PAIR}, day) days GROUP BY {_PAIR}")
    if kind == "realtime":
        return (f"SELECT ts - {d.mod('ts', '60000000')} AS minute, protocol, source_id, source_type, target_id, "
                f"target_type, count(*), {_DUR}, {_p95(d, 'floor')}, {_p95(d, 'ceil')}, {_ERR} FROM base "
                "GROUP BY 1, protocol, source_id, source_type, target_id, target_type")
    if kind == "matrix":
        return (f"SELECT source_id, target_id, protocol, count(*), {_DUR}, {_ERR} FROM base "
                "GROUP BY source_id, target_id, protocol")
    if kind == "endpoints":
        return ("SELECT id, kind, count(*), max(ts) FROM (SELECT source_id AS id, source_type AS kind, ts FROM base "
                "UNION ALL SELECT target_id, target_type, ts FROM base) ends GROUP BY id, kind")
    raise ValueError(f"unknown communication view {kind!r}")


def communication_groups(kind: str, f: EventFilter, d: Dialect) -> tuple[str, list[Any]]:
    """Raw groups of one communication view, over the events ``f`` matches (materialised once: the
    endpoints read them twice)."""
    frm, params = scan(f, d)
    parsed, (source_type, target_type) = d.json_texts("attributes", ("source_type", "target_type"))
    base = (f"SELECT {d.us(d.ts)} AS ts, protocol, source AS source_id, {source_type} AS source_type, "
            f"target AS target_id, {target_type} AS target_type, CAST(trunc(duration_ms) AS BIGINT) AS d, status, "
            f"COALESCE(tokens_used, 0) AS tok, CAST(round(COALESCE(cost, 0) * 10000) AS BIGINT) AS c4 "
            f"FROM (SELECT *{parsed}{frm}) events")
    return f"WITH base AS MATERIALIZED ({base}) {_select(kind, d)}", params
