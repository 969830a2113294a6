"""Storage backends at scale: ``python -m bench.backends [--events N] [--duration S]`` from the project root.

For PostgreSQL and ClickHouse — throwaway servers from the Debian packages, started the way the
tests start them (temp dir, free loopback port) — and DuckDB for reference, in one run:

1. TEA's write path: ``storage.write_batch`` of writer-sized batches (the buffer's NDJSON, 50 000
   events each, the core benchmark's events) into a fresh database → rows/s (dedup check included).
2. The engine's own bulk insert of the same events into a bare table with the same columns —
   PostgreSQL ``COPY … FROM STDIN``, ClickHouse HTTP ``INSERT … FORMAT JSONEachRow``, DuckDB
   ``read_json`` — → rows/s, and the ratio 1/2.
3. The core benchmark's (a) phase against ``tea serve`` on that backend: 1 000-event POSTs from a
   separate load process, durable ack → events/s acknowledged and stored.
4. The metrics benchmark's query (one tenant, hourly, per method: requests, avg, p95) through
   ``storage.aggregate`` on what (1) stored → p50 ms over 20 calls.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import urllib.parse
import urllib.request
from typing import Any

from bench import events as bench_events
from bench import phases
from tea.storage.base import Storage
from tea.types import Agg, AggregateSpec, Batch, EventFilter

BATCH = 50_000


def batches(total: int) -> list[tuple[bytes, int, int]]:
    base = bench_events.base_events(BATCH)
    out = []
    first = bench_events.now_us() - 23 * 3_600_000_000
    for n in range(max(1, total // BATCH)):
        start = first + n * BATCH * 1000  # spread over the day: 1 ms apart
        data = bench_events.stored_ndjson(base, start)
        out.append((data, start, start + BATCH - 1))
    return out


async def write_path(storage: Storage, data: list[tuple[bytes, int, int]]) -> float:
    await storage.open()
    started = time.perf_counter()
    written = 0
    for ndjson, low, high in data:
        written += (await storage.write_batch(Batch([ndjson], BATCH, low, high))).written
    seconds = time.perf_counter() - started
    assert written == BATCH * len(data), f"wrote {written}"
    return written / seconds


async def query_p50(storage: Storage) -> float:
    spec = AggregateSpec(EventFilter(tenant_ids=("t3",)),
                         (Agg("count"), Agg("avg", "duration_ms"), Agg("quantile", "duration_ms", 0.95)),
                         "hour", ("method",))
    samples = []
    for i in range(22):
        started = time.perf_counter()
        rows = await storage.aggregate(spec)
        if i >= 2:
            samples.append((time.perf_counter() - started) * 1000)
    assert rows
    return statistics.median(samples)


def postgres_bulk(url: str, data: list[tuple[bytes, int, int]]) -> float:
    import psycopg
    columns = ["event_id", "tenant_id", "timestamp", "received_at", "event_type", "user_id", "method",
               "duration_ms", "status_code", "request_size", "response_size", "attributes"]
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("CREATE TABLE bare (event_id text, tenant_id text, timestamp timestamptz, received_at timestamptz, "
                    "event_type text, user_id text, method text, duration_ms double precision, status_code int, "
                    "request_size bigint, response_size bigint, attributes jsonb)")
        rows_per_batch = []
        for ndjson, _, _ in data:  # decoding is not timed
            rows = []
            for line in ndjson.splitlines():
                e = json.loads(line)
                rows.append((e["event_id"], e["tenant_id"], _ts(e["timestamp"]), _ts(e["received_at"]), e["event_type"],
                             e["user_id"], e["method"], e["duration_ms"], e["status_code"], e["request_size"],
                             e["response_size"], json.dumps(e["attributes"])))
            rows_per_batch.append(rows)
        started = time.perf_counter()
        for rows in rows_per_batch:
            with con.cursor() as cur, cur.copy(f"COPY bare ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return sum(len(r) for r in rows_per_batch) / (time.perf_counter() - started)


def _ts(us: int) -> Any:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(us / 1e6, timezone.utc)


def clickhouse_bulk(http_port: int, database: str, data: list[tuple[bytes, int, int]]) -> float:
    def post(sql: str, body: bytes = b"") -> None:
        query = urllib.parse.quote(sql)
        request = urllib.request.Request(f"http://127.0.0.1:{http_port}/?database={database}&query={query}",
                                         data=body or None, method="POST")
        urllib.request.urlopen(request, timeout=300).read()
    post("CREATE TABLE bare (event_id String, tenant_id String, timestamp Int64, received_at Int64, "
         "event_type String, user_id String, method String, duration_ms Float64, status_code Int32, "
         "request_size Int64, response_size Int64, attributes String) "
         "ENGINE = MergeTree ORDER BY (tenant_id, event_type, timestamp)")
    bodies = []
    for ndjson, _, _ in data:  # 18.16 stores no JSON object into a String: re-encode attributes (not timed)
        lines = []
        for line in ndjson.splitlines():
            e = json.loads(line)
            e["attributes"] = json.dumps(e["attributes"])
            lines.append(json.dumps(e))
        bodies.append("\n".join(lines).encode() + b"\n")
    started = time.perf_counter()
    for body in bodies:
        post("INSERT INTO bare FORMAT JSONEachRow", body)
    return len(data) * BATCH / (time.perf_counter() - started)


def duckdb_bulk(total: int) -> float:
    from bench import duckload
    return duckload.bulk_load(total)["rows_per_s"]


def http_phase(env: dict[str, str], duration: float) -> dict:
    cfg = phases.Config(duration=duration, drain_timeout=120.0, tea_env=env, work_dir=tempfile.gettempdir())
    result = phases.tea_batch_phase(cfg)
    return {"acked_per_s": result["load"]["events_acked"] / result["load"]["seconds"],
            "stored_per_s": result["stored"]["events_per_s"], "stored_complete": result["stored"]["complete"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of HTTP load per backend")
    parser.add_argument("--backends", default="postgres,clickhouse,duckdb")
    args = parser.parse_args()
    from tests.services import ClickHouseServer, PostgresServer

    data = batches(args.events)
    print(f"{len(data) * BATCH:,} events in {len(data)} batches of {BATCH:,}")
    results: dict[str, dict[str, Any]] = {}
    for backend in args.backends.split(","):
        print(f"--- {backend}")
        server: Any = None
        try:
            if backend == "postgres":
                from tea.storage.postgres import PostgresStorage
                server = PostgresServer()
                storage: Storage = PostgresStorage(server.fresh_url())
                bulk = postgres_bulk(server.fresh_url(), data)
                env = {"TEA_STORAGE_BACKEND": "postgres", "TEA_POSTGRES_URL": server.fresh_url()}
            elif backend == "clickhouse":
                from tea.storage.clickhouse import ClickHouseStorage
                server = ClickHouseServer()
                storage = ClickHouseStorage(server.fresh_url())
                bulk_db = server.fresh_url().rsplit("/", 1)[1]
                bulk = clickhouse_bulk(server.http_port, bulk_db, data)
                env = {"TEA_STORAGE_BACKEND": "clickhouse", "TEA_CLICKHOUSE_URL": server.fresh_url()}
            else:
                from tea.storage.duckdb import DuckDBStorage
                tmp = tempfile.mkdtemp(prefix="tea-bench-backends-")
                storage = DuckDBStorage(f"{tmp}/b.duckdb")
                bulk = duckdb_bulk(len(data) * BATCH)
                env = {}

            async def tea_side() -> tuple[float, float]:
                try:
                    rate = await write_path(storage, data)
                    return rate, await query_p50(storage)
                finally:
                    await storage.close()
            write_rate, p50 = asyncio.run(tea_side())
            http = http_phase(env, args.duration)
            results[backend] = {"write_path_rows_per_s": write_rate, "engine_bulk_rows_per_s": bulk,
                                "ratio": write_rate / bulk, "query_p50_ms": p50, **http}
            print(json.dumps(results[backend], indent=1))
        finally:
            if server is not None:
                server.close()
    print()
    print(f"{'backend':<11}{'TEA write rows/s':>17}{'engine bulk rows/s':>20}{'ratio':>7}"
          f"{'HTTP acked/s':>14}{'HTTP stored/s':>15}{'query p50 ms':>14}")
    for name, r in results.items():
        print(f"{name:<11}{r['write_path_rows_per_s']:>17,.0f}{r['engine_bulk_rows_per_s']:>20,.0f}{r['ratio']:>7.2f}"
              f"{r['acked_per_s']:>14,.0f}{r['stored_per_s']:>15,.0f}{r['query_p50_ms']:>14.1f}")


if __name__ == "__main__":
    main()
