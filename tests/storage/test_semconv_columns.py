"""The MCP/GenAI columns (tool, model, input_tokens, output_tokens) on every backend: stored, read back,
filtered, grouped and summed; and each backend's migration appends them to a store written before them,
whose events keep every value and read the new columns as empty."""
from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from tea.types import Agg, AggregateSpec, Batch, Event, EventFilter, QuerySpec
from tests.storage.test_aggregate_contract import BACKENDS, T0, open_storage

FIRST_COLUMNS = 28  # the events table as the first release made it


def events() -> list[Event]:
    rows = [("search", "gpt-4o", 100, 10), ("search", "claude-sonnet-4", 5, None), ("fetch", "gpt-4o", None, 7),
            (None, None, None, None)]
    return [Event(event_type="span", event_id=f"e{i}", tenant_id="t", timestamp=T0 + i, received_at=T0,
                  method="tools/call", tool=tool, model=model, input_tokens=inp, output_tokens=out,
                  attributes=msgspec.Raw(b"{}")) for i, (tool, model, inp, out) in enumerate(rows)]


def batch(items: list[Event]) -> Batch:
    whole = Batch.from_events(items)
    return Batch([whole.ndjson()], whole.count, whole.min_ts, whole.max_ts)


@pytest.mark.parametrize("kind", BACKENDS)
def test_stored_read_filtered_grouped_and_summed(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind in ("postgres", "clickhouse"):
        from tests.storage import test_aggregate_contract as contract
        contract._FRESH[kind] = request.getfixturevalue(f"{kind}_server").fresh_url

    async def main():
        storage = open_storage(kind, tmp_path)
        await storage.open()
        try:
            await storage.write_batch(batch(events()))
            page = await storage.query_events(QuerySpec(EventFilter(), limit=10))
            by_tool = await storage.query_events(QuerySpec(EventFilter(tool="search"), limit=10))
            by_model = await storage.count(EventFilter(model="gpt-4o"))
            spec = AggregateSpec(EventFilter(), (Agg("count"), Agg("sum", "input_tokens"), Agg("sum", "output_tokens")),
                                 None, ("tool", "model"))
            return page, by_tool, by_model, await storage.aggregate(spec)
        finally:
            await storage.close()
    page, by_tool, by_model, rows = asyncio.run(main())
    stored = {e.event_id: (e.tool, e.model, e.input_tokens, e.output_tokens) for e in page.events}
    assert stored == {e.event_id: (e.tool, e.model, e.input_tokens, e.output_tokens) for e in events()}
    assert sorted(e.event_id for e in by_tool.events) == ["e0", "e1"] and by_model == 2
    assert sorted(rows, key=lambda r: (r[1] or "", r[2] or "")) == [
        (None, None, None, 1, None, None), (None, "fetch", "gpt-4o", 1, None, 7),
        (None, "search", "claude-sonnet-4", 1, 5, None), (None, "search", "gpt-4o", 1, 100, 10)]


def test_duckdb_appends_the_columns_to_a_file_from_before_them(tmp_path: Path) -> None:
    import duckdb

    from tea.storage.duckdb import MIGRATIONS, DuckDBStorage
    path = str(tmp_path / "v11.duckdb")
    with duckdb.connect(path) as con:  # a file as schema version 11 left it
        con.execute("CREATE TABLE tea_schema (version INTEGER NOT NULL)")
        for number, step in enumerate(MIGRATIONS[:11], 1):
            step(con) if callable(step) else con.execute(step)
            con.execute("INSERT INTO tea_schema VALUES (?)", [number])
        con.execute("INSERT INTO events_p00 SELECT 'old', 't', TIMESTAMP '2026-01-01', TIMESTAMP '2026-01-01', 'x', "
                    + ", ".join(["NULL"] * 10) + ", 12.5, NULL, NULL, 40, 0.5, " + ", ".join(["NULL"] * 6)
                    + ", ['a'], '{\"k\": 1}'")
    assert len(duckdb.connect(path).execute("SELECT * FROM events_p00").description) == FIRST_COLUMNS

    async def main():
        storage = DuckDBStorage(path)
        await storage.open()
        try:
            await storage.write_batch(batch(events()))
            return (await storage.query_events(QuerySpec(EventFilter(), limit=10))).events
        finally:
            await storage.close()
    found = {e.event_id: e for e in asyncio.run(main())}
    old = found["old"]
    assert (old.duration_ms, old.tokens_used, old.cost, old.tags, bytes(old.attributes)) == (12.5, 40, 0.5, ["a"],
                                                                                           b'{"k": 1}')
    assert (old.tool, old.model, old.input_tokens, old.output_tokens) == (None, None, None, None)
    assert (found["e0"].tool, found["e0"].input_tokens) == ("search", 100)


def test_postgres_migration_appends_the_columns(postgres_server) -> None:
    import psycopg

    from tea import migrations
    from tea.storage.postgres import PostgresStorage
    url = postgres_server.fresh_url()
    migrations.upgrade(url, "0007")
    with psycopg.connect(url) as con:
        con.execute(f"CREATE TABLE events_20260101 PARTITION OF events FOR VALUES FROM ({T0}) TO "
                    f"({T0 + 86_400_000_000})")
        con.execute("INSERT INTO events (event_id, tenant_id, \"timestamp\", received_at, event_type, tokens_used) "
                    "VALUES ('old', 't', %s, %s, 'x', 40)", [T0, T0])

    async def main():
        storage = PostgresStorage(url)
        await storage.open()  # migrates to head
        try:
            await storage.write_batch(batch(events()))
            return (await storage.query_events(QuerySpec(EventFilter(), limit=10))).events
        finally:
            await storage.close()
    found = {e.event_id: e for e in asyncio.run(main())}
    assert migrations.current(url) == migrations.head()
    assert (found["old"].tokens_used, found["old"].tool, found["old"].input_tokens) == (40, None, None)
    assert (found["e2"].tool, found["e2"].model, found["e2"].output_tokens) == ("fetch", "gpt-4o", 7)


def test_clickhouse_appends_the_columns_to_an_events_table_from_before_them(clickhouse_server) -> None:
    from clickhouse_driver import Client

    from tea.storage.clickhouse import sql as clickhouse_sql
    from tea.storage.clickhouse import ClickHouseStorage
    url = clickhouse_server.fresh_url()

    async def main(body):
        storage = ClickHouseStorage(url)
        await storage.open()
        try:
            return await body(storage)
        finally:
            await storage.close()

    async def nothing(storage):
        return None
    asyncio.run(main(nothing))  # creates the database and tables; then the events table is made old
    client = Client.from_url(url)
    first = dict(list(clickhouse_sql.COLUMN_TYPES.items())[:FIRST_COLUMNS])
    client.execute("DROP TABLE events")
    client.execute("CREATE TABLE events (" + ", ".join(f"`{k}` {v}" for k, v in first.items()) + ") "
                   f"ENGINE = ReplacingMergeTree() PARTITION BY {clickhouse_sql.DAY_OF} ORDER BY "
                   f"{clickhouse_sql.EVENTS_ORDER}")
    client.execute("INSERT INTO events (event_id, tenant_id, timestamp, received_at, event_type, tokens_used, tags, "
                   "attributes) VALUES", [("old", "t", T0, T0, "x", 40, [], "{}")])
    client.disconnect()

    async def write_and_read(storage):
        await storage.write_batch(batch(events()))
        return (await storage.query_events(QuerySpec(EventFilter(), limit=10))).events
    found = {e.event_id: e for e in asyncio.run(main(write_and_read))}
    assert (found["old"].tokens_used, found["old"].model) == (40, None)
    assert (found["e1"].tool, found["e1"].model, found["e1"].input_tokens) == ("search", "claude-sonnet-4", 5)
