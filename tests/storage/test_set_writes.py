"""Projection rows are stored once, and every write is one set-based statement, on every backend."""
from __future__ import annotations

import asyncio
import pathlib
import re
import uuid

import msgspec
import pytest

from tea.storage.base import Storage
from tea.storage.capabilities import WritesRowSets
from tea.storage.duckdb.store import DuckDBStorage
from tea.storage.projections import ROWS, EndpointUsageRow, FeatureUsageRow, UserActivityRow, as_dict
from tests.storage.test_contract import HOUR, T0, backend  # noqa: F401 — the fixture, parametrized over backends

STORAGE = pathlib.Path(__file__).parents[2] / "tea" / "storage"


def endpoint_row(n: int, tenant: str = "t1", ts: int = T0, row_id: str | None = None, **fields) -> dict:
    row = {"tenant_id": tenant, "id": row_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{n}")),
           "timestamp": ts + n, "user_id": f"u{n % 7}", "organization_id": None, "deployment_type": "cloud",
           "event_metadata": {"n": n, "nested": {"list": [1, 2.5, None, "é"]}}, "created_at": T0 + HOUR,
           "endpoint": f"/api/{n % 5}", "method": "GET", "status_code": 200 + n % 3, "duration_ms": n / 4}
    row.update(fields)
    return row


async def stored(storage: Storage, table: str = "endpoint_usage", tenants: tuple[str, ...] | None = None) -> list[dict]:
    return await storage.query_rows(table, tenant_ids=tenants, filters={}, limit=100_000)


def test_projection_rows_written_twice_are_stored_once(backend) -> None:
    rows = [endpoint_row(n) for n in range(50)]

    async def scenario(storage: Storage) -> None:
        await storage.write_rows("endpoint_usage", rows)
        await storage.write_rows("endpoint_usage", rows)  # a replay of the same events
        await storage.write_rows("endpoint_usage", rows[10:20] + [endpoint_row(50)])  # overlapping, one new
        got = await stored(storage)
        assert sorted(r["id"] for r in got) == sorted(r["id"] for r in rows + [endpoint_row(50)])
        summary = await storage.projection_report("summary", tenant_ids=None, since_us=0)
        assert {s["table_name"]: s["count"] for s in summary}["endpoint_usage"] == 51
    backend(scenario)


def test_repeats_within_one_write_collapse_to_the_first(backend) -> None:
    first = endpoint_row(1, endpoint="/first", status_code=201)
    again = endpoint_row(1, endpoint="/again", status_code=500)  # same tenant, id and timestamp
    other_tenant = endpoint_row(1, tenant="t2")
    later = endpoint_row(1, ts=T0 + 2 * HOUR)  # same id, another time: another row (see projections.IDENTITY)

    async def scenario(storage: Storage) -> None:
        await storage.write_rows("endpoint_usage", [first, again, other_tenant, again, later])
        got = await stored(storage)
        assert sorted((r["tenant_id"], r["timestamp"], r["endpoint"]) for r in got) == [
            ("t1", T0 + 1, "/first"), ("t1", T0 + 2 * HOUR + 1, "/api/1"), ("t2", T0 + 1, "/api/1")]
        await storage.write_rows("endpoint_usage", [again])
        assert len(await stored(storage, tenants=("t1",))) == 2
    backend(scenario)


def test_every_projection_table_keeps_every_value_of_a_large_write(backend) -> None:
    rows = [endpoint_row(n, tenant=f"t{n % 3}") for n in range(3000)]
    activity = [{"tenant_id": "t1", "id": str(uuid.uuid4()), "timestamp": T0 + n, "user_id": None,
                 "organization_id": "o1", "deployment_type": None, "event_metadata": None, "created_at": T0,
                 "event_type": "login" if n % 2 else "logout", "session_id": f"s-{n}"} for n in range(40)]
    features = [{"tenant_id": "t1", "id": str(uuid.uuid4()), "timestamp": T0 + n, "user_id": "u",
                 "organization_id": None, "deployment_type": "self-hosted", "event_metadata": {"page.path": "/x"},
                 "created_at": T0, "feature_name": "page_view", "action": None} for n in range(40)]

    async def scenario(storage: Storage) -> None:
        await storage.write_rows("endpoint_usage", rows)
        await storage.write_rows("user_activity", activity)
        await storage.write_rows("feature_usage", features)
        got = {r["id"]: r for r in await stored(storage)}
        assert len(got) == 3000
        for row in rows[::97]:
            assert got[row["id"]] == row
        for table, written in (("user_activity", activity), ("feature_usage", features)):
            back = {r["id"]: r for r in await stored(storage, table)}
            assert back == {r["id"]: r for r in written}
    backend(scenario)


def test_documents_put_together_replace_by_key(backend) -> None:
    async def scenario(storage: Storage) -> None:
        put_many = getattr(storage, "put_documents")
        await put_many("entity", [("t1", "a", {"n": 1}), ("t1", "b", {"n": 2}), ("t2", "a", {"n": 3})])
        await put_many("entity", [("t1", "a", {"n": 4}), ("t1", "a", {"n": 5}), ("t1", "c", {"n": 6})])
        assert await storage.list_documents("entity", None) == [
            ("t1", "a", {"n": 5}), ("t1", "b", {"n": 2}), ("t1", "c", {"n": 6}), ("t2", "a", {"n": 3})]
        await put_many("entity", [])
        assert len(await storage.list_documents("entity", None)) == 4
    backend(scenario)


def test_no_storage_module_writes_row_by_row() -> None:
    """executemany, or an execute inside a loop over rows, is a statement per row: none in tea/storage."""
    offenders = []
    for path in sorted(STORAGE.rglob("*.py")):
        text = path.read_text()
        if "executemany(" in text:
            offenders.append(f"{path.name}: executemany")
        for match in re.finditer(r"\n( *)for [^\n]+:\n((?:\1 [^\n]*\n)+)", text):
            body = match.group(2).replace("INSERT INTO tea_schema", "")  # (a migration's version number)
            if re.search(r"\.execute\([^)]*\b(INSERT|UPSERT)\b", body):
                offenders.append(f"{path.name}: INSERT in a loop: {match.group(0).strip()[:80]}")
    assert offenders == []


def test_tokens_are_saved_replaced_and_found_with_their_exact_secret(backend) -> None:
    from tea.types import TokenRecord
    token = TokenRecord("tok_1", "hash-1", "tea_ab", "t1", "enterprise", ["read", "write"], b"\x00\xff\n'\"\\",
                        T0, org_id="o", app_id=None)

    async def scenario(storage: Storage) -> None:
        await storage.save_token(token)
        await storage.save_token(TokenRecord("tok_2", "hash-2", "tea_cd", "t2", "free", [], b"", T0 + 1))
        assert await storage.find_token(token_hash="hash-1") == token
        rotated = TokenRecord("tok_1", "hash-3", "tea_ef", "t1", "enterprise", ["read"], b"\x01" * 60, T0,
                              org_id="o", rotated_at=T0 + 5)
        await storage.save_token(rotated)  # replaced by id, its hash (a UNIQUE column) changed
        assert await storage.find_token(token_id="tok_1") == rotated
        assert await storage.find_token(token_hash="hash-1") is None
        assert [t.token_id for t in await storage.list_tokens()] == ["tok_2", "tok_1"]
    backend(scenario)


def test_duckdb_memory_is_bounded_by_default(tmp_path: pathlib.Path) -> None:
    import asyncio

    import duckdb

    from tea.storage.duckdb import DuckDBStorage
    from tea.storage.duckdb.memory import MiB, default_memory_limit
    assert default_memory_limit(512 * MiB) == "256MiB"          # the floor
    assert default_memory_limit(4096 * MiB) == "512MiB"         # an eighth
    assert default_memory_limit(64 * 1024 * MiB) == "1024MiB"   # the ceiling

    async def scenario() -> str:
        storage = DuckDBStorage(str(tmp_path / "m.duckdb"))
        await storage.open()
        limit = storage._con.execute("SELECT current_setting('memory_limit')").fetchone()[0]  # type: ignore[union-attr]
        await storage.close()
        return limit
    with duckdb.connect(config={"memory_limit": default_memory_limit()}) as con:
        expected = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert asyncio.run(scenario()) == expected != "0 bytes"


def test_postgres_upgrade_keeps_one_of_each_projection_row_stored_twice(postgres_server) -> None:
    import psycopg

    from tea import migrations
    url = postgres_server.fresh_url()
    migrations.upgrade(url, "0007")
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(2):  # the same derived row stored twice, and another row
            conn.execute("INSERT INTO endpoint_usage (tenant_id, id, \"timestamp\", created_at, endpoint) VALUES "
                         "('t1', '00000000-0000-5000-8000-000000000001', 1, 1, '/x')")
        conn.execute("INSERT INTO endpoint_usage (tenant_id, id, \"timestamp\", created_at, endpoint) VALUES "
                     "('t1', '00000000-0000-5000-8000-000000000002', 1, 1, '/x')")
    migrations.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM endpoint_usage").fetchone() == (2,)


@pytest.mark.slow  # (a 2 M-row table and six heavy queries: ~10 s of CPU)
def test_duckdb_cache_trims_after_writes_never_starve_a_running_query(tmp_path: pathlib.Path, monkeypatch) -> None:
    """Trimming lowers DuckDB's memory limit for a moment: never while a query runs (it failed with "Out of
    Memory" when a write's trim met a query that was allocating)."""
    import asyncio

    import tea.storage.duckdb.store as duckdb_storage
    from tea.types import AuditRecord
    monkeypatch.setattr(duckdb_storage, "CACHE_TRIM_INTERVAL_S", 0.0)  # a trim after every write

    async def scenario() -> list[str]:
        storage = duckdb_storage.DuckDBStorage(str(tmp_path / "t.duckdb"), cache_bytes=1 << 20)
        await storage.open()
        await storage._on_writer(lambda: storage._con.execute(  # type: ignore[union-attr]
            "CREATE TABLE big AS SELECT i, random() AS x, md5(i::VARCHAR) AS h FROM range(2000000) t(i)"))
        errors: list[str] = []

        async def reads() -> None:
            for _ in range(6):
                try:
                    await storage._on_reader(lambda cur: cur.execute(
                        "SELECT h, quantile_cont(x, 0.95) FROM big GROUP BY h ORDER BY 2 DESC LIMIT 3").fetchall())
                except Exception as exc:  # noqa: BLE001 — collected, asserted below
                    errors.append(repr(exc)[:200])

        async def writes() -> None:
            for i in range(300):
                await storage.append_audit([AuditRecord(i, "probe")])
        await asyncio.gather(reads(), writes())
        assert len(await storage.query_audit(limit=1000)) == 300
        await storage.close()
        return errors
    assert asyncio.run(scenario()) == []


def test_duckdb_row_sets_store_what_write_rows_stores(tmp_path: pathlib.Path) -> None:
    """DuckDB's ``write_row_sets`` (every table staged at once, Row structs) stores the rows ``write_rows`` stores
    table by table, as dicts: repeats within a write and rows stored already are kept once, the first one."""
    activity = [UserActivityRow("t1", str(uuid.uuid5(uuid.NAMESPACE_URL, f"a{n}")), T0 + n, None, "o1", None, T0,
                                {"n": n} if n % 2 else None, "login", f"s-{n}") for n in range(30)]
    features = [FeatureUsageRow("t2", str(uuid.uuid5(uuid.NAMESPACE_URL, f"f{n}")), T0 + n, "u", None, "cloud", T0,
                                {"page.path": "/x", "list": [1, 2.5, None, "é"]}, "page_view", None) for n in range(30)]
    endpoints = [EndpointUsageRow(**endpoint_row(n)) for n in range(40)]
    again = msgspec.structs.replace(endpoints[3], endpoint="/again")  # same identity: the first one is kept
    upper = msgspec.structs.replace(endpoints[5], id=endpoints[5].id.upper(), endpoint="/upper")
    writes = [{"user_activity": activity[:20], "endpoint_usage": endpoints[:20] + [again]},
              {"user_activity": activity, "endpoint_usage": endpoints + [upper], "feature_usage": features},
              {"feature_usage": features[:5]}, {"endpoint_usage": [], "user_activity": []}]

    async def main() -> dict[str, dict[str, list[dict]]]:
        found = {}
        for name, sets in (("row sets", True), ("write_rows", False)):
            storage = DuckDBStorage(str(tmp_path / f"{name}.duckdb"))
            await storage.open()
            try:
                assert isinstance(storage, WritesRowSets)
                for tables in writes:
                    if sets:
                        await storage.write_row_sets(tables)
                    else:
                        for table, rows in tables.items():
                            await storage.write_rows(table, [as_dict(row) for row in rows])
                found[name] = {table: sorted(await stored(storage, table), key=lambda r: r["id"]) for table in ROWS}
            finally:
                await storage.close()
        return found
    found = asyncio.run(main())
    assert found["row sets"] == found["write_rows"]
    assert [len(found["row sets"][t]) for t in ("user_activity", "endpoint_usage", "feature_usage")] == [30, 40, 30]
    assert "/again" not in {r["endpoint"] for r in found["row sets"]["endpoint_usage"]}
    assert "/upper" not in {r["endpoint"] for r in found["row sets"]["endpoint_usage"]}
    assert {r["id"]: r for r in found["row sets"]["feature_usage"]} == {f.id: as_dict(f) for f in features}
