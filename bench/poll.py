"""CPU of a dashboard's poll across tenants: ``python -m bench.poll [--events 1000000] [--tenants 12]``.

TEA's own ``DuckDBStorage.query_events`` in process, on a file written by its own ``write_batch`` (the
benchmark's client events, each of a random one of ``--tenants`` tenants, in requests of 1 000 stamped on
arrival, evenly over the last ``--seconds`` seconds before the newest), asked what ``bench.ryw``'s reader
asks: the newest ``--limit`` events of the last ``--window`` seconds across every tenant, with their count
(an admin's ``GET /v1/events?limit=10&start_time=...``); then, for comparison, the next page (with the
first's cursor), the same of one tenant, and one event by its id (across tenants and in its tenant). Each
query runs ``--queries`` times; printed: the median CPU ms of the whole process per query (DuckDB's threads
included) and the wall ms. The events are queried as written, the newest in the write-ahead log (as on a
server between checkpoints), or with ``--checkpoint`` after a checkpoint.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from typing import Any

import msgspec

from bench.duckwrite import _lines
from tea.storage.duckdb.store import DuckDBStorage
from tea.types import Batch, EventFilter, QuerySpec

BATCH = 20_000
REQUEST = 1000


def _batch(rows: list[dict[str, Any]], first_us: int, step_us: float, round_: int, tenants: int) -> Batch:
    # as a server stamps them: the events of one request (REQUEST of them) at its arrival, with time-ordered ids;
    # each of a random tenant (of bench.ryw's reader, the page's newest events span a few partitions)
    rng = random.Random(round_)
    lines = [msgspec.json.encode(dict(row, tenant_id=f"t{rng.randrange(tenants)}",
                                      event_id=f"{first_us:x}-{round_:04d}-{n:06d}",
                                      timestamp=first_us + int(n // REQUEST * REQUEST * step_us),
                                      received_at=first_us + int(n // REQUEST * REQUEST * step_us))) + b"\n"
             for n, row in enumerate(rows)]
    chunks = [b"".join(lines[i:i + 500]) for i in range(0, len(lines), 500)]
    return Batch(chunks, len(lines), first_us, first_us + int(len(lines) * step_us))


def write(loop: asyncio.AbstractEventLoop, storage: DuckDBStorage, events: int, tenants: int, seconds: float) -> None:
    rows = _lines("events", BATCH, tenants)
    step = seconds * 1e6 / events
    start = int(time.time() * 1e6 - seconds * 1e6)
    for n in range(events // BATCH):
        loop.run_until_complete(storage.write_batch(_batch(rows, start + int(n * BATCH * step), step, n, tenants)))


def _timed(loop: asyncio.AbstractEventLoop, storage: DuckDBStorage, spec: QuerySpec,
           queries: int) -> tuple[float, float, Any]:
    cpu, wall, result = [], [], None
    for _ in range(queries):
        c, w = time.process_time(), time.perf_counter()
        result = loop.run_until_complete(storage.query_events(spec))
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu) * 1e3, statistics.median(wall) * 1e3, result


def run(path: str, args: argparse.Namespace) -> None:
    loop = asyncio.new_event_loop()
    storage = DuckDBStorage(path)
    loop.run_until_complete(storage.open())
    try:
        write(loop, storage, args.events, args.tenants, args.seconds)
        if args.checkpoint:
            loop.run_until_complete(storage._on_writer(lambda: storage._con.execute("CHECKPOINT")))
        newest = loop.run_until_complete(storage.query_events(QuerySpec(EventFilter(), 1, with_total=False)))
        end = newest.events[0].timestamp
        since = end - int(args.window * 1e6)
        every = QuerySpec(EventFilter(start_us=since), args.limit)
        first = loop.run_until_complete(storage.query_events(every))
        one = first.events[0]
        specs = {
            "across tenants": every,
            "next page": QuerySpec(EventFilter(start_us=since), args.limit, first.next_cursor),
            "one tenant": QuerySpec(EventFilter(tenant_ids=("t1",), start_us=since), args.limit),
            "by id (admin)": QuerySpec(EventFilter(event_id=one.event_id), 1, with_total=False),
            "by id (tenant)": QuerySpec(EventFilter(tenant_ids=(one.tenant_id,), event_id=one.event_id), 1,
                                        with_total=False),
        }
        print(f"{args.events} events, {args.tenants} tenants{', checkpointed' if args.checkpoint else ''}: the newest {args.limit} of the last {args.window:g} s "
              f"({first.total_count} events), median of {args.queries}")
        for name, spec in specs.items():
            for _ in range(3):  # (warm)
                loop.run_until_complete(storage.query_events(spec))
            cpu, wall, result = _timed(loop, storage, spec, args.queries)
            print(f"  {name:<16} {cpu:6.2f} ms CPU {wall:6.2f} ms wall  ({len(result.events)} events, "
                  f"total {result.total_count})")
    finally:
        loop.run_until_complete(storage.close())
        loop.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.poll", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events written (default 1 000 000)")
    parser.add_argument("--tenants", type=int, default=12, help="tenants they are spread over (default 12)")
    parser.add_argument("--seconds", type=float, default=25.0, help="the time they span (default 25 s)")
    parser.add_argument("--window", type=float, default=5.0, help="the poll's window, seconds (default 5)")
    parser.add_argument("--limit", type=int, default=10, help="the poll's page size (default 10)")
    parser.add_argument("--queries", type=int, default=50, help="queries of each kind (default 50)")
    parser.add_argument("--checkpoint", action="store_true", help="query after a checkpoint")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tea-bench-poll-") as tmp:
        run(os.path.join(tmp, "tea.duckdb"), args)


if __name__ == "__main__":
    main()
