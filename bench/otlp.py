"""OTLP spans/s benchmark: ``python -m bench.otlp [--quick]`` from the project root.

Sends OTLP traces (100 spans per request, every span a new trace_id/span_id) to a fresh TEA per
transport, from separate load processes over loopback: OTLP/HTTP protobuf on TEA's port, then
OTLP/gRPC on ``otlp.grpc_port`` (by default from the lean client of ``otlp_h2``; ``--grpc-mode aio``
for grpcio's own stub, as an SDK exporter sends). Reports spans/s acknowledged and stored, latency, TEA's peak RSS,
and the in-process ceiling of parse / map / encode. See bench/OTLP.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from importlib import metadata

from bench import otlp_mapping, otlp_phase, report
from bench.otlp_shapes import SHAPES
from bench.ingest import RESULTS_DIR, _env_item

TARGET = 100_000  # spans/s stored
SHAPE_TARGET = 0.9  # every shape stores at least this fraction of the semconv shape's rate
SHORT = {"http": "HTTP", "grpc": "gRPC"}
SEED_SPANS_PER_S = 6_000


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s per transport instead of 15")
    parser.add_argument("--duration", type=float, help="seconds of load per transport (default 15, quick 5)")
    parser.add_argument("--processes", type=int, default=1, help="load processes (default 1)")
    parser.add_argument("--concurrency", type=int, help="in-flight requests per load process (default: 8 HTTP "
                        "connections, 32 gRPC calls)")
    parser.add_argument("--grpc-mode", choices=("h2", "aio", "threads", "raw"), default="h2",
                        help="the gRPC client: h2 — gRPC's HTTP/2 framing by hand, the bodies' bytes as the "
                        "OTLP/HTTP load sends them (~110 µs of CPU per call); aio — grpc.aio tasks with the "
                        "stub, as an SDK exporter (~335 µs); threads — the sync stub in threads; raw — grpc.aio "
                        "sending the bodies' bytes (~190 µs) (default h2)")
    parser.add_argument("--channels", type=int, default=1, help="gRPC channels per load process (default 1)")
    parser.add_argument("--transports", default="http,grpc", help="comma list of http, grpc (default both)")
    parser.add_argument("--shape", default="semconv", help=f"the spans sent, a comma list of {', '.join(SHAPES)} "
                        "or all (see bench/otlp_shapes.py; default semconv); with semconv among them, each shape's "
                        "stored rate is also printed as a ratio to semconv's")
    parser.add_argument("--tenants", type=int, default=0,
                        help="spread every shape's resources over this many tenants (default: each shape's own, 4, "
                        "and 12 for mixed): compares shapes at the same number of tenants")
    parser.add_argument("--buffer-max", default="8GiB", help="TEA_BUFFER__MAX_BYTES (default 8GiB)")
    parser.add_argument("--tea-env", action="append", default=[], metavar="TEA_KEY=VALUE", type=_env_item,
                        help="another setting for TEA (repeatable)")
    parser.add_argument("--health-poll", type=float, default=0.1, help="seconds between /health samples (0.1)")
    parser.add_argument("--py-spy", nargs="?", const="all", default="", choices=("all", "gil"),
                        help="sample TEA with py-spy for 8 s of each load: all busy threads (default) or only "
                             "the GIL holder (gil); slows TEA down a little")
    parser.add_argument("--results-dir", default=RESULTS_DIR, help="where the JSON record goes")
    args = parser.parse_args(argv)
    bad = set(args.transports.split(",")) - {"http", "grpc"}
    if bad:
        parser.error(f"unknown transports: {', '.join(sorted(bad))}")
    args.shapes = list(SHAPES) if args.shape == "all" else args.shape.split(",")
    unknown = set(args.shapes) - set(SHAPES)
    if unknown:
        parser.error(f"unknown shapes: {', '.join(sorted(unknown))} (known: {', '.join(SHAPES)}, all)")
    return args


def _row(*cells: str) -> str:
    name, acked, stored, done, p50, p99, load, rss, bad, target = cells
    return f"{name:<16}{acked:>14}{stored:>16}{done:>16}{p50:>9}{p99:>9}{load:>8}{rss:>10}{bad:>8}   {target}"


def _processed(phase: dict) -> str:
    done = phase.get("processed")
    return "-" if done is None else f"{done['spans_per_s']:,.0f}" + ("" if done["complete"] else "*")


def _map_us(r: dict) -> float:
    """µs per span of the mapping step: the better of the measurements before and after the load."""
    return min(m["us_per_span"]["map"] for m in r["mapping"])


def table(r: dict) -> str:
    lines = [_row("transport shape", "acked spans/s", "stored spans/s", "processed/s", "p50 ms", "p99 ms", "load",
                  "peak RSS", "non-OK", "target")]
    for phase in r["phases"]:
        load, stored = phase["load"], phase["stored"]
        ratio = stored["spans_per_s"] / TARGET
        non_ok = load["partial"] + load["busy"] + load["other"] + load["errors"]
        lines.append(_row(f"{SHORT[phase['transport']]} {phase['shape']}", f"{load['spans_per_s']:,.0f}",
                          f"{stored['spans_per_s']:,.0f}" + ("" if stored["complete"] else "*"), _processed(phase),
                          f"{load['latency_ms']['p50']:.1f}", f"{load['latency_ms']['p99']:.1f}",
                          f"{load['processes']}x{load['connections_per_process']}",
                          f"{phase['rss']['peak_mib']:,.0f} MiB", f"{non_ok:,}",
                          f">= {TARGET:,} stored: {ratio:.2f}x {'met' if ratio >= 1 else 'MISSED'}"))
    us = _map_us(r)
    m = min(r["mapping"], key=lambda m: m["us_per_span"]["map"])
    shape = r["phases"][0]["shape"] if r["phases"] else "semconv"
    lines.append(f"mapping only ({shape} spans, in-process, 1 core): {1e6 / us:,.0f} spans/s ({us:.1f} µs/span; "
                 f"protobuf parse {m['spans_per_s']['parse']:,}, NDJSON encode {m['spans_per_s']['encode']:,} spans/s)")
    shares = ", ".join(f"{SHORT[p['transport']]} {p['shape']} {p['load']['spans_per_s'] * us / 1e4:.0f}%"
                       for p in r["phases"])
    lines.append(f"mapping's share of one core at the acked rate: {shares}")
    lines.append("processed/s: spans over the time until every processor (the analytics projections among them) "
                 "had handled them too")
    lines.append(f"seed system: ~{SEED_SPANS_PER_S:,} spans/s" + ("   (* storage or the processors had not caught up)"
                                                                  if any(not p["stored"]["complete"] or
                                                                         not (p["processed"] or {}).get("complete")
                                                                         for p in r["phases"]) else ""))
    return "\n".join(lines + shape_ratios(r["phases"]))


def shape_ratios(phases: list[dict]) -> list[str]:
    """Stored spans/s of each shape over the semconv shape's, per transport (when semconv ran)."""
    lines = []
    for transport in dict.fromkeys(p["transport"] for p in phases):
        for what, rate_of in (("stored", lambda p: p["stored"]["spans_per_s"]),
                              ("processed", lambda p: (p.get("processed") or {}).get("spans_per_s", 0.0))):
            runs = {p["shape"]: rate_of(p) for p in phases if p["transport"] == transport}
            base = runs.get("semconv")
            if not base or len(runs) < 2:
                continue
            cells = [f"{shape} {rate:,.0f} ({rate / base:.2f}x{'' if rate / base >= SHAPE_TARGET else ' MISSED'})"
                     for shape, rate in runs.items()]
            lines.append(f"{what} by shape, {SHORT[transport]} (ratio to semconv, target >= {SHAPE_TARGET}x): "
                         + ", ".join(cells))
    return lines


def details(r: dict) -> str:
    lines = []
    for phase in r["phases"]:
        load, stored, rss = phase["load"], phase["stored"], phase["rss"]
        mode = f" ({load['grpc_mode']}, {load['channels']} channel(s))" if load["grpc_mode"] else ""
        lat = load["latency_ms"]
        drain = stored["drain_seconds_after_load"]
        lines += [
            f"{phase['label']}: {load['processes']} load process(es) x {load['connections_per_process']} in flight"
            f"{mode}, {load['seconds']:.1f} s; requests ok={load['ok']:,} partial={load['partial']:,} "
            f"busy={load['busy']:,} other={load['other']:,} errors={load['errors']:,} {load['statuses'] or ''}",
            f"  latency ms p50={lat['p50']} p90={lat['p90']} p99={lat['p99']} max={lat['max']}; "
            f"rejected spans {load['rejected_spans']}; load processes used {load['load_cpu_s']} CPU s"
            f" ({load['load_cpu_s'] / max(1, load['ok'] + load['partial'] + load['busy'] + load['other']) * 1e6:.0f}"
            " µs per request)",
            f"  stored {stored['spans']:,} spans in {stored['seconds']:.1f} s from load start"
            + (f" ({drain:.1f} s of drain)" if drain is not None else " (storage did NOT catch up)")
            + f"; DuckDB rows after shutdown {phase['rows_in_duckdb']}",
            f"  TEA RSS idle {rss['idle_mib']:.0f} MiB, peak during load {rss['peak_during_load_mib']:.0f} MiB, "
            f"peak incl. drain {rss['peak_mib']:.0f} MiB; backlog peak {phase['backlog_peak_mib']:.0f} MiB; "
            f"SIGTERM -> exit {phase['stop']['exit_code']} in {phase['stop']['stop_seconds']:.1f} s",
        ]
        tea_cpu = phase["tea_cpu"]["during_load"]
        lines.append(f"  TEA CPU during load {tea_cpu['total_pct_of_one_core']}% of one core; per thread "
                     f"{tea_cpu['threads_pct_of_one_core']}")
        if phase.get("profile"):
            prof = phase["profile"]
            lines.append(f"  py-spy {phase['config']['profile']} ({prof['samples']} samples at {prof['rate_hz']} Hz): "
                         f"threads {prof['threads_pct']}")
            lines += [f"    {pct:5.1f}%  {name}" for name, pct in list(prof["own_time_pct"].items())[:10]]
    for when, m in zip(("before", "after"), r["mapping"]):
        lines.append(f"mapping {when} the load: {m['requests']} requests of {m['body_bytes']:,} B ({m['spans']:,} "
                     f"spans), µs/span {m['us_per_span']}; stored line {m['stored_line_bytes']} B/span; "
                     f"cpu reference {m['cpu_reference_us']} µs")
    return "\n".join(lines)


def _environment(argv: list[str]) -> dict:
    env = report.environment(["python -m bench.otlp", *argv])
    for name in ("grpcio", "protobuf", "opentelemetry-proto"):
        env["versions"][name] = metadata.version(name)
    return env


def _config(args: argparse.Namespace, transport: str, work_dir: str, shape: str) -> otlp_phase.Config:
    return otlp_phase.Config(
        duration=args.duration or (5.0 if args.quick else 15.0), processes=args.processes,
        concurrency=args.concurrency or (8 if transport == "http" else 32), grpc_mode=args.grpc_mode,
        channels=args.channels, drain_timeout=20.0 if args.quick else 60.0, health_poll_s=args.health_poll,
        buffer_max=args.buffer_max, profile=args.py_spy, tea_env=dict(args.tea_env), work_dir=work_dir,
        results_dir=args.results_dir, shape=shape, tenants=args.tenants)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _args(argv)
    environment = _environment(argv)
    started = time.monotonic()
    print("mapping ceiling (in-process) ...")
    results: dict = {"mapping": [otlp_mapping.ceiling(shape=args.shapes[0])], "phases": []}
    work_dir = tempfile.mkdtemp(prefix="tea-bench-otlp-")
    try:
        for shape in args.shapes:
            for transport in args.transports.split(","):
                cfg = _config(args, transport, work_dir, shape)
                results["phases"].append(otlp_phase.tea_phase(cfg, transport) | {"config": vars(cfg) | {"work_dir": None}})
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    results["mapping"].append(otlp_mapping.ceiling(shape=args.shapes[0]))
    results["environment"] = environment | {"total_seconds": round(time.monotonic() - started, 1)}
    print()
    print(table(results))
    print()
    print(details(results))
    os.makedirs(args.results_dir, exist_ok=True)
    path = os.path.join(args.results_dir, f"otlp-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump(report.strip_raw(results), fh, indent=2)
    print(f"\nran {results['environment']['total_seconds']} s; results written to {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
