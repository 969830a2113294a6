"""What only the postgres backend has: Alembic migrations, day partitions and retention by dropping
them, the COPY write path, dedup across batches and partitions, the pool — on a real server
(tests/services.py), each test on its own empty database."""
from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tea import migrations
from tea.errors import ConfigError, StorageDataError, StorageError
from tea.settings import load
from tea.storage.postgres import PostgresStorage, partition_name
from tea.types import Agg, AggregateSpec, Batch, Event, EventFilter, QuerySpec
from tests.storage.test_aggregate_contract import AGGS, as_map, assert_same, make_events, reference
from tests.storage.test_contract import arrived, ev, everything, from_wire

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000_000
DAY = 24 * HOUR
TABLES = {"events", "tenant_retention", "api_tokens", "audit_log", "dead_letters", "user_activity", "endpoint_usage",
          "feature_usage", "documents", "records", "tea_schema_version"}


@pytest.fixture
def url(postgres_server) -> str:
    return postgres_server.fresh_url()


def run(url: str, scenario: Callable[[PostgresStorage], Awaitable[Any]], **options: Any) -> Any:
    async def main() -> Any:
        storage = PostgresStorage(url, **options)
        await storage.open()
        try:
            return await scenario(storage)
        finally:
            await storage.close()
    return asyncio.run(main())


def sql(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as con:
        return con.execute(query, params).fetchall()


def partitions(url: str) -> list[str]:
    return sorted(r[0] for r in sql(url, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                         "WHERE i.inhparent = 'events'::regclass"))


# ---------------------------------------------------------------- migrations
def test_migrations_build_every_table_from_an_empty_database_and_rerun_as_no_op(url: str) -> None:
    assert migrations.current(url) is None
    migrations.upgrade(url)
    assert migrations.current(url) == migrations.head()
    tables = {r[0] for r in sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert TABLES <= tables
    assert sql(url, "SELECT relkind FROM pg_class WHERE relname = 'events'") == [("p",)]  # partitioned
    indexes = {r[0] for r in sql(url, "SELECT indexname FROM pg_indexes WHERE tablename = 'events'")}
    assert {"events_tenant_time", "events_tenant_event_id", "events_tenant_type_time", "events_trace_id",
            "events_correlation_id"} <= indexes
    migrations.upgrade(url)  # a second node starting: nothing to do
    assert migrations.current(url) == migrations.head()


def test_migrations_step_up_one_revision_at_a_time(url: str) -> None:
    migrations.upgrade(url, "0001")
    assert migrations.current(url) == "0001"
    assert {r[0] for r in sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")} == {
        "events", "tea_schema_version"}
    run(url, lambda s: asyncio.sleep(0))  # open() migrates the rest
    assert migrations.current(url) == migrations.head()


def test_open_without_auto_migrate_refuses_an_old_schema(url: str) -> None:
    with pytest.raises(StorageError, match="tea migrate"):
        run(url, lambda s: asyncio.sleep(0), auto_migrate=False)
    migrations.upgrade(url)
    assert run(url, lambda s: s.count(), auto_migrate=False) == 0


def test_tea_migrate_sql_prints_the_ddl_without_a_database() -> None:
    proc = subprocess.run([sys.executable, "-m", "tea", "migrate", "--sql"], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "TEA_STORAGE_BACKEND": "postgres"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("BEGIN;") and out.rstrip().endswith("COMMIT;")
    assert 'PARTITION BY RANGE ("timestamp")' in out and "attributes jsonb" in out
    for table in TABLES:
        assert f"CREATE TABLE {table} " in out, table
    assert f"version_num='{migrations.head()}'" in out


def test_tea_migrate_applies_them(url: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "TEA_STORAGE_BACKEND": "postgres", "TEA_POSTGRES_URL": url}
    first = subprocess.run([sys.executable, "-m", "tea", "migrate"], capture_output=True, text=True, timeout=60, env=env)
    assert first.returncode == 0, first.stderr
    assert f"schema at {migrations.head()} (was empty)" in first.stdout
    again = subprocess.run([sys.executable, "-m", "tea", "migrate"], capture_output=True, text=True, timeout=60, env=env)
    assert again.returncode == 0 and "already current" in again.stdout


def test_settings_and_the_seed_names(postgres_server) -> None:
    with pytest.raises(ConfigError, match="TEA_POSTGRES_URL"):
        PostgresStorage.from_settings(load({"storage_backend": "postgres"}, env={}))
    seed = load({}, env={"ANALYTICS_DB_USER": "u", "ANALYTICS_DB_PASS": "p", "ANALYTICS_DB_HOST": "h",
                         "TEA_STORAGE_BACKEND": "postgres", "TEA_POSTGRES__POOL_MAX": "3",
                         "TEA_POSTGRES__AUTO_MIGRATE": "false"})
    storage = PostgresStorage.from_settings(seed)
    assert storage.url == "postgresql://u:p@h:5432/rhesis-analytics"
    assert (storage.pool_max, storage.auto_migrate) == (3, False)


def test_an_unreachable_server_is_a_storage_error(postgres_server) -> None:
    from tests.conftest import free_port
    with pytest.raises(StorageError):
        run(f"postgresql://postgres@127.0.0.1:{free_port()}/tea", lambda s: asyncio.sleep(0), connect_timeout_s=1)


# ---------------------------------------------------------------- partitions and retention
def test_writes_create_day_partitions_and_retention_drops_whole_ones(url: str) -> None:
    old = [ev(f"d{day}-{i}", ts=T0 + day * DAY + i * HOUR) for day in range(3) for i in range(4)]
    late = [ev("other", ts=T0 + 2 * HOUR, tenant="keep")]

    async def scenario(storage: PostgresStorage) -> tuple[int, ...]:
        await storage.write_batch(from_wire(old + late))
        created = partitions(url)
        assert {partition_name(T0 + d * DAY) for d in range(3)} <= set(created)
        assert "events_20260101" in created
        # day 0 holds a row of "keep" (excluded): its other rows are deleted, the partition stays
        first = await storage.purge_older_than(T0 + DAY + 2 * HOUR, exclude_tenant_ids=("keep",))
        assert first == 4 + 2
        assert "events_20260101" in partitions(url)
        # then "keep" goes too: day 0 is now dropped whole (1 row); day 1 keeps its last two rows
        second = await storage.purge_older_than(T0 + DAY + 2 * HOUR)
        assert second == 1
        assert "events_20260101" not in partitions(url) and "events_20260102" in partitions(url)
        remaining = sorted(e.event_id for e in await everything(storage))
        assert remaining == ["d1-2", "d1-3"] + [f"d2-{i}" for i in range(4)]
        # a day written again after its partition was dropped gets a new one
        assert (await storage.write_batch(from_wire([ev("back", ts=T0 + 1)]))).written == 1
        return first, second

    run(url, scenario)


def test_tenant_retention_drops_partitions_only_that_tenant_filled(url: str) -> None:
    async def scenario(storage: PostgresStorage) -> None:
        await storage.write_batch(from_wire([ev("a", ts=T0, tenant="t1"), ev("b", ts=T0 + DAY, tenant="t1"),
                                             ev("c", ts=T0 + DAY, tenant="t2")]))
        assert await storage.purge_older_than(T0 + 2 * DAY, tenant_ids=("t1",)) == 2
        assert "events_20260101" not in partitions(url) and "events_20260102" in partitions(url)
        assert [e.event_id for e in await everything(storage)] == ["c"]
        assert await storage.purge_older_than(T0 + 2 * DAY, tenant_ids=()) == 0

    run(url, scenario)


# ---------------------------------------------------------------- the COPY path and dedup
def test_copy_keeps_awkward_text_exactly(url: str) -> None:
    nasty = ['tab\there', 'comma,"quote"', "back\\slash \\N \\.", "line\nbreak\r", "é✓😀", "\x01\x02\x1f", "", "'"]
    events = [ev(f"n{i}", ts=T0 + i, method=text, error_message=text * 3, tags=[text, "x"],
                 attributes={"k": text, text or "empty": [text, 1.5, 2 ** 62, None, True]})
              for i, text in enumerate(nasty)]

    async def scenario(storage: PostgresStorage) -> None:
        assert (await storage.write_batch(from_wire(events))).written == len(events)
        got = {e.event_id: e for e in await everything(storage)}
        for original in events:
            stored = got[original.event_id]
            assert (stored.method, stored.error_message, stored.tags) == (original.method, original.error_message,
                                                                           original.tags)
            assert msgspec.json.decode(stored.attributes) == msgspec.json.decode(original.attributes)

    run(url, scenario)


def test_a_large_batch_goes_through_one_copy(url: str) -> None:
    events = [ev(f"big{i:06d}", ts=T0 + i * 1000, tenant=f"t{i % 5}", duration_ms=i / 7,
                 attributes={"i": i, "pad": "x" * 50}) for i in range(50_000)]

    async def scenario(storage: PostgresStorage) -> None:
        result = await storage.write_batch(from_wire(events))
        assert (result.written, result.duplicates) == (50_000, 0)
        assert await storage.count(EventFilter(tenant_ids=("t3",))) == 10_000
        replay = await storage.write_batch(from_wire(events))
        assert (replay.written, replay.duplicates) == (0, 50_000)

    run(url, scenario)


def test_refused_data_is_a_storage_data_error_and_stores_nothing(url: str) -> None:
    good = Batch.from_events([ev("fine")]).ndjson()
    cases = [b'{"event_type":"x","event_id":"a","tenant_id":"t","timestamp":"soon","received_at":1}\n',
             b'{"event_type":"x","event_id":"a","timestamp":1,"received_at":1}\n',  # no tenant
             b'{"event_type":"x","event_id":"a","tenant_id":"t","timestamp":1,"received_at":1,"status_code":1e40}\n']

    async def scenario(storage: PostgresStorage) -> None:
        for broken in cases:
            with pytest.raises(StorageDataError):
                await storage.write_batch(Batch([good, broken], 2, T0, T0))
        assert await storage.count() == 0
        assert (await storage.write_batch(Batch([good], 1, T0, T0))).written == 1

    run(url, scenario)


def test_dedup_across_batches_partitions_and_the_window(url: str) -> None:
    midnight = T0 + DAY

    async def scenario(storage: PostgresStorage) -> None:
        # (events stamped on arrival: the window applies to them)
        assert (await storage.write_batch(from_wire([arrived("x", ts=midnight - 1), arrived("y", ts=T0)]))).written == 2
        # the same key just after midnight (another partition), within the window: a duplicate
        again = await storage.write_batch(from_wire([arrived("x", ts=midnight + 1), arrived("y", ts=T0 + 2 * HOUR)]))
        assert (again.written, again.duplicates) == (1, 1)
        # first of the duplicates within a batch wins
        await storage.write_batch(from_wire([arrived("z", ts=T0 + 5, user_id="first"),
                                             arrived("z", ts=T0 + 6, user_id="second")]))
        assert [e.user_id for e in await everything(storage, event_id="z")] == ["first"]
        assert await storage.count() == 4
        assert {i for i, _ in await storage.existing_event_keys("t1", ["x", "y", "nope"], midnight - HOUR,
                                                               midnight + HOUR)} == {"x"}

    run(url, scenario, dedup_window_us=HOUR)


# ---------------------------------------------------------------- the pool
def test_the_pool_serves_concurrent_queries_within_its_bound(url: str) -> None:
    async def scenario(storage: PostgresStorage) -> None:
        await storage.write_batch(from_wire([ev(f"p{i}", ts=T0 + i) for i in range(100)]))
        counts = await asyncio.gather(*(storage.count() for _ in range(30)),
                                      *(storage.query_events(QuerySpec(limit=5)) for _ in range(10)))
        assert counts[:30] == [100] * 30 and all(len(r.events) == 5 for r in counts[30:])
        assert storage._pool is not None and storage._pool.get_stats()["pool_size"] <= 2

    run(url, scenario, pool_max=2)


def test_iter_events_streams_in_chunks_while_others_query(url: str) -> None:
    async def scenario(storage: PostgresStorage) -> None:
        await storage.write_batch(from_wire([ev(f"s{i:04d}", ts=T0 + i) for i in range(2500)]))
        seen = 0
        async for chunk in storage.iter_events(EventFilter(), chunk_rows=1000):
            assert len(chunk) <= 1000
            seen += len(chunk)
            assert await storage.count() == 2500  # another pooled connection meanwhile
        assert seen == 2500

    run(url, scenario)


# ---------------------------------------------------------------- aggregates against the brute-force reference
@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), bucket=st.sampled_from([None, "minute", "hour", "day", "week", "month"]),
       group_by=st.lists(st.sampled_from(["tenant_id", "method", "status", "user_id", "target"]), max_size=2,
                         unique=True),
       top=st.sampled_from([None, 1, 2, 5]), tenant=st.sampled_from([None, "t1"]),
       window=st.sampled_from([None, (3 * HOUR, 50 * HOUR)]))
def test_aggregate_matches_brute_force(postgres_server, seed: int, bucket, group_by, top, tenant, window) -> None:
    rng = random.Random(seed)
    events = make_events(rng, rng.randrange(0, 300), 70 * 24 * HOUR)
    f = EventFilter(tenant_ids=(tenant,) if tenant else None,
                    start_us=T0 + window[0] if window else None, end_us=T0 + window[1] if window else None)
    spec = AggregateSpec(f, AGGS, bucket, tuple(group_by), top)

    async def scenario(storage: PostgresStorage) -> list[tuple[Any, ...]]:
        if events:
            await storage.write_batch(from_wire(events))
        return await storage.aggregate(spec)

    rows = run(postgres_server.fresh_url(), scenario)
    assert_same(as_map(rows, spec), reference(events, spec))


def test_bucket_edges_and_sums_are_exact(url: str) -> None:
    stamps = [T0, T0 - 1, T0 + HOUR, T0 + HOUR - 1, T0 + 4 * DAY, T0 + 31 * DAY, -1, -DAY - 1]
    events = [Event(event_type="x", event_id=f"e{i}", tenant_id="t", timestamp=ts, received_at=0,
                    duration_ms=[0.1, 0.2, 1 / 3][i % 3], attributes=msgspec.Raw(b"{}")) for i, ts in enumerate(stamps)]

    async def scenario(storage: PostgresStorage) -> None:
        await storage.write_batch(from_wire(events))
        for bucket in ("minute", "hour", "day", "week", "month"):
            spec = AggregateSpec(EventFilter(), (Agg("count"), Agg("sum", "duration_ms"), Agg("avg", "duration_ms")),
                                 bucket)
            got = as_map(await storage.aggregate(spec), spec)
            want = reference(events, spec)
            assert set(got) == set(want), bucket
        spec = AggregateSpec(EventFilter(), (Agg("sum", "duration_ms"), Agg("avg", "duration_ms")))
        (row,) = await storage.aggregate(spec)
        values = [e.duration_ms for e in events]
        import math
        assert row[1:] == (math.fsum(values), math.fsum(values) / len(values))  # as memory and DuckDB: exact

    run(url, scenario)


def test_partition_names_are_utc_days() -> None:
    assert partition_name(T0) == "events_20260101"
    assert partition_name(T0 - DAY) == "events_20251231"
    assert Path(migrations.__file__).parent.joinpath("versions").is_dir()
