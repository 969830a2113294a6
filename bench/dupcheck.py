"""What a duplicate pre-check costs as a tenant's events pile up: ``python -m bench.dupcheck``.

telemetry-kit answers each event ``duplicate`` or not before acknowledging it, and PostgREST answers 409
for a client-given id already stored; both ask storage (``existing_event_keys``) which of a request's ids a
tenant holds. In process, on a fresh DuckDB file, batch after batch of one tenant's events with random
UUIDv4 ids (as telemetry-kit's SDKs make them) is stored over the last ``--minutes``; after some of the
batches, a request's 10 new ids are looked up the two ways a pre-check can: at the events' own time (what
``storage.dedup_match=same_time`` needs: one instant) and within ``storage.dedup_window_s`` (1 h) either side
(``window``, and PostgREST's primary key). Printed: CPU ms per lookup and their ratio.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid

import msgspec

from bench.events import base_events, now_us
from tea.storage.duckdb.store import DuckDBStorage
from tea.types import Batch

WINDOW_US = 3_600_000_000


def _batch(base: list[dict], count: int, first: int, step: int) -> Batch:
    lines = [msgspec.json.encode(dict(base[n % len(base)], tenant_id="t1", event_id=str(uuid.uuid4()),
                                      timestamp=first + n * step, received_at=first + n * step + 5_000)) + b"\n"
             for n in range(count)]
    return Batch([b"".join(lines)], count, first, first + (count - 1) * step)


async def _lookups(storage: DuckDBStorage, at: int, reach: int, calls: int) -> float:
    ids = [str(uuid.uuid4()) for _ in range(10)]
    started = time.process_time()
    for _ in range(calls):
        await storage.existing_event_keys("t1", ids, at - reach, at + reach)
    return (time.process_time() - started) / calls * 1e3


async def run(batches: int, batch: int, minutes: int, calls: int) -> None:
    base = base_events(1000)
    now = now_us()
    span = minutes * 60_000_000
    step = max(1, span // (batches * batch))
    with tempfile.TemporaryDirectory(prefix="tea-bench-dupcheck-") as tmp:
        storage = DuckDBStorage(os.path.join(tmp, "tea.duckdb"))
        await storage.open()
        marks = {max(1, batches // 8), max(1, batches // 2), batches}
        for n in range(1, batches + 1):
            await storage.write_batch(_batch(base, batch, now - span + (n - 1) * batch * step, step))
            if n in marks:
                own = await _lookups(storage, now - 1_000_000, 0, calls)
                window = await _lookups(storage, now - 1_000_000, WINDOW_US, calls)
                print(f"{n * batch:>10,} stored events: at the events' own time {own:6.2f} ms, within the window "
                      f"{window:7.2f} ms of CPU per lookup of 10 ids (x{window / own:.1f})", flush=True)
        await storage.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dupcheck", description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="batches stored (default 20)")
    parser.add_argument("--batch", type=int, default=100_000, help="events per batch (default 100000)")
    parser.add_argument("--minutes", type=int, default=50, help="the stored events' span, ending now (default 50)")
    parser.add_argument("--calls", type=int, default=5, help="lookups timed per measurement (default 5)")
    args = parser.parse_args(argv)
    if min(args.batches, args.batch, args.minutes, args.calls) < 1:
        parser.error("every count must be at least 1")
    asyncio.run(run(args.batches, args.batch, args.minutes, args.calls))


if __name__ == "__main__":
    main()
