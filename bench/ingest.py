"""TEA ingestion benchmark: ``python -m bench.ingest [--quick]`` from the project root.

Starts TEA (and a no-op server on the same stack), drives them from separate load-generator
processes over loopback, measures DuckDB's own bulk-load rate for the same events, and prints
the table described in bench/README.md. Results also go to bench/results/ingest-<time>.json.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from bench import phases, report

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _env_item(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.startswith("TEA_"):
        raise argparse.ArgumentTypeError(f"expected TEA_KEY=VALUE, got {text!r}")
    return key, value


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (~30 s): 4 s per load phase")
    parser.add_argument("--duration", type=float, help="seconds per load phase (default 15, quick 4)")
    parser.add_argument("--processes", type=int, default=1, help="load generator processes (default 1)")
    parser.add_argument("--batch-connections", type=int, default=8, help="connections per process, (a)")
    parser.add_argument("--single-connections", type=int, default=64, help="connections per process, (b), (d)")
    parser.add_argument("--duck-events", type=int, help="events for (c) (default 1 000 000, quick 200 000)")
    parser.add_argument("--buffer-max", default="8GiB", help="TEA_BUFFER__MAX_BYTES for TEA (default 8GiB)")
    parser.add_argument("--tea-env", action="append", default=[], metavar="TEA_KEY=VALUE", type=_env_item,
                        help="another setting for the TEA server, e.g. TEA_BUFFER__ACK=memory (repeatable)")
    parser.add_argument("--live-tail", type=int, default=0, metavar="N",
                        help="N live-tail streams (GET /v1/events/stream) open during the TEA phases")
    parser.add_argument("--live-tail-query", default="", metavar="QUERY",
                        help="their filters as a query string, e.g. tenant_id=t3 (default: every event)")
    parser.add_argument("--results-dir", default=RESULTS_DIR, help="where the JSON record goes")
    return parser.parse_args(argv)


def _config(args: argparse.Namespace, work_dir: str) -> phases.Config:
    duration = args.duration or (4.0 if args.quick else 15.0)
    return phases.Config(
        duration=duration, processes=args.processes, batch_connections=args.batch_connections,
        single_connections=args.single_connections, buffer_max=args.buffer_max, work_dir=work_dir,
        tea_env=dict(args.tea_env), live_tail=args.live_tail, live_tail_query=args.live_tail_query,
        duck_events=args.duck_events or (200_000 if args.quick else 1_000_000),
        drain_timeout=20.0 if args.quick else 60.0)


def run(cfg: phases.Config) -> dict:
    results = {"c": phases.duckdb_phase(cfg), "d": phases.noop_phase(cfg)}
    results["a"] = phases.tea_batch_phase(cfg)
    results["b"] = phases.tea_single_phase(cfg)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _args(argv)
    work_dir = tempfile.mkdtemp(prefix="tea-bench-")
    environment = report.environment(["python -m bench.ingest", *argv])
    started = time.monotonic()
    try:
        cfg = _config(args, work_dir)
        results = run(cfg)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    results["config"] = vars(cfg) | {"work_dir": None}
    results["environment"] = environment | {"total_seconds": round(time.monotonic() - started, 1)}
    print()
    print(report.table(results))
    print()
    print(report.details(results))
    path = report.write_json(results, args.results_dir)
    print(f"\nran {results['environment']['total_seconds']} s; results written to {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
