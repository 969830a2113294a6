"""Tenant scoping in the query layer: every read goes through a ``ScopedStorage`` that rewrites
its filter to the caller's tenant, so no handler can forget. Only admins read across tenants;
a tenant principal naming another tenant gets 403."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, AsyncIterator

from tea.auth.principal import DEV, Principal
from tea.errors import Forbidden
from tea.http import Request
from tea.query.spec import text_param
from tea.storage.base import Storage
from tea.types import AggregateSpec, Event, EventFilter, QueryResult, QuerySpec, TraceSummary


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


def principal_of(request: Request) -> Principal:
    """Who is asking (the development-mode principal when authentication is off)."""
    return request.state.get("principal") or DEV


def request_filter(request: Request, **fields: Any) -> EventFilter:
    """A filter of this request's tenants: its ``tenant_id`` parameter, or every tenant the caller may read;
    403 for a tenant it may not."""
    tenant = text_param(request, "tenant_id")
    return scoped(principal_of(request), EventFilter(tenant_ids=(tenant,) if tenant else None, **fields))


class ScopedStorage:
    """The read half of a Storage, seen through one principal."""

    def __init__(self, storage: Storage, principal: Principal) -> None:
        self.storage = storage
        self.principal = principal
        if hasattr(storage, "export_file"):  # the backend writes Parquet itself: keep that, scoped
            async def export_file(filter: EventFilter, fmt: str, path: str) -> None:
                await storage.export_file(scoped(principal, filter), fmt, path)  # type: ignore[attr-defined]
            self.export_file = export_file

    def scope(self, filter: EventFilter) -> EventFilter:
        """The filter as this principal may run it (403 now, before any response starts)."""
        return scoped(self.principal, filter)

    async def query_events(self, spec: QuerySpec) -> QueryResult:
        return await self.storage.query_events(replace(spec, filter=scoped(self.principal, spec.filter)))

    async def count(self, filter: EventFilter | None = None) -> int:
        return await self.storage.count(scoped(self.principal, filter or EventFilter()))

    async def aggregate(self, spec: AggregateSpec) -> list[tuple[Any, ...]]:
        return await self.storage.aggregate(replace(spec, filter=scoped(self.principal, spec.filter)))

    def iter_events(self, filter: EventFilter, chunk_rows: int = 10000) -> AsyncIterator[list[Event]]:
        return self.storage.iter_events(scoped(self.principal, filter), chunk_rows)

    async def traces(self, filter: EventFilter, **options: Any) -> list[TraceSummary]:
        return await self.storage.traces(scoped(self.principal, filter), **options)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"ScopedStorage offers scoped reads only, not {name!r}")
