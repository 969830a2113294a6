"""What a backend may offer beyond the Storage Protocol, each a Protocol checked with ``isinstance``
(a backend, or a wrapper of one such as a tenant-scoped reader, has it or has not): where it is
missing, the caller does the work in Python over ``iter_events``."""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from tea.storage.signals import HasSignals, SignalStore, signals_of
from tea.types import AggregateSpec, EventFilter

__all__ = ["AggregatesColumns", "ExportsFiles", "GroupsCommunications", "HasSignals", "SignalStore", "signals_of"]


@runtime_checkable
class ExportsFiles(Protocol):
    async def export_file(self, filter: EventFilter, fmt: str, path: str) -> None:
        """Write the matching events to ``path`` as ``fmt`` (``parquet``) itself."""


@runtime_checkable
class AggregatesColumns(Protocol):
    async def aggregate_columns(self, spec: AggregateSpec) -> list[Any]:
        """``aggregate``'s answer as columns (one list a column), for large metric answers."""


@runtime_checkable
class GroupsCommunications(Protocol):
    async def communication_groups(self, kind: str, filter: EventFilter) -> list[tuple[Any, ...]]:
        """The seed's communication views' groups (``tea.comms.views``), computed in the backend's SQL."""
