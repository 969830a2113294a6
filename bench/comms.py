"""Communication views at volume: ``python -m bench.comms [--events N] [--runs R]`` from the project root.

Writes N seeded MCP/A2A/n8n communication events (spread over 7 days, a denser last hour, 40 teams,
12 MCP servers, 20 workflows, one tenant) into a fresh DuckDB file through the storage's own batch
path, then times each of the seed's five views (median of R runs, in process — no HTTP) with
DuckDB's SQL and, on the last hour / 5 minutes only, with the Python fallback every other backend
uses. Prints milliseconds per view and the SQL/Python ratio.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import replace

import msgspec

from tea.comms import views
from tea.comms.records import Communication, to_event
from tea.storage.duckdb import DuckDBStorage
from tea.types import Batch, EventFilter

MIN = 60_000_000


def events(n: int, now: int, seed: int = 1) -> list:
    rnd = random.Random(seed)
    teams = [f"team-{i:02d}" for i in range(40)]
    mcps = [f"mcp-{i:02d}" for i in range(12)]
    out = []
    for i in range(n):
        kind = rnd.random()
        if kind < 0.6:
            src, st, dst, dt, proto = rnd.choice(teams), "team", rnd.choice(mcps), "mcp", "mcp"
        elif kind < 0.9:
            src, st, dst, dt, proto = rnd.choice(teams), "team", rnd.choice(teams), "team", "a2a"
        else:
            src, st, dst, dt, proto = f"wf_{rnd.randint(0, 19):03d}", "workflow", rnd.choice(mcps), "external", "n8n"
        age = rnd.randint(0, 60 * MIN) if rnd.random() < 0.1 else rnd.randint(0, 7 * 24 * 60 * MIN)
        c = Communication(protocol=proto, source_id=src, source_type=st, target_id=dst, target_type=dt,  # type: ignore[arg-type]
                          operation="tool_call", status=rnd.choice(["success"] * 18 + ["error", "timeout"]),  # type: ignore[arg-type]
                          duration_ms=rnd.randint(1, 3000), tokens_used=rnd.randint(0, 4000),
                          estimated_cost=round(rnd.random(), 4))
        out.append(msgspec.structs.replace(to_event(c), tenant_id="bench", event_id=str(uuid.UUID(int=i)),
                                           timestamp=now - age, received_at=now - age))
    return out


class Fallback:
    def __init__(self, storage: DuckDBStorage) -> None:
        self.storage = storage

    def iter_events(self, f: EventFilter, chunk_rows: int = 10000):  # type: ignore[no-untyped-def]
        return self.storage.iter_events(f, chunk_rows)


async def timed(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def main(n: int, runs: int) -> None:
    now = int(time.time() * 1e6)
    with tempfile.TemporaryDirectory() as tmp:
        storage = DuckDBStorage(f"{tmp}/comms.duckdb")
        await storage.open()
        started = time.perf_counter()
        for start in range(0, n, 100_000):
            await storage.write_batch(Batch.from_events(events(min(100_000, n - start), now, seed=start)))
        print(f"loaded {n:,} communication events in {time.perf_counter() - started:.1f} s")
        f = EventFilter(tenant_ids=("bench",))
        print(f"{'view':<12}{'DuckDB SQL ms':>16}{'Python fallback ms':>22}{'ratio':>8}")
        for name, compute in views.VIEWS.items():
            sql_ms = await timed(lambda: compute(storage, f, now), runs)
            if name in ("health", "realtime", "matrix"):  # short windows: the fallback is feasible
                py_ms = await timed(lambda: compute(Fallback(storage), f, now), max(1, runs // 2))
                print(f"{name:<12}{sql_ms:>16.1f}{py_ms:>22.1f}{py_ms / sql_ms:>8.1f}")
            else:
                print(f"{name:<12}{sql_ms:>16.1f}{'(7 d / 24 h: skipped)':>22}")
        gaps_ms = await timed(lambda: views.endpoints(storage, replace(f)), runs)
        print(f"{'gaps scan':<12}{gaps_ms:>16.1f}")
        await storage.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.runs))
