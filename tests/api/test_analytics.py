"""Analytics over real HTTP: /v1/metrics against a brute-force reference, the seed's /metrics,
the Prometheus scrape, stats, usage (JSON, CSV) and retention."""
from __future__ import annotations

import csv
import io
import math
import os
import random
import time
from datetime import datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.test_ingest import assert_error_shape
from tests.conftest import BACKENDS, LiveServer, backend_settings, one_backend, wait_for

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR_MS = 3_600_000


def post_all(client: httpx.Client, server: LiveServer, events: list[dict]) -> None:
    for start in range(0, len(events), 5000):
        r = client.post("/v1/events", json=events[start:start + 5000])
        assert r.status_code == 200, r.text
    server.wait_stored(len(events))


def random_events(seed: int, n: int, hours: int = 6) -> list[dict]:
    rng = random.Random(seed)
    events = []
    for i in range(n):
        e = {"event_type": rng.choice(["mcp_request", "a2a_call"]), "tenant_id": rng.choice(["acme", "beta"]),
             "timestamp": T0_MS + rng.randrange(hours * HOUR_MS), "method": rng.choice(["tools/list", "tools/call",
                                                                                       "resources/read"]),
             "status": rng.choice(["ok", "ok", "ok", "error", "timeout"]), "user_id": f"u{rng.randrange(7)}",
             "duration_ms": round(rng.lognormvariate(3, 0.8), 3), "request_size": rng.randrange(5000),
             "response_size": rng.randrange(20000), "tokens_used": rng.randrange(100), "cost": rng.randrange(100) / 1000}
        if rng.random() < 0.1:
            del e["duration_ms"]
        events.append(e)
    return events


def quantile(values: list[float], q: float) -> float:
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def expected_point(members: list[dict]) -> dict:
    durations = [e["duration_ms"] for e in members if "duration_ms" in e]
    errors = sum(e["status"] in ("error", "timeout") for e in members)
    return {"requests": len(members), "errors": errors, "error_rate": errors / len(members),
            "avg_latency_ms": sum(durations) / len(durations), "min_latency_ms": min(durations),
            "max_latency_ms": max(durations), "p50_latency_ms": quantile(durations, 0.5),
            "p90_latency_ms": quantile(durations, 0.9), "p95_latency_ms": quantile(durations, 0.95),
            "p99_latency_ms": quantile(durations, 0.99),
            "request_mb": sum(e["request_size"] for e in members) / 1e6,
            "response_mb": sum(e["response_size"] for e in members) / 1e6,
            "data_mb": sum(e["request_size"] + e["response_size"] for e in members) / 1e6,
            "tokens": sum(e["tokens_used"] for e in members), "cost": sum(e["cost"] for e in members),
            "unique_users": len({e["user_id"] for e in members})}


ALL_METRICS = ("requests,errors,error_rate,avg_latency_ms,min_latency_ms,max_latency_ms,p50_latency_ms,"
               "p90_latency_ms,p95_latency_ms,p99_latency_ms,request_mb,response_mb,data_mb,tokens,cost,unique_users")


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


@pytest.mark.parametrize("group_by", ["", "method", "status,tenant_id"])
def test_metrics_match_brute_force(client: httpx.Client, server: LiveServer, group_by: str) -> None:
    events = random_events(11, 1500)
    post_all(client, server, events)
    params = {"metrics": ALL_METRICS, "granularity": "hour", "start_time": iso(T0_MS + HOUR_MS // 2),
              "end_time": iso(T0_MS + 5 * HOUR_MS), "tenant_id": "acme", "limit": "100"}
    if group_by:
        params["group_by"] = group_by
    body = client.get("/v1/metrics", params=params).json()
    assert body["granularity"] == "hour" and body["metrics"] == ALL_METRICS.split(",")
    keys = group_by.split(",") if group_by else []
    lo, hi = T0_MS + HOUR_MS // 2, T0_MS + 5 * HOUR_MS
    kept = [e for e in events if e["tenant_id"] == "acme" and lo <= e["timestamp"] < hi]
    cells: dict = {}
    for e in kept:
        cells.setdefault(tuple(e[k] for k in keys), {}).setdefault(e["timestamp"] // HOUR_MS * HOUR_MS, []).append(e)
    assert {tuple(s["group"][k] for k in keys) for s in body["series"]} == set(cells)
    for series in body["series"]:
        buckets = cells[tuple(series["group"][k] for k in keys)]
        assert [p["timestamp"] for p in series["points"]] == [iso(T0_MS + h * HOUR_MS) for h in range(5)]
        for point in series["points"]:
            start = T0_MS + [iso(T0_MS + h * HOUR_MS) for h in range(5)].index(point["timestamp"]) * HOUR_MS
            want = expected_point(buckets[start]) if start in buckets else None
            for name in ALL_METRICS.split(","):
                if want is None:
                    assert point[name] == 0, (name, point)
                else:
                    assert math.isclose(point[name], want[name], rel_tol=1e-9, abs_tol=1e-12), (name, point, want)


def test_series_are_top_n_groups_by_requests(client: httpx.Client, server: LiveServer) -> None:
    events = [{"event_type": "x", "method": m, "timestamp": T0_MS + i} for m, n in
              (("a", 5), ("b", 9), ("c", 7), ("d", 1)) for i in range(n)]
    post_all(client, server, events)
    body = client.get("/v1/metrics", params={"group_by": "method", "limit": "2", "granularity": "day",
                                             "start_time": iso(T0_MS), "end_time": iso(T0_MS + 24 * HOUR_MS)}).json()
    assert [(s["group"]["method"], s["points"][0]["requests"]) for s in body["series"]] == [("b", 9), ("c", 7)]


def filterable_events() -> list[dict]:
    events = random_events(23, 600)
    for i, e in enumerate(events):
        e.update(source=f"s{i % 3}", target=None if i % 4 == 0 else f"x{i % 2}", protocol=("mcp", "a2a")[i % 2],
                 trace_id=f"tr{i % 5}", correlation_id=f"c{i % 7}")
    return events


@pytest.mark.parametrize("name, value", [("method", "tools/call"), ("source", "s1"), ("status", "timeout"),
                                         ("event_type", "a2a_call"), ("user_id", "u3"), ("protocol", "a2a"),
                                         ("target", "x1"), ("trace_id", "tr2"), ("correlation_id", "c6")])
def test_metrics_take_every_events_filter(client: httpx.Client, server: LiveServer, name: str, value: str) -> None:
    events = filterable_events()
    post_all(client, server, events)
    window = {"start_time": iso(T0_MS), "end_time": iso(T0_MS + 6 * HOUR_MS)}
    body = client.get("/v1/metrics", params={**window, name: value, "granularity": "hour",
                                             "metrics": "requests,errors,p95_latency_ms,tokens"}).json()
    kept = [e for e in events if e.get(name) == value]
    assert 0 < len(kept) < len(events)
    [series] = body["series"]
    for h, point in enumerate(series["points"]):
        members = [e for e in kept if T0_MS + h * HOUR_MS <= e["timestamp"] < T0_MS + (h + 1) * HOUR_MS]
        want = expected_point(members)
        assert (point["requests"], point["errors"], point["tokens"]) == (want["requests"], want["errors"],
                                                                           want["tokens"]), (h, point)
        assert math.isclose(point["p95_latency_ms"], want["p95_latency_ms"], rel_tol=1e-9), (h, point)
    listed = client.get("/v1/events", params={**window, name: value, "limit": "1"}).json()["total_count"]
    assert listed == len(kept) == sum(p["requests"] for p in series["points"])


def calendar_buckets(start: datetime, end: datetime, granularity: str) -> list[datetime]:
    """Every bucket start from the one holding ``start`` to before ``end``, by the calendar (not tea.timebuckets)."""
    if granularity == "minute":
        first, step = start.replace(second=0, microsecond=0), timedelta(minutes=1)
    elif granularity == "day":
        first, step = start.replace(hour=0, minute=0, second=0, microsecond=0), timedelta(days=1)
    elif granularity == "week":  # ISO weeks start on Monday
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        first, step = day - timedelta(days=day.weekday()), timedelta(weeks=1)
    else:
        first, step = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0), None
    out = []
    while first < end:
        out.append(first)
        first = first + step if step else (first.replace(year=first.year + 1, month=1) if first.month == 12
                                           else first.replace(month=first.month + 1))
    return out


@pytest.mark.parametrize("granularity, start, end, stamps", [
    ("minute", "2026-01-01T10:00:30Z", "2026-01-01T10:09:00Z",
     ["2026-01-01T10:00:30Z", "2026-01-01T10:00:59.999999Z", "2026-01-01T10:01:00Z", "2026-01-01T10:07:10Z"]),
    ("day", "2026-01-01T05:00:00Z", "2026-01-09T00:00:00Z",
     ["2026-01-01T05:00:00Z", "2026-01-02T00:00:00Z", "2026-01-02T23:59:59.999999Z", "2026-01-07T12:00:00Z"]),
    ("week", "2026-01-01T00:00:00Z", "2026-02-20T00:00:00Z",  # 2026-01-01 is a Thursday
     ["2026-01-01T00:00:00Z", "2026-01-04T23:59:59Z", "2026-01-05T00:00:00Z", "2026-02-09T08:00:00Z"]),
    ("month", "2025-12-15T00:00:00Z", "2026-06-01T00:00:00Z",
     ["2025-12-31T23:59:59Z", "2026-01-01T00:00:00Z", "2026-02-28T23:00:00Z", "2026-03-01T00:00:00Z",
      "2026-05-31T23:59:59Z"])])
def test_every_bucket_of_every_granularity_is_present(client: httpx.Client, server: LiveServer, granularity: str,
                                                       start: str, end: str, stamps: list[str]) -> None:
    post_all(client, server, [{"event_type": "x", "timestamp": stamp, "duration_ms": 1.0} for stamp in stamps])
    body = client.get("/v1/metrics", params={"granularity": granularity, "start_time": start, "end_time": end,
                                             "metrics": "requests,p95_latency_ms,cost"}).json()
    [series] = body["series"]
    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    buckets = calendar_buckets(parse(start), parse(end), granularity)
    assert [p["timestamp"] for p in series["points"]] == [b.strftime("%Y-%m-%dT%H:%M:%SZ") for b in buckets]
    counts = [sum(1 for stamp in stamps if b <= parse(stamp) < (buckets[i + 1] if i + 1 < len(buckets) else parse(end)))
              for i, b in enumerate(buckets)]
    assert [p["requests"] for p in series["points"]] == counts and sum(counts) == len(stamps)
    empty = [p for p in series["points"] if p["requests"] == 0]
    assert empty and all(p["p95_latency_ms"] == 0.0 and p["cost"] == 0.0 for p in empty)
    assert all(p["p95_latency_ms"] == 1.0 for p in series["points"] if p["requests"])


def ranked_events() -> list[dict]:
    """Four methods over two hours, ranked differently by requests, errors, tokens and max latency."""
    def event(method: str, i: int, **fields: object) -> dict:
        return {"event_type": "x", "method": method, "timestamp": T0_MS + (i % 2) * HOUR_MS + i, **fields}
    return ([event("a", i, status="ok" if i else "error", tokens_used=10, duration_ms=5.0) for i in range(6)]
            + [event("b", i, tokens_used=100, duration_ms=50.0 - i, **f) for i, f in
               enumerate([{"status": "error"}, {"status": "timeout"}, {"status_code": 500}])]
            + [event("c", i, status="error" if i < 2 else "ok", duration_ms=20.0) for i in range(4)]
            + [event("d", 0, error_type="Boom", tokens_used=1000)])


@pytest.mark.parametrize("order_by, expected", [
    (None, [("a", 6), ("c", 4), ("b", 3), ("d", 1)]),
    ("requests", [("a", 6), ("c", 4), ("b", 3), ("d", 1)]),
    ("errors", [("b", 3), ("c", 2), ("a", 1), ("d", 1)]),  # every error: timeouts, status codes, error types
    ("tokens", [("d", 1000), ("b", 300), ("a", 60), ("c", 0)]),  # c has no tokens at all: last
    ("max_latency_ms", [("b", 50.0), ("c", 20.0), ("a", 5.0), ("d", 0.0)])])  # d has no duration: last
def test_groups_are_ranked_by_order_by(client: httpx.Client, server: LiveServer, order_by: str | None,
                                       expected: list) -> None:
    post_all(client, server, ranked_events())
    metric = "requests" if order_by is None else order_by
    params = {"group_by": "method", "granularity": "hour", "metrics": f"requests,{metric}",
              "start_time": iso(T0_MS), "end_time": iso(T0_MS + 2 * HOUR_MS)}
    if order_by:
        params["order_by"] = order_by
    for limit in (2, 10):
        series = client.get("/v1/metrics", params={**params, "limit": str(limit)}).json()["series"]
        merge = max if metric == "max_latency_ms" else sum
        got = [(s["group"]["method"], merge(p[metric] or 0 for p in s["points"])) for s in series]
        assert got == expected[:limit], (limit, got)


def test_order_by_takes_metrics_that_add_up_over_buckets(client: httpx.Client) -> None:
    for value in ("p95_latency_ms", "error_rate", "bogus"):
        body = assert_error_shape(client.get("/v1/metrics", params={"group_by": "method", "order_by": value}),
                                  400, "invalid_parameter")
        assert body["details"]["parameter"] == "order_by" and "errors" in body["message"]


def test_empty_range_has_every_bucket_with_zeros(client: httpx.Client) -> None:
    body = client.get("/v1/metrics", params={"start_time": "2020-01-01T00:00:00Z", "end_time": "2020-01-01T03:00:00Z",
                                             "granularity": "hour"}).json()
    [series] = body["series"]
    assert series["group"] == {} and len(series["points"]) == 3
    assert all(p["requests"] == 0 and p["p95_latency_ms"] == 0 for p in series["points"])


@pytest.mark.parametrize("hours, expected", [(2, "minute"), (24, "hour"), (24 * 30, "day"), (24 * 400, "week"),
                                             (24 * 366 * 4, "month")])
def test_auto_granularity(client: httpx.Client, hours: int, expected: str) -> None:
    body = client.get("/v1/metrics", params={"start_time": iso(T0_MS), "end_time": iso(T0_MS + hours * HOUR_MS),
                                             "metrics": "requests"}).json()
    assert body["granularity"] == expected


def test_default_range_is_the_last_24_hours(client: httpx.Client) -> None:
    body = client.get("/v1/metrics", params={"granularity": "hour"}).json()
    assert len(body["series"][0]["points"]) in (24, 25)


@one_backend
@pytest.mark.parametrize("params, name", [
    ({"metrics": "requests,bogus"}, "metrics"), ({"granularity": "fortnight"}, "granularity"),
    ({"group_by": "colour"}, "group_by"), ({"limit": "0"}, "limit"),
    ({"granularity": "minute", "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-03-01T00:00:00Z"}, "granularity"),
    ({"start_time": "2026-01-02T00:00:00Z", "end_time": "2026-01-01T00:00:00Z"}, "end_time"),
    ({"colour": "red"}, "colour")])
def test_bad_metric_parameters(client: httpx.Client, params: dict, name: str) -> None:
    body = assert_error_shape(client.get("/v1/metrics", params=params), 400, "invalid_parameter")
    assert body["details"]["parameter"] == name


@pytest.mark.parametrize("path", ["/metrics", "/tea/metrics"])
def test_seed_metrics_shape(client: httpx.Client, server: LiveServer, path: str) -> None:
    post_all(client, server, [{"event_type": "mcp_request", "tenant_id": "acme-corp", "timestamp": T0_MS + i * 1000,
                               "duration_ms": 10 * i, "status_code": 500 if i == 3 else 200, "request_size": 1000,
                               "response_size": 1000} for i in range(4)])
    r = client.get(path, params={"tenant_id": "acme-corp", "metric_type": "requests", "granularity": "hour",
                                 "start_time": iso(T0_MS), "end_time": iso(T0_MS + 2 * HOUR_MS)})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["granularity"] == "hour" and len(body["metrics"]) == 2
    first, second = body["metrics"]
    assert set(first) == {"timestamp", "total_requests", "error_rate", "avg_latency_ms", "total_data_mb"}
    assert first == {"timestamp": "2026-01-01T00:00:00Z", "total_requests": 4, "error_rate": 0.25,
                     "avg_latency_ms": 15.0, "total_data_mb": 0.008}
    assert second["total_requests"] == 0 and second["avg_latency_ms"] == 0


def test_bare_metrics_is_the_prometheus_scrape(client: httpx.Client, server: LiveServer) -> None:
    post_all(client, server, [{"event_type": "x"}] * 7)
    client.post("/v1/events", json=[{"event_type": ""}])
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    accepted = {tuple(s.labels.values()): s.value for s in families["tea_events_accepted"].samples
                if s.name == "tea_events_accepted_total"}
    assert accepted[("native",)] == 7
    rejected = {tuple(s.labels.items()): s.value for s in families["tea_events_rejected"].samples
                if s.name == "tea_events_rejected_total"}
    assert rejected[(("protocol", "native"), ("reason", "invalid_event"))] == 1
    for name in ("tea_http_request_duration_seconds", "tea_buffer_bytes", "tea_buffer_segments",
                 "tea_writer_lag_seconds", "tea_writer_batch_events", "tea_storage_write_seconds",
                 "tea_storage_query_seconds", "tea_retention_purged_events", "tea_auth_attempts"):
        assert name in families, name
    routes = {s.labels.get("route") for s in families["tea_http_request_duration_seconds"].samples}
    assert "/v1/events" in routes
    # a JSON client on the same path gets the seed's shape
    assert "metrics" in client.get("/metrics", headers={"accept": "application/json"}).json()


def buffer_disk_reads(client: httpx.Client) -> dict[str, float]:
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    return {name: families[name].samples[0].value for name in ("tea_buffer_disk_read_records",
                                                               "tea_buffer_corrupt_records")}


@pytest.mark.parametrize("recent_bytes, from_disk", [(0, True), (1 << 30, False)])
def test_records_read_back_from_the_segment_files_are_counted(serve, recent_bytes: int, from_disk: bool) -> None:
    """With no memory window the writer reads every record back from disk, and /metrics says how many;
    within the window it reads none."""
    server = serve(socket=False, storage_backend="memory", buffer__recent_bytes=recent_bytes)
    for n in range(3):
        assert server.client.post("/v1/events", json=[{"event_type": "x"}] * 10).status_code == 200
    server.wait_stored(30)
    counted = buffer_disk_reads(server.client)
    assert counted["tea_buffer_corrupt_records"] == 0
    if from_disk:
        consumers = len(server.client.get("/health").json()["consumers"])  # (the writer and each processor)
        assert 3 <= counted["tea_buffer_disk_read_records"] <= 3 * consumers
    else:
        assert counted["tea_buffer_disk_read_records"] == 0


def storage_reads(client: httpx.Client) -> dict[str, float]:
    """``tea_storage_query_seconds`` observations so far, by operation."""
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    return {s.labels["operation"]: s.value for s in families["tea_storage_query_seconds"].samples
            if s.name == "tea_storage_query_seconds_count"}


@pytest.mark.parametrize("path, params", [
    ("/v1/events", {}), ("/events", {}), ("/v1/export", {}), ("/v1/export", {"format": "csv"}),
    ("/v1/export", {"format": "parquet"}), ("/v1/traces", {}), ("/v1/traces/t1", {}),
    ("/v1/communications", {}), ("/v1/communications/health", {}), ("/v1/communications/matrix", {}),
    ("/v1/metrics", {}), ("/v1/stats", {}), ("/v1/stats/s1", {}), ("/v1/usage", {})])
def test_storage_query_latency_is_recorded_on_every_read_path(client: httpx.Client, server: LiveServer,
                                                             path: str, params: dict) -> None:
    post_all(client, server, [{"event_type": "span", "trace_id": "t1", "span_id": "a", "source": "s1",
                               "timestamp": int(time.time() * 1000), "duration_ms": 5.0}])
    before = storage_reads(client)
    assert client.get(path, params=params).status_code == 200
    after = storage_reads(client)
    grown = {op for op, n in after.items() if n > before.get(op, 0)}
    assert grown, f"{path} read storage untimed"


def test_stats(client: httpx.Client, server: LiveServer) -> None:
    post_all(client, server, [{"event_type": t, "source": s, "timestamp": T0_MS + i * 1000}
                              for i, (t, s) in enumerate([("Heartbeat", "1001"), ("Heartbeat", "1001"),
                                                          ("Login", "1001"), ("Heartbeat", "1002"), ("Orphan", None)])])
    assert client.get("/v1/stats").json() == {"sources_count": 2, "events_count": 5,
                                              "event_types": {"Heartbeat": 3, "Login": 1, "Orphan": 1}}
    assert client.get("/v1/stats/1001").json() == {
        "source": "1001", "total_events": 3, "first_event": "2026-01-01T00:00:00Z",
        "last_event": "2026-01-01T00:00:02Z", "event_types": {"Heartbeat": 2, "Login": 1}}
    assert_error_shape(client.get("/v1/stats/9999"), 404, "source_not_found")


def test_usage_json_and_csv(client: httpx.Client, server: LiveServer) -> None:
    day = 24 * HOUR_MS
    events = [{"event_type": "x", "tenant_id": t, "timestamp": T0_MS + d * day + 1000, "method": m,
               "user_id": u, "request_size": 2_000_000, "response_size": 500_000, "tokens_used": 10, "cost": 0.25,
               "status": "error" if m == "boom" else "ok"}
              for t, d, m, u in [("acme", 0, "tools/call", "a"), ("acme", 0, "tools/call", "b"),
                                 ("acme", 0, "boom", "a"), ("acme", 1, "tools/list", "a"), ("beta", 0, "tools/call", "z")]]
    post_all(client, server, events)
    params = {"period": "day", "start_time": iso(T0_MS), "end_time": iso(T0_MS + 2 * day)}
    body = client.get("/v1/usage", params=params).json()
    rows = {(r["tenant_id"], r["period_start"]): r for r in body["rows"]}
    first = rows[("acme", "2026-01-01T00:00:00Z")]
    assert first == {"tenant_id": "acme", "period": "day", "period_start": "2026-01-01T00:00:00Z", "events": 3,
                     "errors": 1, "requests_by_method": {"boom": 1, "tools/call": 2}, "data_mb_in": 6.0,
                     "data_mb_out": 1.5, "tokens": 30, "cost": 0.75, "unique_users": 2, "spans": 0,
                     "metric_points": 0, "log_records": 0, "billable": 3, "input_tokens": 0, "output_tokens": 0}
    assert rows[("acme", "2026-01-02T00:00:00Z")]["events"] == 1 and len(rows) == 3
    one = client.get("/v1/usage", params={**params, "tenant_id": "beta", "period": "month"}).json()["rows"]
    assert [(r["tenant_id"], r["period_start"], r["events"]) for r in one] == [("beta", "2026-01-01T00:00:00Z", 1)]
    r = client.get("/v1/usage", params={**params, "format": "csv"})
    assert r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert len(table) == 3 and table[0]["tenant_id"] == "acme" and table[0]["events"] == "3"
    assert table[0]["requests_by_method"] == '{"boom":1,"tools/call":2}'
    assert_error_shape(client.get("/v1/usage", params={"period": "year"}), 400, "invalid_parameter")


def test_retention_admin_api(client: httpx.Client, server: LiveServer) -> None:
    assert client.put("/v1/retention/acme", json={"hours": 48}).status_code == 200
    body = client.get("/v1/retention").json()
    assert body["tenants"] == {"acme": 48} and body["from_api"] == {"acme": 48}
    assert body["retention_hours"] == server.app.settings.retention_hours_effective
    assert_error_shape(client.put("/v1/retention/acme", json={"hours": -1}), 400, "invalid_body")
    assert_error_shape(client.put("/v1/retention/acme", content=b"[]"), 400, "invalid_body")
    assert client.delete("/v1/retention/acme").json()["tenants"] == {}


def test_retention_overrides_per_tenant_in_a_live_server(serve) -> None:
    live = serve(storage_backend="duckdb", retention_hours=1, retention_interval_s=0.2,
                 retention_tenant_hours={"keep": 0, "short": 2}, socket=False)
    now_ms = int(time.time() * 1000)
    old = lambda tenant, hours: {"event_type": "x", "tenant_id": tenant,  # noqa: E731
                                 "timestamp": now_ms - int(hours * HOUR_MS)}
    c = live.client
    c.put("/v1/retention/api", json={"hours": 5})
    events = [old("dflt", 1.5), old("dflt", 0.5), old("keep", 1000), old("short", 1.5), old("short", 3),
              old("api", 3), old("api", 6)]
    post_all(c, live, events)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and c.get("/health").json()["retention_purged_total"] < 3:
        time.sleep(0.05)
    left = sorted((e["tenant_id"], e["timestamp"]) for e in c.get("/v1/events").json()["events"])
    assert [t for t, _ in left] == ["api", "dflt", "keep", "short"]


def du_bytes(path: str) -> int:
    return sum(os.stat(os.path.join(root, name)).st_size for root, _, names in os.walk(path) for name in names)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_purge_shows_in_metrics_and_health(request: pytest.FixtureRequest, serve, backend: str) -> None:
    live = serve(**backend_settings(request, backend), retention_hours=1, retention_interval_s=0.2, socket=False)
    started = time.time()
    now_ms = int(started * 1000)
    c = live.client
    post_all(c, live, [{"event_type": "x", "timestamp": now_ms - int(hours * HOUR_MS)} for hours in (3, 2, 1.5, 0.5, 0)])
    health = wait_for(lambda: c.get("/health").json(), lambda h: h["retention_purged_total"] >= 3)
    families = {f.name: f for f in text_string_to_metric_families(c.get("/metrics").text)}
    assert c.get("/v1/events").json()["total_count"] == 2
    purged = [s.value for s in families["tea_retention_purged_events"].samples
              if s.name == "tea_retention_purged_events_total"]
    runs = {s.labels["result"]: s.value for s in families["tea_retention_runs"].samples
            if s.name == "tea_retention_runs_total"}
    assert health["retention_purged_total"] == 3 and purged == [3.0]
    assert runs["ok"] >= 1 and "error" not in runs
    assert started <= health["retention_last_run_at"] <= time.time()
    size = du_bytes(live.app.settings.data_dir)  # (what /health walks: every file under the data dir)
    assert health["data_dir_bytes"] > 0 and abs(health["data_dir_bytes"] - size) <= max(0.25 * size, 1 << 20)


@pytest.mark.parametrize("group_by", ["event_type", "method", "source", "target", "status", "protocol", "user_id",
                                      "tenant_id"])
def test_every_group_by_partitions_the_totals(client: httpx.Client, server: LiveServer, group_by: str) -> None:
    events = random_events(5, 400)
    for i, e in enumerate(events):
        e["source"] = f"s{i % 3}"
        e["target"] = None if i % 4 == 0 else f"x{i % 2}"
        e["protocol"] = ["mcp", "a2a"][i % 2]
    post_all(client, server, events)
    params = {"metrics": "requests,errors", "granularity": "hour", "start_time": iso(T0_MS),
              "end_time": iso(T0_MS + 6 * HOUR_MS), "limit": "1000"}
    grouped = client.get("/v1/metrics", params={**params, "group_by": group_by}).json()["series"]
    expected: dict = {}
    for e in events:
        expected[e.get(group_by)] = expected.get(e.get(group_by), 0) + 1
    got = {s["group"][group_by]: sum(p["requests"] for p in s["points"]) for s in grouped}
    assert got == expected
    assert [sum(p["requests"] for p in s["points"]) for s in grouped] == sorted(expected.values(), reverse=True)
