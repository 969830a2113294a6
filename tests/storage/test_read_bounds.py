"""The read bound (tea.storage.health) on real servers: a query slower than ``read_timeout_s`` on a server
that still answers the probe is not cut short; a server that refuses connections is StorageUnavailable —
the HTTP 503 — and the probe says so. (tests/e2e/test_storage_outage.py stops and hangs the servers
under a running TEA.)"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest

from tea.errors import StorageError, StorageUnavailable, Unavailable
from tea.storage.clickhouse import ClickHouseStorage
from tea.storage.postgres import PostgresStorage
from tests.services import free_port

BOUNDS = {"read_timeout_s": 0.4, "probe_timeout_s": 0.2}


def run(storage: Any, body: Callable[[Any], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        await storage.open()
        try:
            return await body(storage)
        finally:
            await storage.close()
    return asyncio.run(main())


def test_a_slow_postgres_query_on_a_live_server_is_not_cut_short(postgres_server) -> None:
    storage = PostgresStorage(postgres_server.fresh_url(), **BOUNDS)
    rows = run(storage, lambda s: s._fetch("SELECT 7 FROM pg_sleep(1.2)"))
    assert rows == [(7,)]
    assert storage.health.error is None


def test_a_slow_clickhouse_query_on_a_live_server_is_not_cut_short(clickhouse_server) -> None:
    storage = ClickHouseStorage(clickhouse_server.fresh_url(), **BOUNDS)
    rows = run(storage, lambda s: s._rows("SELECT 7 FROM system.one WHERE sleep(1.2) = 0"))
    assert rows == [(7,)]
    assert storage.health.error is None


@pytest.mark.parametrize("backend", ["postgres", "clickhouse"])
def test_a_refused_connection_is_storage_unavailable(backend: str) -> None:
    port = free_port()  # nothing listens there
    storage = PostgresStorage(f"postgresql://postgres@127.0.0.1:{port}/x", **BOUNDS) if backend == "postgres" \
        else ClickHouseStorage(f"clickhouse://default@127.0.0.1:{port}/x", **BOUNDS)

    async def main() -> tuple[bool, BaseException]:
        try:
            await storage._ping(0.2)
        except StorageError as exc:
            caught: BaseException = exc
        else:
            raise AssertionError("a ping to a closed port succeeded")
        return await storage.health.is_up(), caught

    up, error = asyncio.run(main())
    assert not up and storage.health.error
    assert isinstance(error, StorageUnavailable) and isinstance(error, Unavailable)
    assert error.status == 503 and error.headers == {"retry-after": "1"}
    assert str(port) in str(error) and str(port) not in error.message  # the log has the host, the client not
