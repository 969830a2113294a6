"""What a backend may offer beyond the Storage Protocol, each a Protocol checked with ``isinstance``
(a backend, or a wrapper of one such as a tenant-scoped reader, has it or has not): where it is
missing, the caller does the work in Python over ``iter_events``."""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from tea.storage.projections import Row
from tea.storage.signals import HasSignals, SignalStore, signals_of
from tea.types import AggregateSpec, EventFilter

__all__ = ["AggregatesBins", "AggregatesColumns", "AggregatesMinutes", "ExportsFiles", "GroupsCommunications", "HasSignals",
           "RollsUp", "SignalStore", "WritesRowSets", "signals_of"]


@runtime_checkable
class ExportsFiles(Protocol):
    async def export_file(self, filter: EventFilter, fmt: str, path: str) -> None:
        """Write the matching events to ``path`` as ``fmt`` (``parquet``) itself."""


@runtime_checkable
class AggregatesColumns(Protocol):
    async def aggregate_columns(self, spec: AggregateSpec) -> list[Any]:
        """``aggregate``'s answer as columns (one list a column), for large metric answers."""


@runtime_checkable
class AggregatesBins(Protocol):
    async def aggregate_bins(self, spec: AggregateSpec, column: str, bounds: tuple[float, ...]) -> list[Any]:
        """Columns ``(bucket, *groups, bin, *aggregates)``: ``spec``'s aggregates per bucket, group and bin of
        ``column`` — bin i holds the events whose ``column`` is in (bounds[i-1], bounds[i]], bin
        len(bounds) those above every bound, NULL those without a value."""


@runtime_checkable
class AggregatesMinutes(Protocol):
    async def aggregate_minutes(self, spec: AggregateSpec) -> list[Any] | None:
        """``aggregate_columns``' answer from per-minute pre-aggregates where the backend keeps them for ``spec``
        (whole-minute buckets, few labels: DuckDB's ``tea.storage.duckdb.rollup``), the same cells the events
        give, written or deleted until the call included; None where it does not (the caller asks the events)."""


@runtime_checkable
class RollsUp(Protocol):
    async def roll_up(self, now_us: int) -> int:
        """Bring the pre-aggregates of ``aggregate_minutes`` up to date with the events (run every few seconds by
        ``tea.app``); they answer exactly without it, only slower."""


@runtime_checkable
class GroupsCommunications(Protocol):
    async def communication_groups(self, kind: str, filter: EventFilter) -> list[tuple[Any, ...]]:
        """The seed's communication views' groups (``tea.comms.views``), computed in the backend's SQL."""


@runtime_checkable
class WritesRowSets(Protocol):
    async def write_row_sets(self, tables: dict[str, list[Row]]) -> None:
        """``write_rows`` of each table's rows given as ``projections.ROWS`` structs, in one write (where it is
        missing, the caller writes each table's rows as dicts: ``projections.as_dict``)."""
