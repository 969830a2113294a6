"""TEA metrics query benchmark: ``python -m bench.metrics [--quick]`` from the project root.

For each dataset size: build (or reuse) a seeded synthetic day of events in a TEA data directory,
time ``GET /v1/metrics`` (hourly, per method, tenant-3, the whole day) against ``tea serve`` over
keep-alive HTTP, then — TEA stopped — the equivalent raw DuckDB SQL on the same file; check both
give the same counts, profile the SQL, and print p50/p95 against the targets. See bench/METRICS.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from typing import Callable

from bench import dataset, report, server
from bench import metrics_profile as mp
from bench import metrics_query as mq
from bench import metrics_tea

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
TARGETS_MS = {1_000_000: 15.0, 10_000_000: 50.0}  # HTTP p50/p95 bound per size; the ratio bound applies to these
TARGET_RATIO = 1.5


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or not all(0 < n < 2 ** 30 for n in sizes):
        raise argparse.ArgumentTypeError(f"expected a comma list of event counts (1 to 2**30), got {text!r}")
    return sizes


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value < high:
            raise argparse.ArgumentTypeError(f"expected {low} <= value < {high}, got {value}")
        return value
    return parse


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, help="event counts (default 1000000,10000000; quick 100000,1000000)")
    parser.add_argument("--calls", type=_bounded(1, 100_000), help="timed calls per measurement (default 50, quick 20)")
    parser.add_argument("--warmup", type=_bounded(0, 10_000), default=5, help="untimed calls before them (default 5)")
    parser.add_argument("--quick", action="store_true", help="sizes 100000,1000000 and 20 calls")
    parser.add_argument("--seed", type=_bounded(0, 2 ** 26), default=42,
                        help="dataset seed, 0 <= seed < 2**26 (default 42)")
    parser.add_argument("--rebuild", action="store_true", help="regenerate the datasets even if cached")
    parser.add_argument("--no-explain", action="store_true", help="skip the EXPLAIN ANALYZE profiles")
    parser.add_argument("--other-calls", type=_bounded(0, 100_000), default=10,
                        help="timed calls of each other question (one tenant's default metrics, three across "
                             "tenants; not in the verdict), 0 to skip (default 10)")
    parser.add_argument("--results-dir", default=RESULTS_DIR, help="datasets and JSON records (default bench/results)")
    args = parser.parse_args(argv)
    args.sizes = args.sizes or ([100_000, 1_000_000] if args.quick else [1_000_000, 10_000_000])
    args.calls = args.calls or (20 if args.quick else 50)
    return args


def _label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n / 1_000:g}k" if n % 1_000 == 0 else str(n)


def _dataset(n: int, args: argparse.Namespace) -> dict:
    data = dataset.ensure(args.results_dir, n, args.seed, args.rebuild)
    how = "cached, built" if data["cached"] else "generated"
    print(f"{_label(n)}: dataset {os.path.relpath(data['path'])} {how} in {data['generation_seconds']:.1f} s "
          f"({data['bytes'] / 2 ** 20:,.0f} MiB, {data['bytes'] / data['rows']:.1f} B per event)", flush=True)
    return data


def _check(n: int, http: dict, sql: dict) -> dict:
    check = mq.compare(http.pop("cells"), sql.pop("cells"))
    check["shape_problem"] = http["shape_problem"]
    if check["count_mismatches"] or check["shape_problem"]:
        print(f"!!! {_label(n)}: TEA's answer DIFFERS from raw SQL: {check['count_mismatches']} (bucket, method) "
              f"counts differ, e.g. {check['first_mismatches']}; shape: {check['shape_problem'] or 'ok'}", flush=True)
    return check


def _profiles(db_path: str) -> dict:
    profiles = {"raw_sql": mp.profile(db_path, mq.RAW_SQL, mq.RAW_PARAMS)}
    generated = metrics_tea.tea_sql()
    if generated is not None:
        profiles["tea_sql"] = mp.profile(db_path, *generated)
    return profiles


def run_size(n: int, args: argparse.Namespace) -> dict:
    data = _dataset(n, args)
    db_path = os.path.join(data["path"], "tea.duckdb")
    http = mq.http_phase(data["path"], args.calls, args.warmup, args.other_calls)
    print(f"{_label(n)}: HTTP p50 {http['latency_ms']['p50']} ms (TEA ready in {http['ready_seconds']} s)", flush=True)
    sql = mq.sql_phase(db_path, args.calls, args.warmup)
    print(f"{_label(n)}: raw SQL p50 {sql['latency_ms']['p50']} ms", flush=True)
    result = {"events": n, "dataset": data, "http": http, "sql": sql, "check": _check(n, http, sql),
              "git": git_state()}
    if not args.no_explain:
        result["explain"] = _profiles(db_path)
    return result


DISK_AIM_BYTES = 60  # bytes on disk per stored event


def _verdict(n: int, http_ms: dict, ratio: float) -> tuple[str, str]:
    """Targets exist for 1M and 10M events only: HTTP p50 and p95 under the bound, p50 ratio <= 1.5."""
    target = TARGETS_MS.get(n)
    if target is None:
        return "-", "-"
    misses = [p for p in ("p50", "p95") if http_ms[p] > target] + (["ratio"] if ratio > TARGET_RATIO else [])
    return f"<= {target:g} ms, ratio <= {TARGET_RATIO:g}", ("MISSED " + ",".join(misses)) if misses else "met"


def table(results: list[dict]) -> str:
    head = f"{'events':<8}{'HTTP p50':>10}{'HTTP p95':>10}{'raw SQL p50':>13}{'raw SQL p95':>13}{'ratio(p50)':>12}  "
    lines = [head + f"{'target':<24}verdict"]
    for r in results:
        h, s = r["http"]["latency_ms"], r["sql"]["latency_ms"]
        ratio = h["p50"] / s["p50"] if s["p50"] else float("inf")
        target, verdict = _verdict(r["events"], h, ratio)
        lines.append(f"{_label(r['events']):<8}{h['p50']:>10.2f}{h['p95']:>10.2f}{s['p50']:>13.2f}{s['p95']:>13.2f}"
                     f"{ratio:>12.2f}  {target:<24}{verdict}")
    lines.append("(times in ms, wall time per call, sequential calls; verdict on HTTP p50/p95 and the p50 ratio)")
    for r in results:
        per_event = r["dataset"]["bytes"] / r["dataset"]["rows"]
        lines.append(f"{_label(r['events'])}: DuckDB file {r['dataset']['bytes'] / 2 ** 20:,.0f} MiB = {per_event:.1f} B "
                     f"per stored event (aim <= {DISK_AIM_BYTES} B: {'met' if per_event <= DISK_AIM_BYTES else 'above'}; "
                     f"row groups of {r['dataset'].get('row_group_size', 'TEA default')} rows)")
    return "\n".join(lines)


def _split_lines(h: dict, s: dict) -> list[str]:
    """Where the HTTP p50 goes: TEA's SQL, TEA's shaping, the HTTP floor, the rest."""
    if "tea_sql" not in s:
        return []
    total, sql, floor = h["latency_ms"]["p50"], s["tea_sql"]["latency_ms"]["p50"], h["healthz_ms"]["p50"]
    shaping = s.get("tea_shaping", {}).get("latency_ms", {}).get("p50", 0.0)
    rest = total - sql - shaping - floor
    return [f"  TEA's own SQL run raw: p50 {sql} ms, p95 {s['tea_sql']['latency_ms']['p95']} ms "
            f"({sql / s['latency_ms']['p50']:.2f}x the raw SQL)",
            f"  HTTP p50 {total:.2f} ms = TEA's SQL {sql:.2f} + shaping rows to JSON {shaping:.2f} "
            f"+ HTTP round trip (/healthz p50) {floor:.2f} + rest {rest:.2f} ms"]


def _detail_lines(r: dict) -> list[str]:
    h, s, c = r["http"], r["sql"], r["check"]
    lines = [f"{_label(r['events'])}: HTTP min/mean/max {h['latency_ms']['min']}/{h['latency_ms']['mean']}/"
             f"{h['latency_ms']['max']} ms, body {h['body_bytes']:,} B, TEA RSS {h['rss_mib']} MiB, "
             f"ready in {h['ready_seconds']} s, SIGTERM exit {h['stop']['exit_code']} in {h['stop']['stop_seconds']} s"]
    lines += _split_lines(h, s)
    ok = "match" if not c["count_mismatches"] else f"{c['count_mismatches']} MISMATCHES"
    lines.append(f"  check: {c['cells']} (bucket, method) cells, counts {ok}; shape {c['shape_problem'] or 'ok'}; "
                 f"max relative gap avg {c['max_rel_gap_avg']:.1e}, p95 {c['max_rel_gap_p95']:.1e}")
    for name, prof in r.get("explain", {}).items():
        lines.append(f"  EXPLAIN ANALYZE {name}: {mp.summary(prof)}")
    for name, ms in h.get("other_queries_ms", {}).items():
        lines.append(f"  other question, {name}: HTTP p50 {ms['p50']} ms, p95 {ms['p95']} ms ({ms['n']} calls)")
    return lines


def git_state() -> dict:
    """The commit and the uncommitted changes under tea/ (others edit it while benchmarks run)."""
    def git(*argv: str) -> str:
        try:
            done = subprocess.run(["git", *argv], cwd=server.ROOT, capture_output=True, text=True, timeout=10)
            return done.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    diff = git("diff", "HEAD", "--", "tea")
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "tea_uncommitted": git("status", "--porcelain", "--", "tea").splitlines(),
            "tea_diff_sha1": hashlib.sha1(diff.encode()).hexdigest()[:12] if diff else None}


def write_json(record: dict, directory: str) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"metrics-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump(record, fh, indent=2, default=str)
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _args(argv)
    environment = report.environment(["python -m bench.metrics", *argv]) | {"git": git_state()}
    print(f"TEA at {environment['git']['commit']}, uncommitted under tea/: "
          f"{', '.join(environment['git']['tea_uncommitted']) or 'none'}", flush=True)
    started = time.monotonic()
    results = [run_size(n, args) for n in args.sizes]
    if any(r["git"] != environment["git"] for r in results):
        print("!!! tea/ changed during this run (see git in the JSON): sizes may have run different TEA code")
    environment["total_seconds"] = round(time.monotonic() - started, 1)
    print()
    print(table(results))
    print()
    print("\n".join(line for r in results for line in _detail_lines(r)))
    record = {"environment": environment, "config": vars(args) | {"path": mq.PATH, "raw_sql": mq.RAW_SQL},
              "results": results, "table": table(results)}
    path = write_json(record, args.results_dir)
    print(f"\nran {environment['total_seconds']} s; results written to {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
