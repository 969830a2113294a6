"""The storage contract: one suite, run against every backend (later backends join the list)."""
from __future__ import annotations

import asyncio
import random
import tempfile
from pathlib import Path
from typing import Awaitable, Callable

import msgspec
import pytest

from tea.errors import StorageDataError
from tea.storage.base import Storage
from tea.storage.duckdb import MIGRATIONS, DuckDBStorage
from tea.storage.memory import MemoryStorage
from tea.types import AuditRecord, Batch, Cursor, DeadLetter, Event, EventFilter, QuerySpec

HOUR = 3_600_000_000
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs


def make_memory(tmp_path: Path, **options) -> Storage:
    return MemoryStorage(max_events=10**6, **options)


def make_duckdb(tmp_path: Path, **options) -> Storage:
    return DuckDBStorage(tempfile.mkdtemp(dir=tmp_path) + "/contract.duckdb", **options)  # (a fresh file each)


def make_postgres(tmp_path: Path, request: pytest.FixtureRequest, **options) -> Storage:
    from tea.storage.postgres import PostgresStorage
    return PostgresStorage(request.getfixturevalue("postgres_server").fresh_url(), **options)


def make_clickhouse(tmp_path: Path, request: pytest.FixtureRequest, **options) -> Storage:
    from tea.storage.clickhouse import ClickHouseStorage
    return ClickHouseStorage(request.getfixturevalue("clickhouse_server").fresh_url(), **options)


BACKENDS = {"memory": make_memory, "duckdb": make_duckdb}
SERVER_BACKENDS = {"postgres": make_postgres, "clickhouse": make_clickhouse}


@pytest.fixture(params=sorted(BACKENDS) + sorted(SERVER_BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Callable[[Storage], Awaitable[None]]], None]:
    def run(scenario: Callable[[Storage], Awaitable[None]], **options) -> None:
        """``scenario`` on a fresh storage of the backend, made with ``options`` (keyword arguments of its class)."""
        async def main() -> None:
            if request.param in SERVER_BACKENDS:
                storage = SERVER_BACKENDS[request.param](tmp_path, request, **options)
            else:
                storage = BACKENDS[request.param](tmp_path, **options)
            await storage.open()
            try:
                await scenario(storage)
            finally:
                await storage.close()
        asyncio.run(main())
    return run


def ev(event_id: str, ts: int = T0, tenant: str = "t1", **fields) -> Event:
    attributes = fields.pop("attributes", {})
    return Event(event_type=fields.pop("event_type", "request"), event_id=event_id, tenant_id=tenant,
                 timestamp=ts, received_at=ts + 5, attributes=msgspec.Raw(msgspec.json.encode(attributes)),
                 **fields)


def arrived(event_id: str, ts: int = T0, tenant: str = "t1", **fields) -> Event:
    """An event sent without a timestamp: stamped on arrival (its timestamp its received_at)."""
    event = ev(event_id, ts, tenant, **fields)
    event.received_at = ts
    return event


def from_wire(events: list[Event]) -> Batch:
    """A batch as the writer builds it: NDJSON chunks only (nothing decoded)."""
    whole = Batch.from_events(events)
    return Batch([whole.ndjson()], whole.count, whole.min_ts, whole.max_ts)


async def everything(storage: Storage, **filter_fields) -> list[Event]:
    result = await storage.query_events(QuerySpec(EventFilter(**filter_fields), limit=10000))
    return result.events


def test_roundtrip_keeps_every_column(backend) -> None:
    full = ev("e1", source="svc", source_protocol="native", user_id="u", session_id="s", organization="o",
              method="tools/call", target="mcp-x", protocol="mcp", status="error", status_code=-32601,
              duration_ms=12.25, request_size=2**40, response_size=0, tokens_used=77, cost=0.0125,
              error_type="E", error_message="boom ✓", trace_id="ab" * 16, span_id="cd" * 8, parent_span_id="ef" * 8,
              correlation_id="c-1", tags=["a", "b"], attributes={"nested": {"x": [1, 2.5, None, "é"]}, "big": 2**70})
    sparse = ev("e2", ts=T0 - 1)

    async def scenario(storage: Storage) -> None:
        result = await storage.write_batch(from_wire([full, sparse]))
        assert (result.written, result.duplicates) == (2, 0)
        got = await everything(storage)
        assert [e.event_id for e in got] == ["e1", "e2"]
        for original, stored in zip([full, sparse], got):
            for name in Event.__struct_fields__:
                if name == "attributes":
                    assert msgspec.json.decode(stored.attributes) == msgspec.json.decode(original.attributes)
                else:
                    assert getattr(stored, name) == getattr(original, name), name
    backend(scenario)


def test_idempotent_on_tenant_and_event_id(backend) -> None:
    async def scenario(storage: Storage) -> None:
        first = await storage.write_batch(from_wire([ev("a"), ev("b"), ev("a", tenant="t2")]))
        assert (first.written, first.duplicates) == (3, 0)
        replay = await storage.write_batch(from_wire([ev("a"), ev("b"), ev("c")]))  # a buffer replay
        assert (replay.written, replay.duplicates) == (1, 2)
        within = await storage.write_batch(from_wire([arrived("c", ts=T0 + 60_000_000)]))  # a retry stamped anew
        assert (within.written, within.duplicates) == (0, 1)
        same_batch = await storage.write_batch(from_wire([ev("d"), ev("d"), ev("d", tenant="t3")]))
        assert (same_batch.written, same_batch.duplicates) == (2, 1)
        assert await storage.count() == 6
        assert sorted((e.tenant_id, e.event_id) for e in await everything(storage)) == [
            ("t1", "a"), ("t1", "b"), ("t1", "c"), ("t1", "d"), ("t2", "a"), ("t3", "d")]
    backend(scenario)


def test_same_id_outside_the_dedup_window_is_a_new_event(backend) -> None:
    async def scenario(storage: Storage) -> None:
        await storage.write_batch(from_wire([ev("a")]))
        later = await storage.write_batch(from_wire([ev("a", ts=T0 + 3 * HOUR)]))
        assert later.written == 1 and await storage.count() == 2
    backend(scenario)


def test_dedup_window_is_each_events_own(backend) -> None:
    """Idempotency does not depend on how the writer happens to batch events: an event stamped on arrival
    repeats another (stored, or earlier in the same batch) only when their times are within the window of
    each other."""
    async def scenario(storage: Storage) -> None:
        far = await storage.write_batch(from_wire([arrived("x"), arrived("x", ts=T0 + 2 * HOUR)]))  # 2 h apart
        assert (far.written, far.duplicates) == (2, 0)
        near = await storage.write_batch(from_wire([arrived("y"), arrived("y", ts=T0 + 60_000_000)]))  # 1 min apart
        assert (near.written, near.duplicates) == (1, 1)
        # the batch spans T0 (another event), but "x" at T0 + 4 h is 2 h from the nearest stored "x"
        spread = await storage.write_batch(from_wire([arrived("x", ts=T0 + 4 * HOUR), ev("z")]))
        assert (spread.written, spread.duplicates) == (2, 0)
        again = await storage.write_batch(from_wire([arrived("x", ts=T0 + 2 * HOUR + 1), ev("z")]))
        assert (again.written, again.duplicates) == (0, 2)
        assert sorted((e.event_id, e.timestamp) for e in await everything(storage)) == sorted([
            ("x", T0), ("x", T0 + 2 * HOUR), ("x", T0 + 4 * HOUR), ("y", T0), ("z", T0)])
    backend(scenario)


def test_an_event_with_its_own_time_repeats_the_same_time(backend) -> None:
    """storage.dedup_match=same_time (the default): an event sent with its own timestamp repeats a stored or
    earlier one of its key only at that timestamp — whatever the other was stamped with; an event stamped on
    arrival, any of its key within the window. With dedup_match=window every event uses the window."""
    batches = [[ev("a"), ev("a", ts=T0 + 1), ev("b", ts=T0 + 60_000_000)],  # own times: 1 µs apart
               [ev("a", ts=T0 + 1), ev("b", ts=T0 + 120_000_000), arrived("c")],  # the same time; a new one
               [arrived("a", ts=T0 + HOUR), arrived("c", ts=T0 + 2), ev("c", ts=T0 + 3)]]  # within the window

    async def scenario(storage: Storage, expected: list[tuple[int, int]], stored: list[tuple[str, int]]) -> None:
        results = [await storage.write_batch(from_wire(b)) for b in batches]
        assert [(r.written, r.duplicates) for r in results] == expected
        assert sorted((e.event_id, e.timestamp - T0) for e in await everything(storage)) == stored
    backend(lambda s: scenario(s, [(3, 0), (2, 1), (1, 2)],
                               [("a", 0), ("a", 1), ("b", 60_000_000), ("b", 120_000_000), ("c", 0), ("c", 3)]))
    backend(lambda s: scenario(s, [(2, 1), (1, 2), (0, 3)], [("a", 0), ("b", 60_000_000), ("c", 0)]),
            dedup_same_time=False)


def test_existing_event_keys_are_the_stored_ids_and_times_in_range(backend) -> None:
    """What the telemetry-kit and PostgREST pre-checks ask: a tenant's stored (event_id, timestamp) of the
    given ids within the range (both ends included) — another tenant's, another id's and those outside not."""
    async def scenario(storage: Storage) -> None:
        await storage.write_batch(from_wire([ev("a"), ev("a", ts=T0 + 5), ev("a", ts=T0 + HOUR), ev("b", ts=T0 + 7),
                                             ev("a", ts=T0 + 1, tenant="t2"), ev("z", ts=T0 + 2)]))
        assert await storage.existing_event_keys("t1", ["a", "b", "nope"], T0, T0 + 7) == \
            {("a", T0), ("a", T0 + 5), ("b", T0 + 7)}
        assert await storage.existing_event_keys("t1", ["a"], T0 + 1, T0 + HOUR) == {("a", T0 + 5), ("a", T0 + HOUR)}
        assert await storage.existing_event_keys("t2", ["a", "b"], T0, T0 + HOUR) == {("a", T0 + 1)}
        assert await storage.existing_event_keys("t1", [], T0, T0 + HOUR) == set()
    backend(scenario)


HOSTILE = ["x' OR '1'='1", "x\\' OR 1=1 --", 'q"uote', "back\\slash", "new\nline", "semi; DROP TABLE events; --",
           "percent%_under", "tab\tnul\x01", "ünï ✓"]


def test_hostile_strings_are_values_not_sql(backend) -> None:
    """Every value reaches storage as data: quotes, backslashes, comments and LIKE wildcards match only
    themselves, in filters and in tenant scoping (ClickHouse renders literals itself, the others bind)."""
    events = [ev(f"h{i}", ts=T0 + i, tenant=value, source=value, method=value, user_id=value, target=value)
              for i, value in enumerate(HOSTILE)] + [ev("plain", tenant="x", source="x", method="x", user_id="x")]

    async def scenario(storage: Storage) -> None:
        assert (await storage.write_batch(from_wire(events))).written == len(events)
        for i, value in enumerate(HOSTILE):
            for field in ("source", "method", "user_id", "target"):
                got = await everything(storage, **{field: value})
                assert [(e.event_id, getattr(e, field)) for e in got] == [(f"h{i}", value)], (field, value)
            got = await everything(storage, tenant_ids=(value,))
            assert [(e.event_id, e.tenant_id) for e in got] == [(f"h{i}", value)], value
            assert await storage.count(EventFilter(tenant_ids=(value,))) == 1
        assert await everything(storage, source="x' OR 'x'='x") == []
        assert [e.event_id for e in await everything(storage, tenant_ids=("x",))] == ["plain"]
    backend(scenario)


def test_filters(backend) -> None:
    events = [ev(f"e{i}", ts=T0 + i, tenant=f"t{i % 3}", user_id=f"u{i % 2}", event_type=f"type{i % 4}",
                 source=f"s{i % 5}", method=f"m{i % 2}", status="ok" if i % 3 else "error", trace_id=f"tr{i % 7}",
                 correlation_id=f"c{i % 6}") for i in range(60)]

    async def scenario(storage: Storage) -> None:
        await storage.write_batch(from_wire(events))
        checks = [
            ({"tenant_ids": ("t1",)}, lambda e: e.tenant_id == "t1"),
            ({"tenant_ids": ("t1", "t2")}, lambda e: e.tenant_id in ("t1", "t2")),
            ({"tenant_ids": ()}, lambda e: False),
            ({"user_id": "u1", "event_type": "type3"}, lambda e: e.user_id == "u1" and e.event_type == "type3"),
            ({"source": "s4", "method": "m0"}, lambda e: e.source == "s4" and e.method == "m0"),
            ({"status": "error", "trace_id": "tr3"}, lambda e: e.status == "error" and e.trace_id == "tr3"),
            ({"correlation_id": "c5"}, lambda e: e.correlation_id == "c5"),
            ({"event_id": "e42"}, lambda e: e.event_id == "e42"),
            ({"start_us": T0 + 10, "end_us": T0 + 20}, lambda e: T0 + 10 <= e.timestamp < T0 + 20),
        ]
        for fields, predicate in checks:
            expected = sorted((e.event_id for e in events if predicate(e)), key=lambda i: -int(i[1:]))
            got = [e.event_id for e in await everything(storage, **fields)]
            assert got == expected, fields
            assert await storage.count(EventFilter(**fields)) == len(expected), fields
    backend(scenario)


def test_pagination_is_stable_and_complete(backend) -> None:
    rng = random.Random(7)
    # many events share timestamps, so the tie-breaks (event_id, tenant_id) matter
    events = [ev(f"id{rng.randrange(40):02d}", ts=T0 + rng.randrange(5), tenant=f"t{i % 4}") for i in range(400)]
    unique = {(e.tenant_id, e.event_id, e.timestamp): e for e in events}

    async def scenario(storage: Storage) -> None:
        await storage.write_batch(from_wire(list(unique.values())))
        stored_keys = {(e.tenant_id, e.event_id, e.timestamp) for e in await everything(storage)}
        seen: list[tuple[int, str, str]] = []
        cursor: Cursor | None = None
        pages = 0
        while True:
            result = await storage.query_events(QuerySpec(EventFilter(), limit=7, after=cursor))
            assert result.total_count == len(stored_keys)
            seen += [(e.timestamp, e.event_id, e.tenant_id) for e in result.events]
            pages += 1
            if not result.has_more:
                break
            cursor = result.next_cursor
            assert pages < 200
        assert seen == sorted(seen, reverse=True)
        assert len(seen) == len(set(seen)) == len(stored_keys)
    backend(scenario)


def test_pages_are_the_same_with_or_without_their_total(backend) -> None:
    """A page with its total (the DuckDB backend, over several partitions, finds the page's keys in the count's
    statement and then reads every column of only those events) is the page without one, for
    every filter, tenant scope, size and cursor — many events sharing a time, as a batch stamped on
    arrival does, and one id in several tenants and times."""
    rng = random.Random(11)
    events = [ev(f"id{i:03d}", ts=T0 + rng.choice((0, 0, 0, 1, 2, 2, 7, 30)), tenant=f"t{rng.randrange(6)}",
                 event_type=rng.choice(("a", "b"))) for i in range(150)]
    events += [ev("dup", ts=T0 + k % 3, tenant=f"t{k}") for k in range(6)] + [ev("dup", ts=T0 - 2 * HOUR, tenant="t1")]
    in_filter = {"all": lambda e: True, "a": lambda e: e.event_type == "a",
                 "t1,t4": lambda e: e.tenant_id in ("t1", "t4"), "t2": lambda e: e.tenant_id == "t2",
                 "from 2": lambda e: e.timestamp >= T0 + 2, "until 2, a": lambda e: e.timestamp < T0 + 2
                 and e.event_type == "a", "none": lambda e: False, "dup": lambda e: e.event_id == "dup",
                 "dup in t1,t4": lambda e: e.event_id == "dup" and e.tenant_id in ("t1", "t4")}
    filters = {"all": EventFilter(), "a": EventFilter(event_type="a"), "t1,t4": EventFilter(tenant_ids=("t1", "t4")),
               "t2": EventFilter(tenant_ids=("t2",)), "from 2": EventFilter(start_us=T0 + 2),
               "until 2, a": EventFilter(end_us=T0 + 2, event_type="a"), "none": EventFilter(tenant_ids=("t9",)),
               "dup": EventFilter(event_id="dup"), "dup in t1,t4": EventFilter(tenant_ids=("t1", "t4"), event_id="dup")}

    async def scenario(storage: Storage) -> None:
        await storage.write_batch(from_wire(events))
        for name, f in filters.items():
            expected = sorted(((e.timestamp, e.event_id, e.tenant_id) for e in events if in_filter[name](e)),
                              reverse=True)
            for limit in (2, 5, 40):
                cursor: Cursor | None = None
                seen: list[tuple[int, str, str]] = []
                while True:
                    totalled = await storage.query_events(QuerySpec(f, limit, cursor))
                    plain = await storage.query_events(QuerySpec(f, limit, cursor, with_total=False))
                    page = [(e.timestamp, e.event_id, e.tenant_id) for e in totalled.events]
                    assert page == [(e.timestamp, e.event_id, e.tenant_id) for e in plain.events], (name, limit)
                    assert totalled.has_more == plain.has_more and totalled.total_count == len(expected), (name, limit)
                    seen += page
                    if not totalled.has_more:
                        break
                    cursor = totalled.next_cursor
                assert seen == expected, (name, limit)
    backend(scenario)


def test_duckdb_page_across_partitions_is_the_one_statement_page(tmp_path: Path) -> None:
    """Across partitions DuckDB reads a page's keys, then every column of those events from their partitions: the
    page, its total and whether more follow are those of one statement over every partition (the view
    ``events``, DuckDB's own top-N), column for column — ties in time, one id in several tenants and times, a
    tenant scope over several partitions, filters, cursors, and pages with or without their total."""
    from tea.storage.duckdb.sql import DIALECT, partition_of
    from tea.storage.duckdb.store import _row_to_event
    from tea.storage.sql import events as compile_events
    rng = random.Random(5)
    tenants = [f"t{i}" for i in range(8)]
    assert len({partition_of(t) for t in tenants}) > 3
    stored = [ev(f"id{i:03d}", ts=T0 + rng.choice((0, 0, 1, 5, 9)), tenant=rng.choice(tenants),
                 event_type=rng.choice(("a", "b")), source=rng.choice((None, "svc")), duration_ms=i / 8,
                 tags=["x", f"y{i}"] if i % 3 else [], attributes={"i": i, "s": "é" * (i % 4)},
                 trace_id=None if i % 2 else f"{i:032x}") for i in range(120)]
    stored += [ev("dup", ts=T0 + k % 2, tenant=t) for k, t in enumerate(tenants)] + [ev("dup", ts=T0 - HOUR, tenant="t3")]
    filters = [EventFilter(), EventFilter(event_type="a"), EventFilter(tenant_ids=("t1", "t2", "t5")),
               EventFilter(start_us=T0 + 1), EventFilter(event_id="dup"), EventFilter(tenant_ids=("t9", "t8"))]

    def one_statement(cur, spec: QuerySpec) -> tuple[list[Event], int | None, bool]:
        rows = cur.execute(*compile_events.page(spec, DIALECT)).fetchall()
        total = cur.execute(*compile_events.count(spec.filter, DIALECT)).fetchone()[0]
        return [_row_to_event(r) for r in rows[: spec.limit]], total if spec.with_total else None, len(rows) > spec.limit

    def as_dicts(found: list[Event]) -> list[dict]:
        return [msgspec.structs.asdict(e) | {"attributes": msgspec.json.decode(e.attributes)} for e in found]

    async def scenario() -> None:
        storage = DuckDBStorage(str(tmp_path / "pages.duckdb"))
        await storage.open()
        await storage.write_batch(from_wire(stored))
        for f in filters:
            for limit, with_total in ((3, True), (7, False), (200, True)):
                cursor: Cursor | None = None
                for _ in range(60):
                    spec = QuerySpec(f, limit, cursor, with_total)
                    got = await storage.query_events(spec)
                    events, total, more = await storage._on_reader(one_statement, spec)
                    assert as_dicts(got.events) == as_dicts(events), (f, limit, cursor)
                    assert (got.total_count, got.has_more) == (total, more), (f, limit, cursor)
                    if not got.has_more:
                        break
                    cursor = got.next_cursor
                else:
                    raise AssertionError("the pages did not end")
        await storage.close()
    asyncio.run(scenario())


def test_purge_older_than(backend) -> None:
    async def scenario(storage: Storage) -> None:
        await storage.write_batch(from_wire([ev(f"old{i}", ts=T0 - HOUR - i) for i in range(5)]
                                            + [ev("edge", ts=T0), ev("new", ts=T0 + 1)]
                                            + [ev("other", ts=T0 - 2 * HOUR, tenant="t9")]))
        assert await storage.purge_older_than(T0, tenant_ids=("t9",)) == 1
        assert await storage.purge_older_than(T0) == 5
        assert sorted(e.event_id for e in await everything(storage)) == ["edge", "new"]
        assert await storage.purge_older_than(T0) == 0
    backend(scenario)


def test_count_of_everything_follows_writes_and_purges(backend) -> None:
    """/health asks for the count of all events many times a second; it must never lag a write or purge
    (the DuckDB backend keeps it between writes)."""
    async def scenario(storage: Storage) -> None:
        assert await storage.count() == await storage.count() == 0
        await storage.write_batch(from_wire([ev(f"a{i}", ts=T0 - HOUR) for i in range(3)]))
        assert await storage.count() == await storage.count() == 3
        await storage.write_batch(from_wire([ev(f"b{i}", ts=T0, tenant="t2") for i in range(4)]))
        assert await storage.count() == 7
        assert await storage.count(EventFilter(tenant_ids=("t2",))) == 4
        await storage.write_batch(from_wire([ev("a0", ts=T0 - HOUR)]))  # a duplicate: nothing changes
        assert await storage.count() == 7
        counts = await asyncio.gather(storage.count(), storage.purge_older_than(T0), storage.count())
        assert counts[0] in (3, 7) and counts[1] == 3  # (a count beside the purge sees it or not ...)
        assert await storage.count() == await storage.count() == 4  # (... the next one does)
    backend(scenario)


def test_empty_batch_and_empty_store(backend) -> None:
    async def scenario(storage: Storage) -> None:
        assert (await storage.write_batch(Batch([], 0, 0, 0))).written == 0
        result = await storage.query_events(QuerySpec())
        assert result.events == [] and result.total_count == 0 and not result.has_more
        assert await storage.count() == 0
    backend(scenario)


def test_documents_are_keyed_by_kind_tenant_and_key(backend) -> None:
    async def scenario(storage: Storage) -> None:
        await storage.put_document("entity", "t1", "a", {"n": 1, "tags": ["x"], "nested": {"k": None}})
        await storage.put_document("entity", "t1", "a", {"n": 2})  # replaced, not duplicated
        await storage.put_document("entity", "t2", "a", {"n": 3})
        await storage.put_document("rule", "t1", "a", {"n": 4})
        assert await storage.get_document("entity", "t1", "a") == {"n": 2}
        assert await storage.get_document("entity", "t3", "a") is None
        assert await storage.list_documents("entity", None) == [("t1", "a", {"n": 2}), ("t2", "a", {"n": 3})]
        assert await storage.list_documents("entity", ("t2",)) == [("t2", "a", {"n": 3})]
        assert await storage.delete_document("entity", "t1", "a") is True
        assert await storage.delete_document("entity", "t1", "a") is False
        assert await storage.list_documents("entity", None) == [("t2", "a", {"n": 3})]
        assert await storage.list_documents("rule", ("t1",)) == [("t1", "a", {"n": 4})]
    backend(scenario)


def test_records_are_appended_and_read_newest_first(backend) -> None:
    async def scenario(storage: Storage) -> None:
        await storage.append_records("audit", [("t1", T0, {"action": "registered", "i": 0}),
                                               ("t1", T0 + 2, {"action": "updated", "i": 1}),
                                               ("t2", T0 + 1, {"action": "registered", "i": 2})])
        await storage.append_records("audit", [("t1", T0 + 2, {"action": "updated", "i": 3})])
        await storage.append_records("other", [("t1", T0, {"i": 9})])
        every = await storage.query_records("audit", tenant_ids=None)
        assert [body["i"] for _, _, body in every] == [3, 1, 2, 0]  # same instant: later append first
        assert [r[2]["i"] for r in await storage.query_records("audit", tenant_ids=("t1",))] == [3, 1, 0]
        only = await storage.query_records("audit", tenant_ids=None, filters={"action": "registered"})
        assert [(t, at, b["i"]) for t, at, b in only] == [("t2", T0 + 1, 2), ("t1", T0, 0)]
        window = await storage.query_records("audit", tenant_ids=None, start_us=T0 + 1, end_us=T0 + 2)
        assert [b["i"] for _, _, b in window] == [2]
        assert len(await storage.query_records("audit", tenant_ids=None, limit=2)) == 2
    backend(scenario)


def test_records_of_every_kind_are_purged_by_age(backend) -> None:
    async def scenario(storage: Storage) -> None:
        await storage.append_records("alert_history", [("t1", T0 - 2 * HOUR, {"i": 0}), ("t1", T0, {"i": 1})])
        await storage.append_records("registry_transition", [("t2", T0 - 1, {"i": 2}), ("t2", T0 + 5, {"i": 3})])
        assert await storage.purge_records_older_than(T0) == 2  # (the cutoff itself is kept)
        assert [b["i"] for _, _, b in await storage.query_records("alert_history", tenant_ids=None)] == [1]
        assert [b["i"] for _, _, b in await storage.query_records("registry_transition", tenant_ids=None)] == [3]
        assert await storage.purge_records_older_than(T0) == 0
    backend(scenario)


def test_audit_rows_are_filtered_and_purged_by_age(backend) -> None:
    async def scenario(storage: Storage) -> None:
        rows = [AuditRecord(T0 - 2 * HOUR, "auth_failure", None, "t1", "10.0.0.1", False, "Invalid token",
                            {"path": "/v1/events"}),
                AuditRecord(T0 - HOUR, "token_created", "admin", "t2", None, True, None, {"token_id": "tok_1"}),
                AuditRecord(T0, "admin_read", "admin", None, "10.0.0.2", True, None, {}),
                AuditRecord(T0 + 1, "auth_failure", "tok_1", "t2", None, False, "Invalid HMAC signature",
                            {"token_id": "tok_1"})]
        await storage.append_audit(rows)
        assert [r.at for r in await storage.query_audit()] == [T0 + 1, T0, T0 - HOUR, T0 - 2 * HOUR]
        assert await storage.query_audit(action="auth_failure", tenant_id="t2") == [rows[3]]
        assert [r.at for r in await storage.query_audit(start_us=T0 - HOUR, end_us=T0 + 1)] == [T0, T0 - HOUR]
        assert [r.at for r in await storage.query_audit(limit=1)] == [T0 + 1]
        assert await storage.purge_audit_older_than(T0 - HOUR) == 1
        assert await storage.purge_audit_older_than(T0 - HOUR) == 0
        assert await storage.query_audit() == rows[:0:-1]  # the rest, intact, newest first
    backend(scenario)


def test_dead_letters_are_kept_listed_newest_first_and_marked_replayed(backend) -> None:
    """The processors' DLQ (GET /v1/dlq, tea dlq replay) on every backend."""
    async def scenario(storage: Storage) -> None:
        older = DeadLetter(id="d1", at=T0, stage="sink", error="RuntimeError: sink down", attempts=3, event_count=2,
                           payload='{"event_id":"a"}\n{"event_id":"b"}\n')
        newer = DeadLetter(id="d2", at=T0 + HOUR, stage="other", error="ValueError: 'ü'", attempts=1, event_count=1,
                           payload='{"event_id":"c","attributes":{"k":"ü"}}\n')
        same_time = DeadLetter(id="d0", at=T0, stage="sink", error="E", attempts=1, event_count=1, payload="{}\n")
        assert await storage.list_dead_letters() == []
        for entry in (older, newer, same_time):
            await storage.add_dead_letter(entry)
        assert await storage.list_dead_letters() == [newer, same_time, older]  # newest first, then by id
        assert await storage.list_dead_letters(limit=2) == [newer, same_time]
        await storage.mark_replayed("d1", T0 + 2 * HOUR)
        await storage.mark_replayed("no-such-entry", T0)  # nothing to mark: no error
        assert await storage.list_dead_letters() == [newer, same_time]
        replayed = msgspec.structs.replace(older, replayed_at=T0 + 2 * HOUR)
        assert await storage.list_dead_letters(include_replayed=True) == [newer, same_time, replayed]
    backend(scenario)


def test_close_is_idempotent(tmp_path: Path) -> None:
    async def scenario() -> None:
        for make in BACKENDS.values():
            storage = make(tmp_path)
            await storage.open()
            await storage.close()
            await storage.close()
    asyncio.run(scenario())


def test_memory_evicts_oldest_past_max_events() -> None:
    async def scenario() -> None:
        storage = MemoryStorage(max_events=3)
        await storage.write_batch(from_wire([ev(f"e{i}", ts=T0 + i) for i in range(5)]))
        assert storage.evicted == 2
        assert sorted(e.event_id for e in await everything(storage)) == ["e2", "e3", "e4"]
        # an evicted id is no longer a duplicate
        assert (await storage.write_batch(from_wire([ev("e0", ts=T0)]))).written == 1
    asyncio.run(scenario())


def test_duckdb_persists_across_reopen_and_versions_its_schema(tmp_path: Path) -> None:
    async def scenario() -> None:
        storage = DuckDBStorage(str(tmp_path / "p.duckdb"))
        await storage.open()
        await storage.write_batch(from_wire([ev("kept")]))
        await storage.close()
        again = DuckDBStorage(str(tmp_path / "p.duckdb"))
        await again.open()
        assert [e.event_id for e in await everything(again)] == ["kept"]
        assert again.schema_version == len(MIGRATIONS) >= 2
        await again.close()
    asyncio.run(scenario())


def _row_groups(path: str, table: str) -> list[int]:
    import duckdb
    with duckdb.connect(path, read_only=True) as con:
        return [n for (n,) in con.execute(
            f"SELECT max(count) FROM pragma_storage_info('{table}') WHERE column_name = 'event_id' "
            "GROUP BY row_group_id ORDER BY row_group_id").fetchall()]


def test_duckdb_row_group_size_applies_to_new_rows_of_an_existing_file(tmp_path: Path) -> None:
    """A file written with DuckDB's own row groups (122 880 rows) takes new rows in the configured size;
    reads (cursors), counts, exports and a reopen see every row."""
    from tea.storage.duckdb.sql import partition_of, partition_table
    path = str(tmp_path / "rg.duckdb")
    table = partition_table(partition_of("t1"))

    async def write(row_group_size: int | None, prefix: str, n: int, exported: int) -> None:
        storage = DuckDBStorage(path, row_group_size=row_group_size)
        await storage.open()
        batch = from_wire([ev(f"{prefix}{i}", ts=T0 + i) for i in range(n)])
        assert (await storage.write_batch(batch)).written == n
        assert await storage.count() == exported
        assert await storage.count(EventFilter(tenant_ids=("t1",))) == exported
        assert len(await everything(storage, event_id=f"{prefix}0")) == 1
        seen = 0
        async for chunk in storage.iter_events(EventFilter(tenant_ids=("t1",)), chunk_rows=4096):
            seen += len(chunk)
        assert seen == exported
        await storage.close()

    asyncio.run(write(None, "old", 5000, 5000))
    assert _row_groups(path, table) == [5000]
    asyncio.run(write(2048, "new", 5000, 10000))  # 2 whole groups of 2048 written straight into the file
    groups = _row_groups(path, table)
    assert sum(groups) == 10000 and groups[0] == 5000 and groups.count(2048) >= 2, groups
    asyncio.run(write(2048, "more", 10, 10010))  # reopened: the rows of both sizes are still there


def test_duckdb_file_held_by_another_process_is_a_storage_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tea.errors import StorageError
    path = str(tmp_path / "held.duckdb")
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time\n"
                               f"c = duckdb.connect({path!r}); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for row_group_size in (None, 16384):
            storage = DuckDBStorage(path, row_group_size=row_group_size)
            with pytest.raises(StorageError, match="cannot open DuckDB file"):
                asyncio.run(storage.open())
    finally:
        holder.kill()
        holder.wait(10)
        holder.stdout.close()  # type: ignore[union-attr]


def test_duckdb_refused_data_raises_storage_data_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        storage = DuckDBStorage(str(tmp_path / "bad.duckdb"))
        await storage.open()
        broken = Batch([b'{"event_type":"x","event_id":"a","tenant_id":"t","timestamp":"soon","received_at":1}\n'],
                       1, 0, 0)
        with pytest.raises(StorageDataError):
            await storage.write_batch(broken)
        assert await storage.count() == 0
        await storage.close()
    asyncio.run(scenario())


def test_duckdb_reads_across_tenants_unite_the_partitions_that_hold_events(tmp_path: Path) -> None:
    """A read across tenants unites only the partitions that may hold events: none on a new file, each one
    a write fills from that write on (a read right after it finds its events), the non-empty ones after a
    reopen — and it finds what a read of every partition finds (the view ``events``)."""
    from tea.storage.duckdb.sql import page_keys, partition_of, partition_table, several_partitions
    from tea.types import AggregateSpec, Agg
    path = str(tmp_path / "live.duckdb")
    tenants = [t for t in (f"t{i}" for i in range(40)) if partition_of(t) != partition_of("t1")]
    other = tenants[0]

    def unites(storage: DuckDBStorage) -> set[int]:
        sql, _ = page_keys(QuerySpec(EventFilter(), limit=10), storage.dialect)
        return {n for n in range(16) if partition_table(n) in sql}

    async def every_partition(storage: DuckDBStorage) -> int:
        return await storage._on_reader(lambda cur: cur.execute("SELECT count(*) FROM events").fetchone()[0])

    async def scenario() -> None:
        storage = DuckDBStorage(path)
        await storage.open()
        assert storage.dialect.live.parts == () and len(await everything(storage)) == 0
        await storage.write_batch(from_wire([ev(f"a{i}", T0 + i) for i in range(5)]))
        assert unites(storage) == {partition_of("t1")} and not several_partitions(EventFilter(), storage._live)
        assert (await storage.query_events(QuerySpec(EventFilter(), limit=2))).total_count == 5
        await storage.write_batch(from_wire([ev(f"b{i}", T0 + 10 + i, tenant=other) for i in range(3)]))
        assert unites(storage) == {partition_of("t1"), partition_of(other)}
        assert several_partitions(EventFilter(), storage._live)
        found = await everything(storage)
        assert [e.event_id for e in found[:3]] == ["b2", "b1", "b0"] and len(found) == 8
        assert (await storage.query_events(QuerySpec(EventFilter(), limit=2))).total_count == 8
        counted = await storage.aggregate(AggregateSpec(EventFilter(), aggs=(Agg("count"),)))
        assert counted[0][-1] == 8 == await every_partition(storage) == await storage.count()
        await storage.close()
        reopened = DuckDBStorage(path)
        await reopened.open()
        assert unites(reopened) == {partition_of("t1"), partition_of(other)}
        assert len(await everything(reopened)) == 8
        await reopened.close()
    asyncio.run(scenario())


def test_duckdb_migrates_an_unpartitioned_file_without_losing_events(tmp_path: Path) -> None:
    import duckdb

    from tea.storage.duckdb.sql import PARTITIONS, partition_of, partition_table
    path = str(tmp_path / "v2.duckdb")
    with duckdb.connect(path) as con:  # a file as schema version 2 left it: one events table
        con.execute("CREATE TABLE tea_schema (version INTEGER NOT NULL)")
        con.execute(MIGRATIONS[0])
        con.execute(MIGRATIONS[1])
        con.execute("INSERT INTO tea_schema VALUES (1), (2)")
        con.execute("INSERT INTO events SELECT 'e' || i, 't' || (i % 7), TIMESTAMP '2026-01-01' + INTERVAL (i) SECOND, "
                    "TIMESTAMP '2026-01-01', 'x', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, i, "
                    "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, [], '{}' FROM range(70) t(i)")

    async def scenario() -> None:
        storage = DuckDBStorage(path)
        await storage.open()
        assert await storage.count() == 70
        assert len(await everything(storage, tenant_ids=("t3",))) == 10
        await storage.write_batch(from_wire([ev("new", tenant="t3")]))
        assert await storage.count(EventFilter(tenant_ids=("t3",))) == 11
        await storage.close()
    asyncio.run(scenario())
    with duckdb.connect(path, read_only=True) as con:
        assert con.execute("SELECT max(version) FROM tea_schema").fetchone()[0] == len(MIGRATIONS)
        for tenant in (f"t{i}" for i in range(7)):
            table = partition_table(partition_of(tenant))
            assert con.execute(f"SELECT count(*) FROM {table} WHERE tenant_id = ?", [tenant]).fetchone()[0] >= 10
        assert sum(con.execute(f"SELECT count(*) FROM {partition_table(n)}").fetchone()[0]
                   for n in range(PARTITIONS)) == 71


def test_duckdb_rebuilds_a_file_of_schema_14_with_attributes_compressed(tmp_path: Path) -> None:
    """v15 copies every partition of a file the previous schema made into one whose attributes are zstd:
    every event and every value stays readable, and the writer's duplicate check still finds the old ones."""
    import duckdb

    from tea.storage.duckdb.sql import PARTITIONS, partition_of, partition_table
    path = str(tmp_path / "v14.duckdb")
    old = [ev(f"e{i}", T0 + i, tenant=f"t{i % 5}", source=f"s{i % 3}", duration_ms=i / 4, tags=["a", f"b{i}"],
              attributes={"k": i, "nested": {"text": "x" * (i % 50)}}, tool="search" if i % 2 else None)
           for i in range(300)]
    with duckdb.connect(path) as con:  # a file as schema version 14 left it, holding the events
        con.execute("CREATE TABLE tea_schema (version INTEGER NOT NULL)")
        for number, step in enumerate(MIGRATIONS[:14], 1):
            step(con) if callable(step) else con.execute(step)
            con.execute("INSERT INTO tea_schema VALUES (?)", [number])

    async def write_old() -> None:  # (with the writer as it is: the rows are what schema 14 holds)
        storage = DuckDBStorage(path)
        storage._migrate = lambda con: None  # type: ignore[method-assign]
        await storage.open()
        await storage.write_batch(from_wire(old))
        await storage.close()
    from tea.storage.duckdb import rollup
    with duckdb.connect(path) as con:  # (the rollup's tables, which the writer marks, only while it writes)
        for ddl in rollup.DDL:
            con.execute(ddl)
    asyncio.run(write_old())
    with duckdb.connect(path) as con:
        con.execute(f"DROP TABLE {rollup.TABLE}")
        con.execute(f"DROP TABLE {rollup.PENDING}")
    with duckdb.connect(path, read_only=True) as con:
        assert "ZSTD" not in con.execute("SELECT sql FROM duckdb_tables() WHERE table_name = 'events_p00'").fetchone()[0]

    async def scenario() -> tuple[list[Event], int]:
        storage = DuckDBStorage(path)
        await storage.open()
        try:
            found = await everything(storage)
            again = await storage.write_batch(from_wire(old[:100] + [ev("new", T0 + 1000, tenant="t1")]))
            return found, again.written
        finally:
            await storage.close()
    found, written = asyncio.run(scenario())
    assert sorted(found, key=lambda e: e.event_id) == sorted(old, key=lambda e: e.event_id)
    assert written == 1  # (the resent old events are found after the rebuild)
    with duckdb.connect(path, read_only=True) as con:
        assert con.execute("SELECT max(version) FROM tea_schema").fetchone()[0] == len(MIGRATIONS)
        for n in range(PARTITIONS):
            assert "attributes JSON USING COMPRESSION ZSTD NOT NULL" in con.execute(
                "SELECT sql FROM duckdb_tables() WHERE table_name = ?", [partition_table(n)]).fetchone()[0]
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 301
        stored = partition_table(partition_of("t1"))
        assert con.execute(f"SELECT DISTINCT compression FROM pragma_storage_info('{stored}') "
                           "WHERE column_name = 'attributes' AND segment_type = 'JSON'").fetchall() == [("ZSTD",)]


def test_duckdb_makes_new_files_in_its_block_size_and_keeps_an_old_files_own(tmp_path: Path) -> None:
    """A file TEA creates has blocks of ``BLOCK_SIZE`` bytes (or of ``duckdb.block_size``); a file made with
    other blocks keeps them and every event, and takes new ones."""
    import duckdb

    from tea.storage.duckdb.store import BLOCK_SIZE
    old_path = str(tmp_path / "old.duckdb")
    with duckdb.connect() as con:  # (a block size TEA would not choose)
        con.execute(f"ATTACH '{old_path}' AS old (BLOCK_SIZE 32768)")
    events = [ev(f"e{i}", T0 + i, tenant=f"t{i % 3}", attributes={"k": i}) for i in range(50)]

    async def scenario(path: str, **options: int) -> list[Event]:
        storage = DuckDBStorage(path, **options)
        await storage.open()
        try:
            await storage.write_batch(from_wire(events[:30]))
            await storage.write_batch(from_wire(events[20:]))
            return await everything(storage)
        finally:
            await storage.close()
    sizes = {}
    for name, path, options in (("old", old_path, {}), ("new", str(tmp_path / "new.duckdb"), {}),
                                ("set", str(tmp_path / "set.duckdb"), {"block_size": 65_536})):
        found = asyncio.run(scenario(path, **options))
        assert sorted(found, key=lambda e: e.event_id) == sorted(events, key=lambda e: e.event_id)
        with duckdb.connect(path, read_only=True) as con:
            sizes[name] = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0]
    assert sizes == {"old": 32_768, "new": BLOCK_SIZE, "set": 65_536}
