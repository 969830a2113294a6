"""The scoped reader: whatever a handler passes, storage is only ever asked for the caller's tenant."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tea.alerts.rules import RuleStore
from tea.auth.principal import ADMIN, READ, Principal
from tea.comms.registry import Registry
from tea.comms import views
from tea.errors import Forbidden
from tea.query.scope import ScopedStorage
from tea.types import AggregateSpec, Agg, EventFilter, QueryResult, QuerySpec

TENANT = Principal(tenant_id="acme", scopes=frozenset({READ}), method="token", token_id="tok_1")
ADMIN_PRINCIPAL = Principal(tenant_id=None, scopes=frozenset({ADMIN}), method="admin_token", token_id="admin")


class Recorder:
    """A storage that answers nothing and records which tenants each read asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Any]] = []

    async def query_events(self, spec: QuerySpec) -> QueryResult:
        self.asked.append(("query_events", spec.filter.tenant_ids))
        return QueryResult([], 0, False)

    async def count(self, f: EventFilter | None = None) -> int:  # (None: every event, as the protocol has it)
        self.asked.append(("count", f.tenant_ids if f is not None else None))
        return 0

    async def aggregate(self, spec: AggregateSpec) -> list:
        self.asked.append(("aggregate", spec.filter.tenant_ids))
        return []

    async def traces(self, f: EventFilter, **options: Any) -> list:
        self.asked.append(("traces", f.tenant_ids))
        return []

    async def communication_groups(self, kind: str, f: EventFilter) -> list:
        self.asked.append(("communication_groups", f.tenant_ids))
        return []

    async def query_rows(self, table: str, *, tenant_ids: Any, **options: Any) -> list:
        self.asked.append(("query_rows", tenant_ids))
        return []

    async def projection_report(self, report: str, *, tenant_ids: Any, since_us: int) -> list:
        self.asked.append(("projection_report", tenant_ids))
        return []

    async def get_document(self, kind: str, tenant_id: str, key: str) -> None:
        self.asked.append(("get_document", (tenant_id,)))

    async def list_documents(self, kind: str, tenant_ids: Any) -> list:
        self.asked.append(("list_documents", tenant_ids))
        return []

    async def query_records(self, kind: str, *, tenant_ids: Any, **options: Any) -> list:
        self.asked.append(("query_records", tenant_ids))
        return []

    async def put_document(self, *args: Any) -> None:
        raise AssertionError("a reader never writes")


async def every_read(reader: ScopedStorage, tenants: tuple[str, ...] | None) -> None:
    """Each kind of read a route runs, asking for ``tenants`` (None: whatever the reader allows)."""
    f = EventFilter(tenant_ids=tenants)
    await reader.query_events(QuerySpec(f, 10))
    await reader.count(f)
    await reader.aggregate(AggregateSpec(f, (Agg("count"),)))
    await reader.traces(f)
    await views.health(reader, f, 0)
    await reader.query_rows("user_activity", tenant_ids=tenants, filters={})
    await reader.projection_report("summary", tenant_ids=tenants, since_us=0)
    registry = Registry(reader)
    await registry.entities(tenants)
    await registry.transitions(tenants, {}, 10)
    await registry.audit(tenants, {}, 10)
    await RuleStore(reader, (), None).api_rules(tenants)
    await reader.list_documents("alert_state", tenants)
    await reader.query_records("alert_history", tenant_ids=tenants)


def test_a_tenant_reader_asks_storage_for_its_own_tenant_only() -> None:
    storage = Recorder()
    reader = ScopedStorage(storage, TENANT)  # type: ignore[arg-type]
    asyncio.run(every_read(reader, None))
    asyncio.run(every_read(reader, ("acme",)))
    asyncio.run(reader.get_document("registry", "acme", "team/x"))
    asked = {name for name, _ in storage.asked}
    assert asked == {"query_events", "count", "aggregate", "traces", "communication_groups", "query_rows",
                     "projection_report", "list_documents", "query_records", "get_document"}
    assert {tenants for _, tenants in storage.asked} == {("acme",)}


@pytest.mark.parametrize("other", [("globex",), ("acme", "globex")])
def test_a_tenant_reader_refuses_another_tenant_before_storage_is_asked(other: tuple[str, ...]) -> None:
    storage = Recorder()
    reader = ScopedStorage(storage, TENANT)  # type: ignore[arg-type]
    reads = [lambda: reader.query_events(QuerySpec(EventFilter(tenant_ids=other), 10)),
             lambda: reader.query_rows("user_activity", tenant_ids=other, filters={}),
             lambda: reader.projection_report("summary", tenant_ids=other, since_us=0),
             lambda: reader.list_documents("registry", other),
             lambda: reader.query_records("registry_audit", tenant_ids=other),
             lambda: reader.get_document("registry", "globex", "team/x"),
             lambda: views.health(reader, EventFilter(tenant_ids=other), 0)]
    for read in reads:
        with pytest.raises(Forbidden):
            asyncio.run(read())
    assert storage.asked == []
    with pytest.raises(AttributeError):  # no writes, nothing unscoped
        reader.put_document  # noqa: B018


def test_an_admin_reader_reads_every_tenant_or_the_one_named() -> None:
    storage = Recorder()
    reader = ScopedStorage(storage, ADMIN_PRINCIPAL)  # type: ignore[arg-type]
    asyncio.run(every_read(reader, None))
    assert {tenants for _, tenants in storage.asked} == {None}
    storage.asked.clear()
    asyncio.run(every_read(reader, ("globex",)))
    assert {tenants for _, tenants in storage.asked} == {("globex",)}
