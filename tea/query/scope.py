"""Tenant scoping in the query layer: every read goes through a ``ScopedStorage`` (a request's reader,
``Readers.of(request)``) that rewrites the tenants it reads to the caller's, so no handler can forget
or get it wrong. Only admins read across tenants; a tenant principal naming another tenant gets 403."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, AsyncIterator, Iterable

import msgspec

from tea.auth.principal import Principal
from tea.errors import Forbidden
from tea.signals.model import LogRecord, MetricPoint, PointQuery, RecordQuery, SeriesKey
from tea.storage.base import Storage
from tea.storage.capabilities import (AggregatesBins, AggregatesColumns, AggregatesMinutes, ExportsFiles,
                                      GroupsCommunications, signals_of)
from tea.types import (AggregateSpec, AuditRecord, DeadLetter, Event, EventFilter, QueryResult, QuerySpec,
                       TraceSummary)


_EVERYTHING = EventFilter()


def scoped(principal: Principal, f: EventFilter) -> EventFilter:
    allowed = principal.tenants()
    if allowed is None:
        return f
    if f.tenant_ids is None:
        return replace(f, tenant_ids=allowed)
    outside = [t for t in f.tenant_ids if t not in allowed]
    if outside:
        raise Forbidden(f"this credential cannot read tenant {outside[0]!r}", code="forbidden_tenant",
                        details={"tenant_id": outside[0]})
    return f


def tenant_filter(tenant_id: str | None, **fields: Any) -> EventFilter:
    """A filter of the tenant a request names (None when it names none). It is not scoped here: the
    request's reader narrows it to what the caller may read and answers 403 for a tenant it may not."""
    return EventFilter(tenant_ids=(tenant_id,) if tenant_id else None, **fields)


class ScopedSignals:
    """A backend's metric points and log records (tea.storage.signals), read as one principal may."""

    def __init__(self, store: Any, reader: "ScopedStorage") -> None:
        self.store = store
        self.reader = reader

    async def points(self, q: PointQuery) -> list[MetricPoint]:
        return await self.store.points(msgspec.structs.replace(q, tenant_ids=self.reader.tenants(q.tenant_ids)))

    async def series(self, q: PointQuery) -> list[SeriesKey]:
        return await self.store.series(msgspec.structs.replace(q, tenant_ids=self.reader.tenants(q.tenant_ids)))

    async def records(self, q: RecordQuery) -> list[LogRecord]:
        return await self.store.records(msgspec.structs.replace(q, tenant_ids=self.reader.tenants(q.tenant_ids)))

    async def counts(self, tenant_ids: tuple[str, ...] | None, start_us: int, end_us: int,
                     bucket: str) -> list[tuple[int, str, str, int]]:
        return await self.store.counts(self.reader.tenants(tenant_ids), start_us, end_us, bucket)


class ScopedStorage:
    """The read half of a Storage, seen through one principal: the only way a read route reaches
    storage (``Readers.of(request)``). Every method takes the tenants to read as storage does —
    an ``EventFilter``'s ``tenant_ids`` or a ``tenant_ids``/``tenant_id`` argument — and rewrites
    them: None (every tenant) becomes the principal's own tenant, naming a tenant it may not read
    is a 403. Only admins (and development mode) read across tenants. Registry and alert-rule
    reads run on it too (``Registry(reader)``, ``RuleStore(reader, …)``), so none of them can ask
    storage for another tenant's documents or records."""

    def __init__(self, storage: Storage, principal: Principal) -> None:
        self.storage = storage
        self.principal = principal
        if isinstance(storage, ExportsFiles):  # the backend writes Parquet itself: keep that, scoped
            async def export_file(filter: EventFilter, fmt: str, path: str) -> None:
                await storage.export_file(scoped(principal, filter), fmt, path)
            self.export_file = export_file
        if isinstance(storage, AggregatesColumns):  # the backend answers aggregates as columns
            async def aggregate_columns(spec: AggregateSpec) -> list[Any]:
                return await storage.aggregate_columns(replace(spec, filter=scoped(principal, spec.filter)))
            self.aggregate_columns = aggregate_columns
        if isinstance(storage, AggregatesBins):  # ... and a histogram's counts per bin
            async def aggregate_bins(spec: AggregateSpec, column: str, bounds: tuple[float, ...]) -> list[Any]:
                return await storage.aggregate_bins(replace(spec, filter=scoped(principal, spec.filter)), column, bounds)
            self.aggregate_bins = aggregate_bins
        if isinstance(storage, AggregatesMinutes):  # ... and from per-minute pre-aggregates
            async def aggregate_minutes(spec: AggregateSpec) -> list[Any] | None:
                return await storage.aggregate_minutes(replace(spec, filter=scoped(principal, spec.filter)))
            self.aggregate_minutes = aggregate_minutes
        if isinstance(storage, GroupsCommunications):  # the backend computes the seed's views in SQL
            async def communication_groups(kind: str, filter: EventFilter) -> list[tuple[Any, ...]]:
                return await storage.communication_groups(kind, scoped(principal, filter))
            self.communication_groups = communication_groups
        store = signals_of(storage)
        self.signals = ScopedSignals(store, self) if store is not None else None  # metric points, log records

    def scope(self, filter: EventFilter) -> EventFilter:
        """The filter as this principal may run it (403 now, before any response starts)."""
        return scoped(self.principal, filter)

    def tenants(self, tenant_ids: Iterable[str] | None) -> tuple[str, ...] | None:
        """``tenant_ids`` as this principal may read them (None: every tenant, admins only)."""
        asked = tuple(tenant_ids) if tenant_ids is not None else None
        return scoped(self.principal, EventFilter(tenant_ids=asked)).tenant_ids

    # ------------------------------------------------------------ events
    async def query_events(self, spec: QuerySpec) -> QueryResult:
        return await self.storage.query_events(replace(spec, filter=scoped(self.principal, spec.filter)))

    async def count(self, filter: EventFilter | None = None) -> int:
        f = scoped(self.principal, filter or EventFilter())
        return await self.storage.count(None if f == _EVERYTHING else f)  # (backends count everything fastest)

    async def aggregate(self, spec: AggregateSpec) -> list[tuple[Any, ...]]:
        return await self.storage.aggregate(replace(spec, filter=scoped(self.principal, spec.filter)))

    def iter_events(self, filter: EventFilter, chunk_rows: int = 10000) -> AsyncIterator[list[Event]]:
        return self.storage.iter_events(scoped(self.principal, filter), chunk_rows)

    async def traces(self, filter: EventFilter, **options: Any) -> list[TraceSummary]:
        return await self.storage.traces(scoped(self.principal, filter), **options)

    # ------------------------------------------------------------ analytics projections
    async def query_rows(self, table: str, *, tenant_ids: tuple[str, ...] | None,
                         **options: Any) -> list[dict[str, Any]]:
        return await self.storage.query_rows(table, tenant_ids=self.tenants(tenant_ids), **options)

    async def projection_report(self, report: str, *, tenant_ids: tuple[str, ...] | None,
                                since_us: int) -> list[dict[str, Any]]:
        return await self.storage.projection_report(report, tenant_ids=self.tenants(tenant_ids), since_us=since_us)

    # ------------------------------------------------------------ documents and records (registry, alerts)
    async def get_document(self, kind: str, tenant_id: str, key: str) -> dict[str, Any] | None:
        [tenant] = self.tenants((tenant_id,))  # type: ignore[misc]
        return await self.storage.get_document(kind, tenant, key)

    async def list_documents(self, kind: str,
                             tenant_ids: tuple[str, ...] | None) -> list[tuple[str, str, dict[str, Any]]]:
        return await self.storage.list_documents(kind, self.tenants(tenant_ids))

    async def query_records(self, kind: str, *, tenant_ids: tuple[str, ...] | None,
                            **options: Any) -> list[tuple[str, int, dict[str, Any]]]:
        return await self.storage.query_records(kind, tenant_ids=self.tenants(tenant_ids), **options)

    # ------------------------------------------------------------ the service's own records
    @property
    def name(self) -> str:
        return self.storage.name

    async def existing_event_keys(self, tenant_id: str, event_ids: list[str], start_us: int,
                                  end_us: int) -> set[tuple[str, int]]:
        [tenant] = self.tenants((tenant_id,))  # type: ignore[misc]
        return await self.storage.existing_event_keys(tenant, event_ids, start_us, end_us)

    async def query_audit(self, *, tenant_id: str | None = None, **options: Any) -> list[AuditRecord]:
        allowed = self.tenants(None if tenant_id is None else (tenant_id,))
        if allowed is not None and len(allowed) != 1:
            return []
        return await self.storage.query_audit(tenant_id=allowed[0] if allowed else None, **options)

    async def retention_overrides(self) -> dict[str, int]:
        allowed = self.tenants(None)
        found = await self.storage.retention_overrides()
        return found if allowed is None else {t: h for t, h in found.items() if t in allowed}

    async def list_dead_letters(self, *, limit: int = 100, include_replayed: bool = False) -> list[DeadLetter]:
        if self.principal.tenants() is not None:  # they hold events of every tenant
            raise Forbidden("dead letters hold every tenant's events: an admin reads them", code="forbidden_tenant")
        return await self.storage.list_dead_letters(limit=limit, include_replayed=include_replayed)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"ScopedStorage offers scoped reads only, not {name!r}")
