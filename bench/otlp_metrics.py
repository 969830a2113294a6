"""OTLP metric points/s: ``python -m bench.otlp_metrics [--quick]`` from the project root (bench/README.md#otlp-metric-points-and-the-prometheus-api).

Sends OTLP/HTTP protobuf metric exports of 1 000 data points of every kind (bench/otlp_points.py) to a
fresh ``tea serve`` (DuckDB, durable acknowledgements, every other setting at its default) from separate
load processes over loopback, until storage has every acknowledged point; then counts the rows of
``metric_points`` in the DuckDB file. Prints points/s acknowledged and stored, latency and TEA's CPU; nothing
asserts (the target is printed beside the numbers).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import duckdb

from bench import otlp_profile, phases, server
from bench.ingest import RESULTS_DIR
from bench.otlp_tally import LoadSpec, run_load
from bench.server import HOST, Monitor

TARGET = 100_000  # points/s stored


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp_metrics", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s of load instead of 15")
    parser.add_argument("--duration", type=float, help="seconds of load (default 15, quick 5)")
    parser.add_argument("--processes", type=int, default=1, help="load processes (default 1)")
    parser.add_argument("--concurrency", type=int, default=8, help="in-flight requests per process (default 8)")
    parser.add_argument("--native", choices=("on", "off"), default="on", help="otlp.native (default on)")
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    args = parser.parse_args(argv)
    args.duration = args.duration or (5.0 if args.quick else 15.0)
    return args


def _rows(path: str) -> int | None:
    try:
        with duckdb.connect(path, read_only=True) as con:
            return con.execute("SELECT count(*) FROM metric_points").fetchone()[0]  # type: ignore[index]
    except duckdb.Error as exc:
        print(f"  cannot count rows in {path}: {exc}")
        return None


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far, its ended threads included (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args: argparse.Namespace) -> dict:
    data_dir = tempfile.mkdtemp(prefix="tea-otlp-metrics-")
    port = server.free_port()
    env = {"TEA_BUFFER__MAX_BYTES": "8GiB", "TEA_OTLP__NATIVE": "true" if args.native == "on" else "false"}
    srv = server.tea_server(data_dir, port, env).start()
    try:
        monitor = Monitor(srv, health=True, max_seconds=args.duration + 300)
        monitor.start()
        try:
            baseline = int(phases._health(srv)["events_written"])
            spec = LoadSpec("http", HOST, port, server.ADMIN_TOKEN, args.concurrency, args.duration,
                            max_requests=int(args.duration * 2_000) + 1, signal="metrics")
            marks: dict[str, float] = {}
            pid = srv.proc.pid  # type: ignore[union-attr]

            def on_start(t: float) -> None:
                marks["t0"], marks["cpu"], marks["process"] = t, otlp_profile.thread_cpu(pid), _process_cpu(pid)
            load = run_load(spec, args.processes, on_start=on_start)
            cpu_load = otlp_profile.cpu_between(marks["cpu"], otlp_profile.thread_cpu(pid), load["seconds"], pid)
            acked = load["events_acked"]
            hit = monitor.wait_written(baseline + acked, 300)
            stored_s = (hit["t"] if hit else time.time()) - marks["t0"]
            cpu_stored = _process_cpu(pid) - marks["process"]  # (TEA idles once storage has every point)
        finally:
            monitor.stop()
    finally:
        stop = phases.server_stop(srv)
    rows = _rows(os.path.join(data_dir, "tea.duckdb"))
    shutil.rmtree(data_dir, ignore_errors=True)
    return {"load": load, "acked": acked, "complete": hit is not None, "stored_seconds": stored_s,
            "stored_per_s": acked / stored_s if hit else 0.0, "rows": rows, "tea_cpu": cpu_load, "stop": stop,
            "tea_cpu_us_per_point": 1e6 * cpu_stored / acked if acked else 0.0,
            "native": args.native}


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    print(f"OTLP/HTTP metrics: {args.processes} load process(es) x {args.concurrency} in flight, 1 000 points a "
          f"request (sum, gauge, histogram, exponential histogram, summary), {args.duration:g} s, native "
          f"{args.native}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    r = run(args)
    load = r["load"]
    lat = load.get("latency_ms", {})
    print(f"{'acked points/s':>16}{'stored points/s':>17}{'p50 ms':>9}{'p99 ms':>9}{'rows':>12}{'non-OK':>8}   target")
    non_ok = load.get("busy", 0) + load.get("other", 0) + load.get("errors", 0) + load.get("partial", 0)
    verdict = "met" if r["stored_per_s"] >= TARGET else "NOT met"
    print(f"{load['events_per_s']:>16,.0f}{r['stored_per_s']:>17,.0f}{lat.get('p50', 0):>9.1f}{lat.get('p99', 0):>9.1f}"
          f"{r['rows'] or 0:>12,}{non_ok:>8}   >= {TARGET:,}/s stored: {verdict}")
    print(f"acknowledged {r['acked']:,} points; storage had them all {r['stored_seconds']:.1f} s after the load began "
          f"({'complete' if r['complete'] else 'INCOMPLETE'}); TEA's CPU during the load: {r['tea_cpu']}")
    print(f"TEA's CPU from the load's start until storage had every point: {r['tea_cpu_us_per_point']:.2f} us a point "
          "(steadier than the rates on a shared machine)")
    if r["rows"] is not None and r["rows"] != r["acked"]:
        print(f"!!! rows in metric_points ({r['rows']:,}) differ from the acknowledged points ({r['acked']:,})")
    os.makedirs(args.results_dir, exist_ok=True)
    path = os.path.join(args.results_dir, f"otlp-metrics-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump({k: v for k, v in r.items() if k != "load"} | {"load": {k: v for k, v in load.items()
                                                                         if k != "latencies"}}, fh, indent=1,
                  default=str)
    print(f"record: {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
