"""DuckDB's analytic reads: aggregates (as rows or as columns), trace summaries, the seed's communication
views' groups — each compiled by ``tea.storage.sql`` in DuckDB's dialect and run on a reader cursor."""
from __future__ import annotations

from typing import Any

from tea.storage.duckdb import bins, sql as duckdb_sql
from tea.storage.sql import comms, events
from tea.types import AggregateSpec, EventFilter, TraceSummary


class DuckDBAnalytics:
    """Mixed into DuckDBStorage (its reader cursors: ``_on_reader``)."""

    _on_reader: Any
    dialect: duckdb_sql.DuckDBDialect

    async def traces(self, filter: EventFilter, *, service: str | None = None, min_duration_ms: float = 0.0,
                     errors: bool | None = None, limit: int = 100) -> list[TraceSummary]:
        sql, params = duckdb_sql.traces(filter, service=service, min_duration_ms=min_duration_ms, errors=errors,
                                        limit=limit, d=self.dialect)
        rows = await self._on_reader(lambda cur: cur.execute(sql, params).fetchall())
        return [TraceSummary(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(r[8] or ())) for r in rows]

    async def communication_groups(self, kind: str, filter: EventFilter) -> list[tuple[Any, ...]]:
        sql, params = comms.communication_groups(kind, filter, self.dialect)
        return await self._on_reader(lambda cur: cur.execute(sql, params).fetchall())

    async def aggregate(self, spec: AggregateSpec) -> list[tuple[Any, ...]]:
        sql, params = events.aggregate(spec, self.dialect)
        return await self._on_reader(lambda cur: cur.execute(sql, params).fetchall())

    async def aggregate_columns(self, spec: AggregateSpec) -> list[Any]:
        """``aggregate``'s rows as columns (numpy arrays, NULLs masked): no Python object per cell, for
        answers of tens of thousands of cells (the Prometheus API's per-step buckets)."""
        sql, params = events.aggregate(spec, self.dialect)
        found = await self._on_reader(lambda cur: cur.execute(sql, params).fetchnumpy())
        return list(found.values())

    async def aggregate_bins(self, spec: AggregateSpec, column: str, bounds: tuple[float, ...]) -> list[Any]:
        """The aggregates per bucket, group and histogram bin of ``column``, as columns (``tea.storage.duckdb.bins``)."""
        sql, params = bins.aggregate_bins(spec, column, bounds, self.dialect)
        found = await self._on_reader(lambda cur: cur.execute(sql, params).fetchnumpy())
        return list(found.values())
