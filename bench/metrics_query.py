"""The metrics query, timed over HTTP against ``tea serve`` and as raw SQL against DuckDB.

Both sides answer the same question — tenant-3, the whole synthetic day, hourly buckets, one
series per method, requests / average / p95 latency — and their counts per (bucket, method) are
compared. To split the HTTP time, three more things are timed: ``GET /healthz`` on the same
connection (the HTTP round-trip floor), the SQL TEA itself generates for the request (top-N groups
via a CTE and a SEMI JOIN, compensated averages) on the raw connection, and TEA's shaping of those
rows into the JSON answer, in this process (see bench/metrics_tea.py).
"""
from __future__ import annotations

import http.client
import json
import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import duckdb
import psutil

from bench import metrics_tea, server

TENANT, GROUPS = metrics_tea.TENANT, metrics_tea.GROUPS
START = datetime(2026, 11, 20)  # naive = UTC, as TEA stores TIMESTAMP
END = START + timedelta(days=1)
BUCKETS = 24
PATH = ("/v1/metrics?tenant_id=tenant-3&granularity=hour&metrics=requests,avg_latency_ms,p95_latency_ms"
        "&group_by=method&limit=20&start_time=2026-11-20T00:00:00Z&end_time=2026-11-21T00:00:00Z")
RAW_SQL = ("SELECT time_bucket(INTERVAL 1 HOUR, timestamp) AS bucket, method, count(*), avg(duration_ms), "
           "quantile_cont(duration_ms, 0.95) FROM events WHERE tenant_id = ? AND timestamp >= ? "
           "AND timestamp < ? GROUP BY ALL")
RAW_PARAMS = [TENANT, START, END]
_DAY = "&start_time=2026-11-20T00:00:00Z&end_time=2026-11-21T00:00:00Z"
# other questions timed on the same server (not part of the verdict): one tenant with the default metric set,
# and questions across every tenant (as the admin: only an admin reads across tenants), which scan every partition
OTHER_PATHS = {
    "tenant-3, default metrics, per method": "/v1/metrics?tenant_id=tenant-3&granularity=hour&group_by=method" + _DAY,
    "all tenants, default metrics, per tenant": "/v1/metrics?granularity=hour&group_by=tenant_id" + _DAY,
    "all tenants, requests+p95, per method": ("/v1/metrics?granularity=hour&metrics=requests,p95_latency_ms"
                                              "&group_by=method&limit=20" + _DAY),
    "all tenants, daily requests/errors/tokens/cost, per tenant": (
        "/v1/metrics?granularity=day&metrics=requests,errors,tokens,cost&group_by=tenant_id&limit=1000" + _DAY),
}
EPOCH = datetime(1970, 1, 1)


def percentiles(values_ms: list[float]) -> dict:
    """p50/p95 by linear interpolation between closest ranks, plus min/max/mean."""
    ordered = sorted(values_ms)

    def pct(q: float) -> float:
        pos = q * (len(ordered) - 1)
        low = int(pos)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)

    return {"p50": round(pct(0.5), 3), "p95": round(pct(0.95), 3), "min": round(ordered[0], 3),
            "max": round(ordered[-1], 3), "mean": round(sum(ordered) / len(ordered), 3), "n": len(ordered)}


def time_calls(call: Callable[[], Any], calls: int, warmup: int) -> tuple[list[float], Any]:
    """Run ``call`` warmup + calls times, sequentially; ms per timed call and the last answer."""
    answer = None
    for _ in range(warmup):
        answer = call()
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        answer = call()
        timings.append((time.perf_counter() - started) * 1000)
    return timings, answer


# ----------------------------------------------------------------- HTTP
def _http_call(conn: http.client.HTTPConnection, path: str, token: str | None = None) -> Callable[[], bytes]:
    headers = {"authorization": f"Bearer {token}"} if token else {}

    def call() -> bytes:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
        return body
    return call


def _http_cells(body: bytes) -> tuple[dict, str | None]:
    """{(bucket µs, method): (requests, avg, p95)} of non-empty cells, and a shape problem if any."""
    answer = json.loads(body)
    series = answer.get("series", [])
    problem = None
    if len(series) != GROUPS or any(len(s["points"]) != BUCKETS for s in series):
        problem = f"expected {GROUPS} series x {BUCKETS} points, got {[len(s['points']) for s in series]}"
    cells = {}
    for s in series:
        for p in s["points"]:
            if p["requests"]:
                stamp = datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00"))
                cells[(_us(stamp), s["group"]["method"])] = (p["requests"], p["avg_latency_ms"], p["p95_latency_ms"])
    return cells, problem


def _us(stamp: datetime) -> int:
    naive = stamp.astimezone(timezone.utc).replace(tzinfo=None) if stamp.tzinfo else stamp
    return (naive - EPOCH) // timedelta(microseconds=1)


def http_phase(data_dir: str, calls: int, warmup: int, other_calls: int = 0) -> dict:
    """Start ``tea serve`` on data_dir, time the request (and OTHER_PATHS ``other_calls`` times each), stop it."""
    port = server.free_port()
    tea = server.tea_server(os.path.abspath(data_dir), port, {"TEA_RETENTION_HOURS": "0"})
    started = time.perf_counter()
    tea.start(timeout=300)
    ready_s = time.perf_counter() - started
    conn = http.client.HTTPConnection(server.HOST, port, timeout=300)
    token = server.create_token(port, "tenant-3")  # the query runs as tenant-3, through token auth
    try:
        timings, body = time_calls(_http_call(conn, PATH, token), calls, warmup)
        floor, _ = time_calls(_http_call(conn, "/healthz"), calls, warmup)
        others = {name: percentiles(time_calls(_http_call(conn, path, token if "?tenant_id=" in path
                                                          else server.ADMIN_TOKEN), other_calls, 2)[0])
                  for name, path in OTHER_PATHS.items()} if other_calls else {}
        rss = psutil.Process(tea.proc.pid).memory_info().rss  # type: ignore[union-attr]
    finally:
        conn.close()
        stop = tea.stop()
    cells, problem = _http_cells(body)
    return {"latency_ms": percentiles(timings), "latencies": timings, "healthz_ms": percentiles(floor),
            "ready_seconds": round(ready_s, 2), "other_queries_ms": others,
            "rss_mib": round(rss / 2 ** 20, 1), "stop": stop, "body_bytes": len(body), "shape_problem": problem,
            "cells": cells}


# ----------------------------------------------------------------- raw SQL
def _sql_cells(rows: list[tuple]) -> dict:
    return {(_us(bucket), method): (n, avg, p95) for bucket, method, n, avg, p95 in rows}


def sql_phase(db_path: str, calls: int, warmup: int) -> dict:
    """Time RAW_SQL (and TEA's own SQL) on a read-only connection to the file TEA just released."""
    con = duckdb.connect(db_path, read_only=True)
    try:
        con.execute("SET enable_progress_bar = false")
        timings, rows = time_calls(lambda: con.execute(RAW_SQL, RAW_PARAMS).fetchall(), calls, warmup)
        out = {"latency_ms": percentiles(timings), "latencies": timings, "rows": len(rows), "cells": _sql_cells(rows)}
        out.update(_tea_parts(con, calls, warmup))
        return out
    finally:
        con.close()


def _tea_parts(con: duckdb.DuckDBPyConnection, calls: int, warmup: int) -> dict:
    """TEA's own SQL on the same connection, and TEA's shaping of its rows into the response."""
    generated = metrics_tea.tea_sql()
    if generated is None:
        return {}
    sql, params = generated
    timings, rows = time_calls(lambda: con.execute(sql, params).fetchall(), calls, warmup)
    out = {"tea_sql": {"sql": sql, "latency_ms": percentiles(timings), "latencies": timings}}
    shape = metrics_tea.shaping(rows)
    if shape is not None:
        shape_timings, _ = time_calls(shape, calls, warmup)
        out["tea_shaping"] = {"latency_ms": percentiles(shape_timings), "latencies": shape_timings}
    return out


def compare(http_cells: dict, sql_cells: dict) -> dict:
    """Counts must be equal per (bucket, method); avg and p95 are reported as the largest relative gap."""
    count_diffs = sorted(key for key in http_cells.keys() | sql_cells.keys()
                         if http_cells.get(key, (0,))[0] != sql_cells.get(key, (0,))[0])
    gaps = {"avg": 0.0, "p95": 0.0}
    for key in http_cells.keys() & sql_cells.keys():
        for index, name in ((1, "avg"), (2, "p95")):
            a, b = http_cells[key][index], sql_cells[key][index]
            gaps[name] = max(gaps[name], abs(a - b) / max(abs(b), 1e-12))
    return {"cells": len(sql_cells), "count_mismatches": len(count_diffs),
            "first_mismatches": [list(k) for k in count_diffs[:5]],
            "max_rel_gap_avg": gaps["avg"], "max_rel_gap_p95": gaps["p95"]}
