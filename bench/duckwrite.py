"""Where a DuckDB event write spends its CPU: ``python -m bench.duckwrite [--shape spans] [--tenants 10]``.

TEA's own ``DuckDBStorage.write_batch`` in process, on a fresh file, batch after batch of new events (the
benchmark's client events, or the ``rhesis`` OTLP spans as the mapper stores them); every statement on
the write connection is timed in CPU seconds of the whole process (DuckDB's threads included), and the
sum per statement kind is printed in µs per event, with the duplicate check's cost batch by batch (it
grows with the stored rows inside the dedup window when ids are random).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import tempfile
import time
from typing import Any

import msgspec

from bench.events import base_events, now_us
from tea.storage.duckdb.store import DuckDBStorage
from tea.types import Batch, encode_lines

_KINDS = (("stage", "CREATE OR REPLACE TEMP TABLE staged AS SELECT b."), ("duplicate check", "SELECT n FROM ((SELECT"),
          ("in-batch repeats", "SELECT 1 FROM staged GROUP"), ("tenants", "SELECT list(DISTINCT tenant_id)"),
          ("insert", "INSERT INTO"), ("commit", "COMMIT"))


class _Timed:
    """The write connection, every ``execute`` timed by its statement's kind."""

    def __init__(self, con: Any, spent: dict[str, float], checks: list[float]) -> None:
        self.con, self.spent, self.checks = con, spent, checks

    def execute(self, sql: str, *args: Any) -> Any:
        started = time.process_time()
        try:
            return self.con.execute(sql, *args)
        finally:
            spent = time.process_time() - started
            kind = next((k for k, prefix in _KINDS if sql.startswith(prefix)), "other")
            self.spent[kind] += spent
            if kind == "duplicate check":
                self.checks[-1] += spent

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


def _lines(shape: str, count: int, tenants: int) -> list[dict[str, Any]]:
    if shape == "events":
        rows = base_events(count)
    else:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
        from bench.otlp_spans import Bodies
        from tea.receive.otlp_map import pb_spans
        bodies, events = Bodies(254, shape=shape), list[Any]()
        while len(events) < count:
            events.extend(pb_spans(ExportTraceServiceRequest.FromString(bodies.next()), False))
        rows = [msgspec.json.decode(line) for line in encode_lines(events[:count]).splitlines()]
    return [dict(row, tenant_id=f"t{n % tenants}") for n, row in enumerate(rows)]


def _batch(rows: list[dict[str, Any]], round_: int, arrival: bool = False) -> Batch:
    first = now_us()
    # ids as TEA assigns them (time-ordered, like UUIDv7) unless the event has its own (a span's is random); times
    # the events' own, received 5 ms later (or, with ``arrival``, stamped on arrival: timestamp = received_at)
    lag = 0 if arrival else 5_000
    lines = [msgspec.json.encode(dict(row, event_id=row.get("event_id", f"{first:x}") + f"-{round_:04d}-{n:06d}",
                                      timestamp=first + n, received_at=first + n + lag)) + b"\n"
             for n, row in enumerate(rows)]
    chunks = [b"".join(lines[i:i + 500]) for i in range(0, len(lines), 500)]
    return Batch(chunks, len(lines), first, first + len(lines))


async def run(shape: str, batch: int, batches: int, tenants: int, warmup: int = 2, arrival: bool = False) -> None:
    rows = _lines(shape, batch, tenants)
    spent: dict[str, float] = collections.defaultdict(float)
    checks: list[float] = []
    with tempfile.TemporaryDirectory(prefix="tea-bench-duckwrite-") as tmp:
        storage = DuckDBStorage(os.path.join(tmp, "tea.duckdb"))
        await storage.open()
        con, storage._con = storage._con, _Timed(storage._con, spent, checks)  # type: ignore[assignment]
        total = 0.0
        for n in range(warmup + batches):
            data = _batch(rows, n, arrival)  # (encoding the lines is not timed)
            checks.append(0.0)
            started = time.process_time()
            await storage.write_batch(data)
            total += time.process_time() - started
            if n == warmup - 1:
                spent.clear()
                total = 0.0
        storage._con = con
        await storage.close()
        size = os.path.getsize(os.path.join(tmp, "tea.duckdb"))
    events = batches * batch
    print(f"{shape}, {batch} per batch, {tenants} tenant(s), {batches} batches"
          f"{', stamped on arrival' if arrival else ''}: "
          f"{total / events * 1e6:.2f} µs of CPU per event, {size / ((warmup + batches) * batch):.1f} bytes per event "
          "on disk")
    for kind, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"  {kind:<16} {seconds / events * 1e6:6.2f} µs/event")
    print("  duplicate check, ms per batch:", " ".join(f"{c * 1e3:.1f}" for c in checks[warmup:]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.duckwrite", description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="events", help="events (bench.events' client events) or an OTLP span "
                        "shape of bench/otlp_shapes.py (semconv, rhesis, genai, mcp, mixed)")
    parser.add_argument("--batch", type=int, default=20_000, help="events per write (default 20 000)")
    parser.add_argument("--batches", type=int, default=15, help="timed writes (default 15)")
    parser.add_argument("--tenants", type=int, default=1, help="tenants the events are spread over (default 1)")
    parser.add_argument("--arrival", action="store_true", help="events stamped on arrival (timestamp = received_at: "
                        "their duplicate check looks at a whole dedup window), not at their own times")
    args = parser.parse_args(argv)
    asyncio.run(run(args.shape, args.batch, args.batches, args.tenants, arrival=args.arrival))


if __name__ == "__main__":
    main()
