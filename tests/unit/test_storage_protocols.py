"""Every built-in backend is each of the stores of the Storage protocol, and has the optional capabilities
TEA finds with isinstance (tea.storage.capabilities); a tenant-scoped reader keeps exactly those."""
from __future__ import annotations

import inspect

import pytest

from tea.auth.principal import Principal
from tea.query.scope import ScopedStorage
from tea.storage import base
from tea.storage.capabilities import AggregatesBins, AggregatesColumns, ExportsFiles, GroupsCommunications, HasSignals, signals_of
from tea.storage.clickhouse import ClickHouseStorage
from tea.storage.duckdb import DuckDBStorage
from tea.storage.memory import MemoryStorage
from tea.storage.postgres import PostgresStorage

STORES = (base.EventStore, base.TokenStore, base.AuditStore, base.DeadLetterStore, base.DocumentStore,
          base.ProjectionStore)
CAPABILITIES = {MemoryStorage: set(), DuckDBStorage: {ExportsFiles, AggregatesColumns, AggregatesBins, GroupsCommunications},
                PostgresStorage: {GroupsCommunications}, ClickHouseStorage: set()}


def protocol_members(protocol: type) -> set[str]:
    return {n for n, v in vars(protocol).items() if not n.startswith("_") and inspect.isfunction(v)}


def test_the_stores_split_the_protocol_without_overlap() -> None:
    members = [protocol_members(p) for p in STORES]
    assert sum(map(len, members)) == len(set().union(*members)) >= 29
    assert protocol_members(base.Storage) == {"open", "close"}


@pytest.mark.parametrize("backend", sorted(CAPABILITIES, key=lambda c: c.__name__))
def test_backends_are_every_store_and_their_capabilities(backend: type) -> None:
    assert all(issubclass(backend, store) for store in STORES)
    found = {c for c in (ExportsFiles, AggregatesColumns, AggregatesBins, GroupsCommunications) if issubclass(backend, c)}
    assert found == CAPABILITIES[backend]


def test_a_scoped_reader_keeps_the_backends_capabilities(tmp_path) -> None:
    principal = Principal(tenant_id="acme")
    duck = ScopedStorage(DuckDBStorage(str(tmp_path / "t.duckdb")), principal)
    memory = ScopedStorage(MemoryStorage(), principal)
    assert isinstance(duck, ExportsFiles) and isinstance(duck, AggregatesColumns) and isinstance(duck, GroupsCommunications)
    assert isinstance(duck, AggregatesBins) and not isinstance(memory, AggregatesBins)
    assert not isinstance(memory, ExportsFiles) and not isinstance(memory, GroupsCommunications)
    assert isinstance(MemoryStorage(), HasSignals) and signals_of(MemoryStorage()) is not None
    assert signals_of(object()) is None
