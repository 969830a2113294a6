"""Where the ``otel_analytics`` processor spends its CPU: ``python -m bench.analytics [--shape rhesis|mixed]``.

OTLP spans as TEA stores them (bench/otlp_shapes.py's requests through the native mapper), the lines its
consumer hands over (``select_lines`` of ``OtelAnalytics.wants_lines``, one Batch chunk a line), and
``OtelAnalytics.__call__`` on a fresh DuckDBStorage, round after round of new spans. Timed in CPU seconds of the
whole process (DuckDB's threads included) and printed in µs per routed span: the Python part (decode, routing,
rows) and the storage write (``write_row_sets``, or ``write_rows`` per table), by statement kind (``python around``:
the rest of the write — repeats dropped, rows encoded, the staging file).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import os
import statistics
import tempfile
import time
from typing import Any

from bench.duckwrite import _Timed
from bench.otlp_spans import Bodies
from tea.pipeline.normalise import Normaliser
from tea.receive import otlp
from tea.receive.otlp_analytics import OtelAnalytics
from tea.scan import select_lines
from tea.storage.duckdb.store import DuckDBStorage
from tea.types import Batch

_TABLES = ("endpoint_usage", "feature_usage", "user_activity", "all tables")  # ("all tables": write_row_sets)


def _batches(shape: str, spans: int, rounds: int) -> list[Batch]:
    """``rounds`` Batches of the lines a consumer hands ``otel_analytics`` out of ``spans`` stored spans each."""
    bodies, normaliser, found = Bodies(254, shape=shape), Normaliser(), []
    for _ in range(rounds):
        records: list[bytes] = []
        while len(records) * 100 < spans:  # (100 spans a request)
            mapped = otlp.map_native(normaliser, bodies.next(), None)
            assert mapped is not None, "the native mapper is not built"
            records.append(mapped.ndjson)
        lines = [record[start:end] + b"\n" for record, spans_ in zip(records, select_lines(records,
                 OtelAnalytics.wants_lines[0], OtelAnalytics.wants_lines[1])) for _, start, end in spans_]
        found.append(Batch(lines, len(lines), 0, 0))
    return found


async def _round(processor: OtelAnalytics, batch: Batch, spent: dict[str, float]) -> tuple[float, dict[str, int]]:
    storage, routed = processor.storage, collections.Counter[str]()
    write_rows, write_row_sets = storage.write_rows, getattr(storage, "write_row_sets", None)

    async def timed(table: str, rows: list[dict[str, Any]]) -> None:
        routed[table] += len(rows)
        started = time.process_time()
        await write_rows(table, rows)
        spent[table] += time.process_time() - started

    async def timed_sets(tables: dict[str, list[dict[str, Any]]]) -> None:
        routed.update({table: len(rows) for table, rows in tables.items()})
        started = time.process_time()
        await write_row_sets(tables)  # type: ignore[misc]
        spent["all tables"] += time.process_time() - started

    storage.write_rows, storage.write_row_sets = timed, timed_sets  # type: ignore[method-assign]
    started = time.process_time()
    await processor(batch)
    total = time.process_time() - started
    storage.write_rows, storage.write_row_sets = write_rows, write_row_sets  # type: ignore[method-assign]
    return total, routed


async def run(shape: str, spans: int, rounds: int, warmup: int = 2) -> None:
    batches = _batches(shape, spans, warmup + rounds)
    totals, results = [], []
    with tempfile.TemporaryDirectory(prefix="tea-bench-analytics-") as tmp:
        storage = DuckDBStorage(os.path.join(tmp, "tea.duckdb"))
        await storage.open()
        kinds: dict[str, float] = collections.defaultdict(float)
        con, storage._con = storage._con, _Timed(storage._con, kinds, [0.0])  # type: ignore[assignment]
        for n, batch in enumerate(batches):
            spent: dict[str, float] = collections.defaultdict(float)
            if n == warmup:
                kinds.clear()
            gc.collect()  # (each round from the same heap: the rows of the last one gone)
            total, routed = await _round(OtelAnalytics(storage), batch, spent)
            if n >= warmup:
                count = sum(routed.values())
                totals.append(total / count * 1e6)
                results.append({t: spent[t] / count * 1e6 for t in _TABLES} | {"python": (total - sum(spent.values()))
                                                                               / count * 1e6})
        storage._con = con
        await storage.close()
    count = sum(routed.values())
    print(f"{shape}: {batch.count} lines handed over, {count} routed ({dict(routed)}), {rounds} rounds; "
          f"µs of CPU per routed span, best / median")
    print("  per round:", " ".join(f"{t:.1f}" for t in totals))
    print(f"  {'total':<26} {min(totals):6.2f} {statistics.median(totals):6.2f}")
    for part in ("python", *_TABLES):
        values = [r[part] for r in results]
        if not any(values):
            continue
        print(f"  {part if part == 'python' else 'write ' + part:<26} {min(values):6.2f} "
              f"{statistics.median(values):6.2f}")
    written = sum(sum(r[t] for t in _TABLES) for r in results) * count / 1e6
    kinds["python around"] = written - sum(kinds.values())  # (the rest of the writes: Python around the statements)
    print("  writes by statement (mean):", ", ".join(f"{k} {s / (rounds * count) * 1e6:.2f}"
                                                        for k, s in sorted(kinds.items(), key=lambda i: -i[1])))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.analytics", description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="rhesis", help="rhesis (every span routes) or mixed (some do), or any "
                        "shape of bench/otlp_shapes.py (default rhesis)")
    parser.add_argument("--spans", type=int, default=20_000, help="stored spans a round (default 20 000)")
    parser.add_argument("--rounds", type=int, default=9, help="timed rounds, after 2 untimed (default 9)")
    args = parser.parse_args(argv)
    asyncio.run(run(args.shape, args.spans, args.rounds))


if __name__ == "__main__":
    main()
