"""ClickHouse specifics: aggregates against the brute-force reference, retention by dropped partitions,
ReplacingMergeTree collapsing what two nodes wrote at once, and the dialect on a current ClickHouse:
every statement the backend sent to the 18.16 server is replayed, with its data, in chdb."""
from __future__ import annotations

import asyncio
import random
import tempfile
from typing import Any

import msgspec
import pytest

from tea.storage.clickhouse import sql as clickhouse_sql
from tea.storage.clickhouse import ClickHouseStorage
from tea.types import Agg, AggregateSpec, AuditRecord, Batch, DeadLetter, Event, EventFilter, QuerySpec, TokenRecord
from tests.storage.test_aggregate_contract import AGGS, HOUR, T0, as_map, assert_same, make_events, reference

DAY = 24 * HOUR


def run(url: str, body: Any, **options: Any) -> Any:
    async def main() -> Any:
        storage = ClickHouseStorage(url, **options)
        await storage.open()
        try:
            return await body(storage)
        finally:
            await storage.close()
    return asyncio.run(main())


def batch(events: list[Event]) -> Batch:
    whole = Batch.from_events(events)
    return Batch([whole.ndjson()], whole.count, whole.min_ts, whole.max_ts)


def ev(event_id: str, ts: int, tenant: str = "t1", **fields: Any) -> Event:
    return Event(event_type=fields.pop("event_type", "x"), event_id=event_id, tenant_id=tenant, timestamp=ts,
                 received_at=ts, attributes=msgspec.Raw(b"{}"), **fields)


SPECS = [AggregateSpec(EventFilter(tenant_ids=tenant, start_us=start, end_us=end), AGGS, bucket, groups, top, top_by)
         for bucket in (None, "minute", "hour", "day", "week", "month")
         for groups, top, top_by in (((), None, Agg("count")), (("method",), 2, Agg("count")),
                                     (("status", "tenant_id"), None, Agg("count")),
                                     (("target", "user_id"), 3, Agg("count")), (("user_id",), 2, Agg("errors")),
                                     (("method", "target"), 3, Agg("max", "duration_ms")))
         for tenant, start, end in ((None, None, None), (("t1",), T0 + 3 * HOUR, T0 + 50 * HOUR))]


def test_aggregates_match_the_brute_force_reference(clickhouse_server) -> None:
    events = make_events(random.Random(11), 3000, 70 * DAY)
    stamps = [T0, T0 - 1, T0 + HOUR, T0 + HOUR - 1, T0 + 4 * DAY, T0 + 31 * DAY, T0 + 59 * DAY - 1]
    events += [ev(f"edge{i}", ts) for i, ts in enumerate(stamps)]  # bucket edges, a month and a leap day

    async def body(storage: ClickHouseStorage) -> None:
        await storage.write_batch(batch(events))
        for spec in SPECS:
            assert_same(as_map(await storage.aggregate(spec), spec), reference(events, spec))
        assert await storage.aggregate(AggregateSpec(EventFilter(tenant_ids=()), AGGS, "hour", ("method",), 3)) == []
    run(clickhouse_server.fresh_url(), body)


def test_iter_events_streams_chunks_and_traces_summarise_spans(clickhouse_server) -> None:
    events = make_events(random.Random(3), 2500, 10 * HOUR)
    spans = [ev("s1", T0, event_type="span", trace_id="tr", span_id="a", method="GET /", source="web",
                duration_ms=20.0),
             ev("s2", T0 + 1000, event_type="span", trace_id="tr", span_id="b", parent_span_id="a", source="db",
                status="error", duration_ms=5.0)]

    async def body(storage: ClickHouseStorage) -> None:
        await storage.write_batch(batch(events + spans))
        chunks = [c async for c in storage.iter_events(EventFilter(tenant_ids=("t2",)), chunk_rows=300)]
        assert all(0 < len(c) <= 300 for c in chunks)
        assert sorted(e.event_id for c in chunks for e in c) == sorted(e.event_id for e in events if e.tenant_id == "t2")
        (trace,) = await storage.traces(EventFilter(tenant_ids=("t1",)), service="db", errors=True)
        assert (trace.start_us, trace.end_us, trace.span_count, trace.error_count) == (T0, T0 + 20_000, 2, 1)
        assert (trace.root_name, trace.root_service, trace.services) == ("GET /", "web", ("db", "web"))
        assert await storage.traces(EventFilter(), errors=False) == []
    run(clickhouse_server.fresh_url(), body)


def test_retention_drops_whole_day_partitions_and_deletes_the_boundary_day(clickhouse_server) -> None:
    url = clickhouse_server.fresh_url()
    database = url.rsplit("/", 1)[1]
    partitions = (f"SELECT DISTINCT partition FROM system.parts WHERE database = '{database}' AND table = 'events' "
                  "AND active ORDER BY partition")
    events = [ev(f"d{day}-{i}", T0 + day * DAY + i * HOUR, tenant=f"t{i % 2}") for day in range(4) for i in range(6)]

    async def body(storage: ClickHouseStorage) -> None:
        await storage.write_batch(batch(events))
        assert clickhouse_server.query(partitions).split() == ["20260101", "20260102", "20260103", "20260104"]
        assert await storage.purge_older_than(T0 + 2 * DAY + 3 * HOUR) == 15  # two whole days, 3 of the third
        assert clickhouse_server.query(partitions).split() == ["20260103", "20260104"]
        assert await storage.count() == 9
        # a tenant's own retention is a mutation: the other tenant's rows stay
        assert await storage.purge_older_than(T0 + 4 * DAY, tenant_ids=("t1",)) == 5
        assert await storage.purge_older_than(T0 + 4 * DAY, exclude_tenant_ids=("t0",)) == 0
        assert sorted(e.tenant_id for e in (await storage.query_events(QuerySpec(limit=100))).events) == ["t0"] * 4
    run(url, body)


def test_replacing_merge_tree_collapses_what_two_nodes_wrote_at_once(clickhouse_server) -> None:
    url = clickhouse_server.fresh_url()
    events = [ev(f"e{i}", T0 + i * 1000, tenant=f"t{i % 3}", duration_ms=float(i)) for i in range(50)]

    async def body(first: ClickHouseStorage) -> None:
        second = ClickHouseStorage(url, final_reads=True)
        await second.open()
        try:
            second._stored_times = lambda *args: {}  # type: ignore[method-assign]  # both checked before either wrote
            assert (await first.write_batch(batch(events))).written == 50
            assert (await second.write_batch(batch(events[:20]))).written == 20
            assert (await first.write_batch(batch(events))).written == 0  # the write-time check still holds
            assert await second.count() == 50  # FINAL: exact before any merge
            total = await second.aggregate(AggregateSpec(EventFilter(), (Agg("count"), Agg("sum", "duration_ms"))))
            assert total == [(None, 50, float(sum(range(50))))]
            assert len((await second.query_events(QuerySpec(limit=1000))).events) == 50
            clickhouse_server.query(f"OPTIMIZE TABLE {url.rsplit('/', 1)[1]}.events FINAL")
            assert await first.count() == 50  # merged: exact without FINAL too
        finally:
            await second.close()
    run(url, body)


def test_missing_url_is_a_one_line_config_error(tmp_path) -> None:
    from tea.errors import ConfigError
    from tests.conftest import make_settings
    with pytest.raises(ConfigError, match="TEA_CLICKHOUSE_URL"):
        ClickHouseStorage.from_settings(make_settings(tmp_path, storage_backend="clickhouse"))


def test_unreachable_server_is_a_transient_storage_error() -> None:
    from tea.errors import StorageDataError, StorageError
    from tests.conftest import free_port
    storage = ClickHouseStorage(f"clickhouse://default@127.0.0.1:{free_port()}/tea", timeout_s=2)
    with pytest.raises(StorageError) as caught:
        asyncio.run(storage.open())
    assert not isinstance(caught.value, StorageDataError)
    asyncio.run(storage.close())


# ---------------------------------------------------------------- the same SQL on a current ClickHouse (chdb)
def _array(values: list[Any]) -> str:
    return "[" + ", ".join(clickhouse_sql.lit(v) for v in values) + "]"


def _values(rows: list[Any], columnar: bool) -> str:
    if columnar:
        rows = list(zip(*rows))
    rendered = []
    for row in rows:
        items = row.values() if isinstance(row, dict) else row
        rendered.append("(" + ", ".join(_array(v) if isinstance(v, list) else clickhouse_sql.lit(v) for v in items) + ")")
    return ", ".join(rendered)


class Recorder:
    """Wraps ``Client.execute``: what the backend sent (statement, data, external tables), in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from clickhouse_driver import Client
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []
        original = Client.execute

        def execute(client: Any, query: str, params: Any = None, **kwargs: Any) -> Any:
            self.calls.append((query, params, kwargs))
            return original(client, query, params, **kwargs)
        monkeypatch.setattr(Client, "execute", execute)


async def _every_method(storage: ClickHouseStorage) -> None:
    events = make_events(random.Random(5), 400, 40 * DAY)
    events.append(ev("q'uote\\", T0, source="o'neil", tags=["a", "b'"], trace_id="tr", event_type="span"))
    await storage.write_batch(batch(events))
    await storage.write_batch(batch(events[:50]))  # duplicates: the lookup finds stored keys
    for spec in SPECS[::5]:
        await storage.aggregate(spec)
    page = await storage.query_events(QuerySpec(EventFilter(tenant_ids=("t1", "t2"), status="error"), limit=5))
    await storage.query_events(QuerySpec(EventFilter(), limit=5, after=page.next_cursor))
    await storage.count(EventFilter(event_id="e1", start_us=T0))
    await storage.traces(EventFilter(), service="s1", min_duration_ms=1.0, errors=True)
    await storage.existing_event_keys("t1", ["e1", "e2"], T0, T0 + DAY)
    await storage.set_retention_override("t1", 48)
    await storage.retention_overrides()
    await storage.save_token(TokenRecord("tok", "hash", "tea_", "t1", "free", ["read"], b"\x00\xff", T0))
    await storage.find_token(token_hash="hash")
    await storage.list_tokens("t1")
    await storage.append_audit([AuditRecord(T0, "admin_read", "admin", "t1", "127.0.0.1", True, None, {"k": "v"})])
    await storage.query_audit(action="admin_read", start_us=T0)
    await storage.add_dead_letter(DeadLetter("d1", T0, "stage", "boom", 3, 1, "{}\n"))
    await storage.mark_replayed("d1", T0 + 1)
    await storage.list_dead_letters(include_replayed=True)
    row = {"tenant_id": "t1", "id": "0f0e", "timestamp": T0, "user_id": "u", "organization_id": None,
           "deployment_type": None, "event_metadata": {"a": 1}, "created_at": T0, "endpoint": "/x", "method": None,
           "status_code": 200, "duration_ms": 1.5}
    await storage.write_rows("endpoint_usage", [row])
    await storage.query_rows("endpoint_usage", tenant_ids=("t1",), filters={"endpoint": "/x"}, start_us=T0)
    for report in ("summary", "recent_activity", "top_endpoints"):
        await storage.projection_report(report, tenant_ids=("t1",), since_us=0)
    await storage.put_document("entity", "t1", "k", {"n": 1})
    await storage.delete_document("entity", "t1", "k")
    await storage.append_records("audit", [("t1", T0, {"action": "x"})])
    await storage.query_records("audit", tenant_ids=("t1",), filters={"action": "x"}, start_us=0, end_us=T0 + 1)
    await storage.purge_older_than(T0 + 20 * DAY)
    await storage.purge_older_than(T0 + 30 * DAY, tenant_ids=("t1",), exclude_tenant_ids=("t2",))
    async for _ in storage.iter_events(EventFilter(tenant_ids=("t3",))):
        pass


def test_every_statement_also_runs_on_current_clickhouse(clickhouse_server, monkeypatch) -> None:
    chdb_session = pytest.importorskip("chdb.session")
    recorder = Recorder(monkeypatch)
    run(clickhouse_server.fresh_url(), _every_method)
    # (execute_iter, used by iter_events, is not recorded: replay its query text directly)
    iterated = f"SELECT {clickhouse_sql.SELECT_EVENTS}{clickhouse_sql.scan(EventFilter(tenant_ids=('t3',)))}"
    session = chdb_session.Session(tempfile.mkdtemp(prefix="tea-chdb-"))
    session.query("CREATE DATABASE IF NOT EXISTS tea")
    session.query("USE tea")
    kinds: set[str] = set()
    for query, data, options in [*recorder.calls, (iterated, None, {})]:
        for table in options.get("external_tables") or ():
            columns = ", ".join(f"{name} {kind}" for name, kind in table["structure"])
            session.query(f"CREATE TABLE IF NOT EXISTS {table['name']} ({columns}) ENGINE = Memory")
            session.query(f"TRUNCATE TABLE {table['name']}")
            session.query(f"INSERT INTO {table['name']} VALUES {_values(table['data'], False)}")
        if data is not None:
            query = f"{query} {_values(data, bool(options.get('columnar')))}"
        try:
            session.query(query, "TSV")
        except Exception as exc:  # noqa: BLE001 — name the statement that failed
            raise AssertionError(f"chdb refused: {query[:300]}\n{exc}") from None
        kinds.add(query.split()[0].upper())
    assert {"CREATE", "INSERT", "SELECT", "ALTER"} <= kinds and len(recorder.calls) > 60
    assert session.query("SELECT count() FROM events", "TSV").bytes().strip() != b"0"


def test_projection_rows_two_nodes_wrote_at_once_read_once_with_final(clickhouse_server) -> None:
    url = clickhouse_server.fresh_url()
    rows = [{"tenant_id": f"t{i % 2}", "id": f"00000000-0000-5000-8000-{i:012d}", "timestamp": T0 + i,
             "user_id": "u", "organization_id": None, "deployment_type": "cloud", "event_metadata": {"i": i},
             "created_at": T0, "endpoint": "/x", "method": "GET", "status_code": 200, "duration_ms": 1.0}
            for i in range(30)]

    async def body(first: ClickHouseStorage) -> None:
        second = ClickHouseStorage(url, final_reads=True)
        await second.open()
        try:
            second._stored_rows = lambda *args: set()  # type: ignore[method-assign]  # both checked before either wrote
            await first.write_rows("endpoint_usage", rows)
            await second.write_rows("endpoint_usage", rows[:10])
            await first.write_rows("endpoint_usage", rows)  # the write-time check still holds
            read = await second.query_rows("endpoint_usage", tenant_ids=None, filters={}, limit=1000)
            assert sorted(r["id"] for r in read) == sorted(r["id"] for r in rows)  # FINAL: exact before any merge
            summary = await second.projection_report("summary", tenant_ids=None, since_us=0)
            assert summary[1] == {"table_name": "endpoint_usage", "count": 30}
            clickhouse_server.query(f"OPTIMIZE TABLE {url.rsplit('/', 1)[1]}.endpoint_usage FINAL")
            assert len(await first.query_rows("endpoint_usage", tenant_ids=None, filters={}, limit=1000)) == 30
        finally:
            await second.close()
    run(url, body)
