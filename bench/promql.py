"""Prometheus API benchmark: ``python -m bench.promql [--quick]`` from the project root (bench/README.md#otlp-metric-points-and-the-prometheus-api).

Times ``query_range`` of ``histogram_quantile(0.95, sum by (le, method) (rate(tea_request_duration_ms_bucket[5m])))``
over the synthetic day of bench.dataset (1 M events), 24 h at a 60 s step (1 440 points per series), against
``tea serve`` over HTTP; then the same evaluation in this process, split into storage's aggregate and
the engine's arithmetic. Nothing asserts: the target is printed beside the numbers.
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import time
import urllib.parse

import psutil

from bench import dataset, server
from bench.ingest import RESULTS_DIR
from bench.metrics_query import percentiles, time_calls

TARGET_MS = 50.0
START_S = dataset.DAY_START_US // 1_000_000
END_S = START_S + 86_400
P95 = "histogram_quantile(0.95, sum by (le, method) (rate(tea_request_duration_ms_bucket{sel}[5m])))"
QUERIES = {  # name -> (query, as the admin: every tenant's events)
    "p95 by method, every tenant (1 M events)": (P95.format(sel=""), True),
    "p95 by method, tenant-3 (its token; 100 k of the 1 M events)": (P95.format(sel=""), False),
    "error ratio, every tenant": ("sum(rate(tea_errors_total[5m])) / sum(rate(tea_requests_total[5m]))", True),
    "requests/s by method, every tenant": ("sum by (method) (rate(tea_requests_total[5m]))", True),
}


def _path(query: str, step_s: int) -> str:
    return "/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": query, "start": START_S, "end": END_S, "step": step_s})


def _call(conn: http.client.HTTPConnection, path: str, token: str, tea: psutil.Process,
          cpu_ms: list[float]):  # type: ignore[no-untyped-def]
    """One request; the server's CPU time for it (every thread: DuckDB's too) goes into ``cpu_ms``."""
    def call() -> bytes:
        before = sum(tea.cpu_times()[:2])
        conn.request("GET", path, headers={"authorization": f"Bearer {token}"})
        response = conn.getresponse()
        body = response.read()
        cpu_ms.append((sum(tea.cpu_times()[:2]) - before) * 1000)
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}: {body[:300]!r}")
        return body
    return call


def http_phase(data_dir: str, calls: int, warmup: int, step_s: int) -> dict:
    port = server.free_port()
    tea = server.tea_server(os.path.abspath(data_dir), port, {"TEA_RETENTION_HOURS": "0"})
    tea.start(timeout=300)
    conn = http.client.HTTPConnection(server.HOST, port, timeout=300)
    out: dict = {}
    try:
        tenant = server.create_token(port, "tenant-3")
        process = psutil.Process(tea.proc.pid)  # type: ignore[union-attr]
        for name, (query, admin) in QUERIES.items():
            cpu: list[float] = []
            timings, body = time_calls(_call(conn, _path(query, step_s), server.ADMIN_TOKEN if admin else tenant,
                                             process, cpu), calls, warmup)
            result = json.loads(body)["data"]["result"]
            out[name] = {"latency_ms": percentiles(timings), "cpu_ms": percentiles(cpu[warmup:]), "series": len(result),
                         "points": sum(len(s["values"]) for s in result), "body_bytes": len(body)}
    finally:
        conn.close()
        tea.stop()
    return out


def in_process(data_dir: str, calls: int, step_s: int) -> dict:
    """The verdict query without HTTP: storage's aggregate alone, then the whole evaluation."""
    import numpy as np

    from tea.auth.principal import ADMIN, READ, Principal
    from tea.prom.engine import Engine
    from tea.prom.events import EventSource, catalogue
    from tea.prom.plan import parse
    from tea.query.scope import ScopedStorage
    from tea.storage.duckdb import DuckDBStorage

    async def main() -> dict:
        storage = DuckDBStorage(os.path.join(data_dir, "tea.duckdb"))
        await storage.open()
        try:
            reader = ScopedStorage(storage, Principal(None, scopes=frozenset({ADMIN, READ}), method="admin_token"))
            node = parse(P95.format(sel=""))
            steps = np.arange(START_S, END_S + 1, step_s, dtype=np.int64) * 1_000_000
            source = EventSource(reader, catalogue())
            spent, asked = [], []
            for name in ("aggregate_minutes", "aggregate_columns", "aggregate_bins"):  # (storage's answer, however asked)
                original = getattr(reader, name, None)
                if original is None:
                    continue

                async def timed(*args, original=original):  # type: ignore[no-untyped-def]
                    started = time.perf_counter()
                    found = await original(*args)
                    if found is not None:  # (None: the rollup does not answer; the events are asked next)
                        spent.append((time.perf_counter() - started) * 1000)
                        asked.append(len(found[0]))
                    return found
                setattr(reader, name, timed)
            totals = []
            for _ in range(calls):
                started = time.perf_counter()
                await Engine(source, steps).run(node)
                totals.append((time.perf_counter() - started) * 1000)
            return {"total_ms": percentiles(totals), "aggregate_ms": percentiles(spent), "rows": asked[-1]}
        finally:
            await storage.close()
    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.promql", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="dataset size (default 1000000)")
    parser.add_argument("--calls", type=int, default=30, help="timed calls per query (default 30; quick 10)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--step", type=int, default=60, help="query_range step in seconds (default 60)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    args = parser.parse_args(argv)
    calls = 10 if args.quick else args.calls
    data = dataset.ensure(args.results_dir, args.events, args.seed)
    print(f"dataset: {args.events:,} events over one day ({os.path.relpath(data['path'])}); query_range 24 h, "
          f"step {args.step} s ({86_400 // args.step + 1} points a series); {calls} timed calls each", flush=True)
    results = http_phase(data["path"], calls, args.warmup, args.step)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (the CPU time is TEA's, every thread)")
    print(f"{'query (HTTP, tea serve)':<62}{'p50 ms':>8}{'p95 ms':>8}{'CPU p50':>9}{'series':>7}{'points':>8}   target")
    for name, r in results.items():
        lat = r["latency_ms"]
        target = f"<= {TARGET_MS:g} ms: {'met' if lat['p50'] <= TARGET_MS else 'NOT met'}" if name in list(QUERIES)[:2] else ""
        print(f"{name:<62}{lat['p50']:>8.1f}{lat['p95']:>8.1f}{r['cpu_ms']['p50']:>9.1f}{r['series']:>7}{r['points']:>8}"
              f"   {target}")
    split = in_process(data["path"], calls, args.step)
    print(f"in process (verdict query): whole evaluation p50 {split['total_ms']['p50']:.1f} ms, of which storage's "
          f"aggregate p50 {split['aggregate_ms']['p50']:.1f} ms ({split['rows']:,} rows: bucket x method (x histogram "
          f"bin) cells); "
          f"HTTP p50 / in-process p50 = {list(results.values())[0]['latency_ms']['p50'] / split['total_ms']['p50']:.2f}")
    os.makedirs(args.results_dir, exist_ok=True)
    path = os.path.join(args.results_dir, f"promql-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump({"http": results, "in_process": split, "events": args.events, "step_s": args.step}, fh, indent=1)
    print(f"record: {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
