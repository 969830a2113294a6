"""DuckDB's per-minute rollup (``tea.storage.duckdb.rollup``) answers exactly what the events answer — the same
cells, the same series — however far its catch-up got, after later writes, resends, catch-ups run twice and
purges; and it answers the Prometheus API's usual queries at all (not only by falling back to the events)."""
from __future__ import annotations

import asyncio
import itertools
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tea.auth.principal import ADMIN, READ, Principal
from tea.prom.engine import Engine
from tea.prom.events import EventSource, catalogue
from tea.prom.plan import parse
from tea.query.scope import ScopedStorage
from tea.storage.capabilities import AggregatesMinutes, RollsUp
from tea.storage.duckdb import MIGRATIONS, DuckDBStorage, rollup
from tea.types import Agg, AggregateSpec, Batch, Event, EventFilter
from tests.storage.test_aggregate_contract import HOUR, T0, make_events

MINUTE = 60_000_000
QUERIES = (
    "histogram_quantile(0.95, sum by (le, method) (rate(tea_request_duration_ms_bucket[5m])))",
    "sum by (le) (increase(tea_request_duration_ms_bucket{source=\"s1\"}[1h]))",
    "sum(rate(tea_errors_total[5m])) / sum(rate(tea_requests_total[5m]))",
    "sum by (status) (increase(tea_tokens_total[10m]))",
    "sum by (tenant_id, target) (rate(tea_response_bytes_total[15m]))",
    "sum by (method) (rate(tea_requests_total{method=~\"m[12]\"}[5m]))",
    "sum by (method) (rate(tea_request_duration_ms_sum[5m]))",                 # (a float sum: the events)
    "sum by (method, source) (rate(tea_requests_total[5m]))",                  # (two labels: the events)
    "sum by (le) (rate(tea_request_duration_ms_bucket{tenant_id=\"t2\"}[30m]))",
)
LES = tuple(Agg("count_le", "duration_ms", le=b) for b in (*rollup.BOUNDS, float("inf")))
AGGS = (Agg("count"), Agg("errors"), Agg("sum", "tokens_used"), Agg("sum", "request_size"), *LES)


async def _write(storage: DuckDBStorage, events: list[Event]) -> None:
    if events:
        whole = Batch.from_events(events)
        await storage.write_batch(Batch([whole.ndjson()], whole.count, whole.min_ts, whole.max_ts))


def _rows(columns: list) -> list[tuple]:
    return sorted(zip(*[[None if v is None else float(v) if i > 0 and not isinstance(v, str) else v
                         for v in column.tolist()] for i, column in enumerate(columns)]),
                  key=repr)


async def _same_cells(storage: DuckDBStorage, spec: AggregateSpec) -> bool:
    """Whether the rollup answered ``spec``; asserts it answered what the events answer."""
    found = await storage.aggregate_minutes(spec)
    if found is None:
        return False
    assert _rows(found) == _rows(await storage.aggregate_columns(spec)), spec
    return True


def test_a_duckdb_file_rolls_up() -> None:
    assert issubclass(DuckDBStorage, AggregatesMinutes) and issubclass(DuckDBStorage, RollsUp)


def test_what_the_rollup_answers() -> None:
    base = AggregateSpec(EventFilter(start_us=T0, end_us=T0 + HOUR), (Agg("count"), *LES), None, ("method",),
                         bucket_us=MINUTE, origin_us=T0)
    assert rollup.plan(base) == "method"
    assert rollup.plan(replace(base, group_by=("tenant_id",))) == ""
    assert rollup.plan(replace(base, group_by=(), filter=replace(base.filter, source="s1"))) == "source"
    assert rollup.plan(replace(base, bucket_us=5 * MINUTE, origin_us=T0 - 5 * MINUTE)) is not None
    for refused in (replace(base, group_by=("method", "source")),                       # two labels
                    replace(base, filter=replace(base.filter, source="s1")),             # grouped on one, filters another
                    replace(base, group_by=("user_id",)),                                # not a label of the API
                    replace(base, bucket_us=90_000_000),                                 # not whole minutes
                    replace(base, origin_us=T0 + 1000),
                    replace(base, filter=replace(base.filter, end_us=T0 + HOUR + 1)),
                    replace(base, filter=replace(base.filter, start_us=None)),
                    replace(base, aggs=(Agg("count"), Agg("sum", "duration_ms"))),       # a float sum
                    replace(base, aggs=(Agg("count"), Agg("count_le", "duration_ms", le=3.0))),  # not a rolled-up bound
                    replace(base, bucket_us=None)):
        assert rollup.plan(refused) is None, refused


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), rolled_until=st.sampled_from([None, 2 * HOUR, 10 * HOUR]),
       later=st.booleans(), purge=st.sampled_from([None, "old", "tenant"]), twice=st.booleans())
def test_the_rollup_answers_what_the_events_answer(tmp_path: Path, seed: int, rolled_until: int | None, later: bool,
                                                   purge: str | None, twice: bool) -> None:
    rng = random.Random(seed)
    events = make_events(rng, rng.randrange(0, 400), 6 * HOUR)
    more = [msgspec.structs.replace(e, event_id=f"later-{e.event_id}") for e in make_events(rng, rng.randrange(1, 50), 6 * HOUR)]

    async def main() -> None:
        storage = DuckDBStorage(str(tmp_path / f"{seed}.duckdb"))
        await storage.open()
        try:
            await _write(storage, events)
            if rolled_until is not None:  # (the minutes before it rolled up, the rest pending)
                await storage.roll_up(T0 + rolled_until)
                if twice:
                    await storage.roll_up(T0 + rolled_until)
            if twice:
                await _write(storage, events[: len(events) // 2])  # (a resend: nothing new stored)
            if later:
                await _write(storage, more)  # (after the catch-up: its minutes pending, read from the events)
            if purge == "old":
                await storage.purge_older_than(T0 + 2 * HOUR + 90_000_000)
            elif purge == "tenant":  # (a tenant's events erased)
                await storage.purge_older_than(T0 + 100 * HOUR, tenant_ids=("t1",))
            grid = itertools.product([(), ("method",), ("tenant_id",), ("tenant_id", "status"), ("target",)],
                                     [None, ("t2",), ("t1", "t3")], [MINUTE, 5 * MINUTE, HOUR], [{}, {"source": "s1"}])
            answered = 0
            for group_by, tenants, width, fields in grid:
                spec = AggregateSpec(EventFilter(tenant_ids=tenants, start_us=T0 - width, end_us=T0 + 7 * HOUR,
                                                 **fields), AGGS, None, group_by, bucket_us=width, origin_us=T0 - width)
                answered += await _same_cells(storage, spec)
            assert answered or rolled_until is None  # (some of them from the rollup, once it has rows)
            for query, tenant in itertools.product(QUERIES, [None, "t2"]):
                scopes = frozenset({ADMIN, READ}) if tenant is None else frozenset({READ})
                reader = ScopedStorage(storage, Principal(tenant, scopes=scopes, method="token"))
                steps = np.arange(T0 // 1_000_000, T0 // 1_000_000 + 7 * 3600 + 1, 300, dtype=np.int64) * 1_000_000
                rolled = (await Engine(EventSource(reader, catalogue()), steps).run(parse(query))).series
                del reader.aggregate_minutes
                plain = (await Engine(EventSource(reader, catalogue()), steps).run(parse(query))).series
                assert list(rolled) == list(plain), query
                for labels, values in plain.items():
                    assert np.array_equal(rolled[labels], values, equal_nan=True), (query, labels)
        finally:
            await storage.close()
    asyncio.run(main())


def test_catch_up_is_idempotent_and_purges_leave_no_counts(tmp_path: Path) -> None:
    rng = random.Random(7)
    events = make_events(rng, 300, 3 * HOUR)
    path = str(tmp_path / "tea.duckdb")
    table = f"SELECT * FROM {rollup.TABLE} ORDER BY ALL"

    async def main() -> list[tuple]:
        storage = DuckDBStorage(path)
        await storage.open()
        try:
            await _write(storage, events)
            assert await storage.roll_up(T0 + 10 * HOUR) == 1
            first = await storage._on_reader(lambda cur: cur.execute(table).fetchall())
            assert first and await storage.roll_up(T0 + 10 * HOUR) == 0  # (nothing pending: nothing done)
            await _write(storage, events)  # (resent: stored once, so nothing is pending)
            assert await storage.roll_up(T0 + 10 * HOUR) == 0
            assert await storage._on_reader(lambda cur: cur.execute(table).fetchall()) == first
            deleted = await storage.purge_older_than(T0 + 100 * HOUR, tenant_ids=("t1",))
            assert deleted == sum(e.tenant_id == "t1" for e in events)
            await storage.roll_up(T0 + 10 * HOUR)
            return await storage._on_reader(lambda cur: cur.execute(
                f"SELECT tenant_id, sum(events) FROM {rollup.TABLE} WHERE label = '' GROUP BY ALL").fetchall())
        finally:
            await storage.close()
    counts = dict(asyncio.run(main()))
    assert "t1" not in counts
    assert counts[None] == counts["t2"] + counts["t3"] == sum(e.tenant_id != "t1" for e in events)


def test_an_unfinished_catch_up_leaves_the_marks(tmp_path: Path) -> None:
    """A catch-up that does not commit (killed, failed) changes nothing: its minutes stay pending, and are read
    from the events."""
    path = str(tmp_path / "tea.duckdb")
    events = make_events(random.Random(3), 200, 2 * HOUR)

    async def write() -> None:
        storage = DuckDBStorage(path)
        await storage.open()
        await _write(storage, events)
        await storage.close()
    asyncio.run(write())
    con = duckdb.connect(path)
    pending = con.execute(f"SELECT * FROM {rollup.PENDING} ORDER BY ALL").fetchall()
    con.execute(f"ALTER TABLE {rollup.TABLE} RENAME TO {rollup.TABLE}_away")  # (its writes fail, after the marks')
    with pytest.raises(duckdb.Error):
        rollup.catch_up(con, T0 + 10 * HOUR)
    con.execute(f"ALTER TABLE {rollup.TABLE}_away RENAME TO {rollup.TABLE}")
    assert con.execute(f"SELECT * FROM {rollup.PENDING} ORDER BY ALL").fetchall() == pending
    assert con.execute(f"SELECT count(*) FROM {rollup.TABLE}").fetchone() == (0,)
    assert rollup.catch_up(con, T0 + 10 * HOUR) == 1
    assert con.execute(f"SELECT count(*) FROM {rollup.PENDING}").fetchone() == (0,)  # (a fresh file: only those)
    assert con.execute(f"SELECT sum(events) FROM {rollup.TABLE} WHERE label = '' AND tenant_id IS NULL"
                       ).fetchone() == (len(events),)
    con.close()


def test_writes_during_catch_ups_and_a_file_from_before_the_rollup(tmp_path: Path) -> None:
    """Catch-ups run beside writes (a cursor of their own): what a write marks meanwhile stays pending. A file
    written before the rollup existed has its events' minutes pending from the migration on."""
    rng = random.Random(11)
    batches = [[msgspec.structs.replace(e, event_id=f"{n}-{e.event_id}") for e in make_events(rng, 150, 4 * HOUR)]
               for n in range(8)]
    path = str(tmp_path / "tea.duckdb")
    spec = AggregateSpec(EventFilter(start_us=T0, end_us=T0 + 5 * HOUR), AGGS, None, ("method",),
                         bucket_us=5 * MINUTE, origin_us=T0)

    async def main(first: bool) -> None:
        storage = DuckDBStorage(path)
        await storage.open()
        try:
            if first:
                for n in range(0, len(batches), 2):
                    await asyncio.gather(_write(storage, batches[n]), storage.roll_up(T0 + 10 * HOUR),
                                         _write(storage, batches[n + 1]), storage.roll_up(T0 + 10 * HOUR))
                    assert await _same_cells(storage, spec)
            await storage.roll_up(T0 + 10 * HOUR)
            assert await _same_cells(storage, spec)
            assert await storage._on_reader(lambda cur: cur.execute(
                f"SELECT sum(events) FROM {rollup.TABLE} WHERE label = '' AND tenant_id IS NULL").fetchone()) == (1200,)
        finally:
            await storage.close()
    asyncio.run(main(True))
    version = MIGRATIONS.index(rollup.create) + 1
    assert version == len(MIGRATIONS), "undo the migrations after the rollup's too"
    con = duckdb.connect(path)  # (back to the schema before the rollup's migration)
    con.execute(f"DROP TABLE {rollup.TABLE}")
    con.execute(f"DROP TABLE {rollup.PENDING}")
    con.execute("DELETE FROM tea_schema WHERE version = ?", [version])
    con.close()
    asyncio.run(main(False))


_CATCH_UPS = """
import sys
import duckdb
from tea.storage.duckdb import rollup
con = duckdb.connect(sys.argv[1])
print("go", flush=True)
while True:  # (every minute pending again, recomputed again: until killed)
    rollup.mark_all(con)
    rollup.catch_up(con, 2**62)
"""


@pytest.mark.slow
def test_kill_9_during_catch_ups_leaves_the_rollup_exact(tmp_path: Path) -> None:
    path = str(tmp_path / "tea.duckdb")
    events = make_events(random.Random(5), 3000, 6 * HOUR)
    specs = [AggregateSpec(EventFilter(tenant_ids=tenants, start_us=T0, end_us=T0 + 6 * HOUR), AGGS, None, group_by,
                           bucket_us=MINUTE, origin_us=T0)
             for group_by in [(), ("method",), ("tenant_id", "status")] for tenants in [None, ("t2",)]]

    async def check(first: bool) -> None:
        storage = DuckDBStorage(path)
        await storage.open()
        try:
            if first:
                await _write(storage, events)
                await storage.roll_up(T0 + 10 * HOUR)
            for spec in specs:  # (whatever the kill left: rolled-up rows, or minutes pending)
                await _same_cells(storage, spec)
            await storage.roll_up(T0 + 10 * HOUR)
            assert all([await _same_cells(storage, spec) for spec in specs])
        finally:
            await storage.close()
    asyncio.run(check(True))
    for delay in (0.0, 0.3, 0.7, 1.5):
        child = subprocess.Popen([sys.executable, "-c", _CATCH_UPS, path], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "go"
        time.sleep(delay)  # (somewhere in a catch-up, or between two)
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        asyncio.run(check(False))
