"""The printed table and the JSON record of one benchmark run."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib import metadata

TARGET_A = 200_000  # events/s acknowledged, 1 000-event batches, durable ack
TARGET_B = 10_000   # single-event requests/s


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _vs_target(value: float, target: float) -> str:
    ratio = _ratio(value, target)
    return f"{ratio:.2f}x {'met' if ratio >= 1 else 'MISSED'}"


def rows(r: dict) -> list[tuple[str, str, str, str]]:
    """(measure, value, target, ratio) rows of the summary table."""
    acked = r["a"]["load"]["events_per_s"]
    stored = r["a"]["stored"]["events_per_s"]
    single = r["b"]["load"]["requests_per_s"]
    duck, noop = r["c"]["rows_per_s"], r["d"]["requests_per_s"]
    partial = "" if r["a"]["stored"]["complete"] else " (incomplete)"
    peak = max(r["a"]["rss"]["peak_mib"], r["b"]["rss"]["peak_mib"])
    return [
        ("(a) events/s acknowledged (1000/batch)", f"{acked:,.0f}", f">= {TARGET_A:,}", _vs_target(acked, TARGET_A)),
        ("(a) events/s stored" + partial, f"{stored:,.0f}", "", ""),
        ("(b) single-event requests/s", f"{single:,.0f}", f">= {TARGET_B:,}", _vs_target(single, TARGET_B)),
        ("(c) DuckDB bulk load rows/s", f"{duck:,.0f}", "", ""),
        ("(d) no-op endpoint requests/s", f"{noop:,.0f}", "", ""),
        ("a/c (acknowledged / DuckDB)", f"{_ratio(acked, duck):.2f}", "", ""),
        ("a/c (stored / DuckDB)", f"{_ratio(stored, duck):.2f}", "", ""),
        ("b/d (TEA / no-op)", f"{_ratio(single, noop):.2f}", "", ""),
        ("TEA peak RSS under load", f"{peak:,.0f} MiB", "", ""),
    ]


def table(r: dict) -> str:
    lines = [f"{'measure':<42}{'value':>14}  {'target':<12}{'ratio'}"]
    lines += [f"{m:<42}{v:>14}  {t:<12}{x}".rstrip() for m, v, t, x in rows(r)]
    return "\n".join(lines)


def _load_line(label: str, load: dict) -> str:
    lat = load["latency_ms"]
    return (f"{label}: {load['processes']}x{load['connections_per_process']} connections, {load['seconds']:.1f} s, "
            f"200={load['ok']:,} 207={load['partial']:,} 503={load['busy']:,} other={load['other']:,} "
            f"errors={load['errors']:,} reconnects={load['reconnects']:,}; "
            f"latency ms p50={lat['p50']} p90={lat['p90']} p99={lat['p99']} max={lat['max']}")


def _tea_lines(label: str, phase: dict) -> list[str]:
    load, stored, rss, backlog = phase["load"], phase["stored"], phase["rss"], phase["backlog"]
    drain = stored["drain_seconds_after_load"]
    rows_ok = "matches" if phase["rows_in_duckdb"] == load["events_acked"] else "DIFFERS from"
    return [
        _load_line(label, load),
        f"  stored {stored['events']:,} events in {stored['seconds']:.1f} s from load start"
        + (f" ({drain:.1f} s of drain after the load)" if drain is not None else " (storage did NOT catch up)"),
        f"  DuckDB file after shutdown: {phase['rows_in_duckdb']} rows, {rows_ok} "
        f"{load['events_acked']:,} acknowledged events",
        f"  backlog peak {backlog['peak_mib']:.0f} MiB (at load end {backlog['at_load_end_mib']:.0f} MiB); "
        f"RSS idle {rss['idle_mib']:.0f} MiB, peak during load {rss['peak_during_load_mib']:.0f} MiB, "
        f"peak incl. drain {rss['peak_mib']:.0f} MiB",
        f"  SIGTERM -> exit {phase['stop']['exit_code']} in {phase['stop']['stop_seconds']:.1f} s"
        f"{' (KILLED)' if phase['stop']['killed'] else ''}; /health poll failures {phase['health_failures']}",
    ]


def details(r: dict) -> str:
    c, cfg, env = r["c"], r["config"], r["environment"]
    extra = "".join(f" {key}={value}" for key, value in cfg["tea_env"].items())
    lines = [f"Python {env['python']}, {env['cpus']} CPUs; {cfg['duration']:g} s per load phase; "
             f"{cfg['processes']} load process(es); TEA_BUFFER__MAX_BYTES={cfg['buffer_max']}{extra}",
             _load_line("(d) no-op", r["d"])]
    lines += _tea_lines("(a) TEA 1000/batch", r["a"])
    lines += _tea_lines("(b) TEA single", r["b"])
    lines.append(f"(c) DuckDB: {c['rows']:,} rows ({c['rows_in_table']:,} in table) in {c['seconds']:.2f} s, "
                 f"{c['batch_events']:,} per INSERT")
    return "\n".join(lines)


def environment(argv: list[str]) -> dict:
    versions = {}
    for name in ("tea", "duckdb", "uvicorn", "uvloop", "httptools", "msgspec", "psutil"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(argv),
            "python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
            "versions": versions}


def strip_raw(r: dict) -> dict:
    """The results without the raw latency arrays."""
    out = {}
    for key, value in r.items():
        if isinstance(value, dict):
            out[key] = strip_raw(value)
        elif key != "latencies":
            out[key] = value
    return out


def write_json(r: dict, directory: str) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"ingest-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump(strip_raw(r), fh, indent=2)
    return path
