"""The read bound (tea.storage.health) on real servers: a query slower than ``read_timeout_s`` on a server
that still answers the probe is not cut short; a server that refuses connections is StorageUnavailable —
the HTTP 503 — and the probe says so. (tests/e2e/test_storage_outage.py stops and hangs the servers
under a running TEA.)"""
from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from tea.auth.keys import SecretBox
from tea.auth.tokens import TokenService
from tea.errors import StorageError, StorageUnavailable, Unavailable
from tea.storage.clickhouse import ClickHouseStorage
from tea.storage.postgres import PostgresStorage
from tests.services import PostgresServer, free_port
from tests.storage.test_clickhouse import run as run_clickhouse
from tests.storage.test_postgres import run as run_postgres

BOUNDS = {"read_timeout_s": 0.5, "probe_timeout_s": 1.0}  # a generous probe: a loaded machine is no outage


def slow(query: str) -> Any:
    """A scenario: ``query``'s rows (it takes 1.5 s, three times the read bound) and the probe's error after."""
    async def scenario(storage: Any) -> tuple[Any, str | None]:
        rows = await (storage._fetch(query) if storage.name == "postgres" else storage._rows(query))
        return rows, storage.health.error
    return scenario


def test_a_slow_postgres_query_on_a_live_server_is_not_cut_short(postgres_server) -> None:
    rows, error = run_postgres(postgres_server.fresh_url(), slow("SELECT 7 FROM pg_sleep(1.5)"), **BOUNDS)
    assert rows == [(7,)] and error is None


def test_a_slow_clickhouse_query_on_a_live_server_is_not_cut_short(clickhouse_server) -> None:
    rows, error = run_clickhouse(clickhouse_server.fresh_url(), slow("SELECT 7 FROM system.one WHERE sleep(1.5) = 0"),
                                 **BOUNDS)
    assert rows == [(7,)] and error is None


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


def test_a_token_seen_before_still_authenticates_while_postgres_is_down() -> None:
    """Token lookups are cached for ``cache_ttl_s``; while storage is unavailable an expired entry is used
    as it was, so a known token's ingestion keeps being acknowledged. An unknown token is a 503, not a 401."""
    server = PostgresServer()
    try:
        async def main() -> None:
            storage = PostgresStorage(server.fresh_url(), **BOUNDS)
            await storage.open()
            try:
                tokens = TokenService(storage, SecretBox(b"k" * 32), cache_ttl_s=0.0)  # every lookup expired
                issued = await tokens.create("acme")
                assert (await tokens.lookup(issued.token)).record.tenant_id == "acme"  # type: ignore[union-attr]
                server.stop(signal.SIGINT)
                found = await tokens.lookup(issued.token)
                assert found is not None and found.record.token_id == issued.record.token_id
                with pytest.raises(StorageUnavailable):
                    await tokens.lookup("tk_" + "x" * 40)
            finally:
                await storage.close()
        asyncio.run(main())
    finally:
        server.close()
