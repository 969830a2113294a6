"""The Prometheus query API over real HTTP on every backend: the same numbers as /v1/metrics and as a
brute-force reference, Prometheus's shapes and errors, tenant scoping by the credential, and real clients
(Debian's promtool, the prometheus-api-client package)."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections import defaultdict
from datetime import datetime, timezone

import httpx
import pytest

from tests.api.test_analytics import HOUR_MS, T0_MS, post_all, random_events
from tests.auth.conftest import ADMIN_TOKEN, bearer, create_token
from tests.conftest import LiveServer, Served
from tests.unit.test_promql import prometheus_bucket_quantile

BOUNDS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, math.inf)
HOURS = 6


def prom(client: httpx.Client, path: str, method: str = "GET", **params) -> dict:
    r = client.request(method, "/api/v1/" + path, **({"params": params} if method == "GET" else {"data": params}))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]


def hourly(client: httpx.Client, query: str, method: str = "GET") -> dict[tuple, list[float]]:
    """A range query at each hour boundary after T0: {labels: [value per hour]}."""
    data = prom(client, "query_range", method, query=query, start=T0_MS / 1000 + 3600,
                end=T0_MS / 1000 + HOURS * 3600, step="1h")
    assert data["resultType"] == "matrix"
    out = {}
    for series in data["result"]:
        stamps = [t for t, _ in series["values"]]
        assert stamps == [T0_MS / 1000 + 3600 * (h + 1) for h in range(HOURS)]
        out[tuple(sorted(series["metric"].items()))] = [float(v) for _, v in series["values"]]
    return out


def v1_hourly(client: httpx.Client, metric: str, group_by: str) -> dict[tuple, list[float]]:
    r = client.get("/v1/metrics", params={"start_time": T0_MS, "end_time": T0_MS + HOURS * HOUR_MS,
                                          "granularity": "hour", "group_by": group_by, "metrics": metric,
                                          "limit": 1000})
    assert r.status_code == 200, r.text
    return {tuple(sorted(s["group"].items())): [float(p[metric]) for p in s["points"]] for s in r.json()["series"]}


def reference_p95(events: list[dict], hour: int) -> dict[tuple, float]:
    """histogram_quantile(0.95, …) of each method's events in one hour, from their durations as Prometheus would
    interpolate the cumulative bucket counts."""
    by_method: dict[tuple, list[float]] = defaultdict(list)
    for e in events:
        if "duration_ms" in e and T0_MS + hour * HOUR_MS <= e["timestamp"] < T0_MS + (hour + 1) * HOUR_MS:
            by_method[(("method", e["method"]),)].append(e["duration_ms"])
    return {k: prometheus_bucket_quantile(0.95, [(b, float(sum(d <= b for d in ds))) for b in BOUNDS])
            for k, ds in by_method.items()}


def test_the_same_numbers_as_v1_metrics_on_every_backend(server: Served) -> None:
    events = random_events(11, 3000, hours=HOURS)
    client = server.client
    post_all(client, server, events)
    check_against_v1_metrics(client, events)


def check_against_v1_metrics(client: httpx.Client, events: list[dict]) -> None:
    for counter, metric in (("tea_requests_total", "requests"), ("tea_errors_total", "errors"),
                            ("tea_tokens_total", "tokens"), ("tea_cost_total", "cost")):
        for by in ("method", "tenant_id"):
            got = hourly(client, f"sum by ({by}) (increase({counter}[1h]))")
            want = v1_hourly(client, metric, by)
            assert set(got) == set(want), (counter, by)
            for key, values in want.items():
                assert got[key] == pytest.approx(values, rel=1e-9, abs=1e-9), (counter, key)
    # rate is the increase per second; the error ratio is errors / requests (POST form body, as Grafana sends)
    rates = hourly(client, "sum by (method) (rate(tea_requests_total[1h]))", "POST")
    requests = v1_hourly(client, "requests", "method")
    assert set(rates) == set(requests)
    for key, values in requests.items():
        assert [v * 3600 for v in rates[key]] == pytest.approx(values, rel=1e-12)
    ratio = hourly(client, "sum(rate(tea_errors_total[1h])) / sum(rate(tea_requests_total[1h]))")
    assert ratio[()] == pytest.approx(_overall_error_rate(client), rel=1e-9)
    p95 = hourly(client, "histogram_quantile(0.95, sum by (le, method) (rate(tea_request_duration_ms_bucket[1h])))")
    for hour in range(HOURS):
        want = reference_p95(events, hour)
        assert set(want) == set(p95)
        for key, value in want.items():
            assert p95[key][hour] == pytest.approx(value, rel=1e-9), (hour, key)
    # the counter itself: every event before the evaluation time; its histogram _count: those with a duration
    at = T0_MS / 1000 + HOURS * 3600
    total = prom(client, "query", query="sum(tea_requests_total)", time=at)["result"]
    assert total == [{"metric": {}, "value": [at, str(len(events))]}]
    counted = prom(client, "query", query='sum(tea_request_duration_ms_count{tenant_id="acme"})', time=at)["result"]
    assert float(counted[0]["value"][1]) == sum(1 for e in events if "duration_ms" in e and e["tenant_id"] == "acme")


def _overall_error_rate(client: httpx.Client) -> list[float]:
    r = client.get("/v1/metrics", params={"start_time": T0_MS, "end_time": T0_MS + HOURS * HOUR_MS,
                                          "granularity": "hour", "metrics": "error_rate"})
    return [p["error_rate"] for p in r.json()["series"][0]["points"]]


def test_selectors_matchers_and_discovery(serve) -> None:
    server = serve(storage_backend="duckdb", socket=False)
    events = random_events(5, 800, hours=2)
    client = server.client
    post_all(client, server, events)
    check_selectors(client, events)


def check_selectors(client: httpx.Client, events: list[dict]) -> None:
    at = T0_MS / 1000 + 2 * 3600

    def total(query: str) -> float:
        result = prom(client, "query", query=query, time=at)["result"]
        return sum(float(s["value"][1]) for s in result)

    def count(pred) -> int:
        return sum(1 for e in events if pred(e))
    assert total('tea_requests_total{method="tools/call"}') == count(lambda e: e["method"] == "tools/call")
    assert total('tea_requests_total{method!="tools/call"}') == count(lambda e: e["method"] != "tools/call")
    assert total('tea_requests_total{method=~"tools/.*",status!~"ok|timeout"}') == \
        count(lambda e: e["method"].startswith("tools/") and e["status"] == "error")
    assert total('tea_requests_total{tool=""}') == len(events) and total('tea_requests_total{nothere="x"}') == 0
    assert total('{__name__=~"tea_requests_total|tea_errors_total"}') == \
        len(events) + count(lambda e: e["status"] in ("error", "timeout"))
    assert total('tea_request_duration_ms_bucket{le="+Inf"}') == count(lambda e: "duration_ms" in e)
    assert total('tea_request_duration_ms_bucket{le="50"}') == count(lambda e: e.get("duration_ms", 1e9) <= 50)
    assert total("count(tea_requests_total)") == len({(e["tenant_id"], e["event_type"], e["method"], e["status"])
                                                     for e in events})
    assert total("sum(tea_requests_total offset 1h)") == count(lambda e: e["timestamp"] < T0_MS + HOUR_MS)
    names = prom(client, "label/__name__/values")
    assert {"tea_requests_total", "tea_request_duration_ms_bucket", "tea_cost_total"} <= set(names)
    assert prom(client, "label/method/values") == ["resources/read", "tools/call", "tools/list"]
    assert {"__name__", "tenant_id", "method", "status", "event_type", "le"} <= set(prom(client, "labels"))
    series = prom(client, "series", "POST", **{"match[]": 'tea_errors_total{tenant_id="acme"}'})
    assert series and all(s["__name__"] == "tea_errors_total" and s["tenant_id"] == "acme" for s in series)
    assert prom(client, "metadata")["tea_request_duration_ms"][0]["type"] == "histogram"
    assert prom(client, "status/buildinfo")["version"]


@pytest.mark.parametrize("params, error", [
    ({"query": "topk(2, tea_requests_total)"}, "aggregation topk is not supported"),
    ({"query": "tea_requests_total[5m]"}, "range selector"),
    ({}, 'invalid parameter "query": missing'),
    ({"query": "sum("}, 'invalid parameter "query"'),
    ({"query": "1", "time": "yesterday"}, "cannot parse"),
])
def test_errors_in_prometheus_shape(serve, params: dict, error: str) -> None:
    server = serve(storage_backend="memory", socket=False)
    r = server.client.get("/api/v1/query", params=params)
    assert r.status_code == 400 and r.json()["status"] == "error" and r.json()["errorType"] == "bad_data"
    assert error in r.json()["error"]
    r = server.client.post("/api/v1/query_range", data={"query": "1", "start": "0", "end": "100000", "step": "1"})
    assert r.status_code == 400 and "11,000 points" in r.json()["error"]
    r = server.client.post("/api/v1/query_range", data={"query": "1", "start": "0", "end": "1"})
    assert r.status_code == 400 and r.json()["error"] == 'invalid parameter "step": missing'


@pytest.mark.socket  # (the auth tests' helpers take a URL)
def test_tenants_see_their_own_series_and_basic_auth_carries_the_token(secure) -> None:
    server = secure(storage_backend="duckdb")
    with httpx.Client(base_url=server.url, headers=bearer(ADMIN_TOKEN), timeout=60) as admin:
        post_all(admin, server, random_events(3, 600, hours=1))
        check_tenants(server, admin)


def check_tenants(server: LiveServer, admin: httpx.Client) -> None:
    acme = create_token(server.url, "acme")["token"]
    at = T0_MS / 1000 + 3600
    query = {"query": "sum by (tenant_id) (increase(tea_requests_total[1h]))", "time": at}
    everyone = {s["metric"]["tenant_id"] for s in prom(admin, "query", **query)["result"]}
    assert everyone == {"acme", "beta"}
    for headers in (bearer(acme), {"authorization": "Basic " + _b64(f"grafana:{acme}")}, {"x-api-key": acme}):
        with httpx.Client(base_url=server.url, headers=headers) as client:
            check_one_tenant(client, query, at)
    r = httpx.get(server.url + "/api/v1/query", params=query)
    assert r.status_code == 401 and r.json()["status"] == "error" and r.json()["errorType"] == "unauthorized"
    r = httpx.get(server.url + "/api/v1/query", params=query, headers=bearer("tk_" + "0" * 40))
    assert r.status_code == 401 and r.json()["errorType"] == "unauthorized"


def check_one_tenant(client: httpx.Client, query: dict, at: float) -> None:
    assert [s["metric"] for s in prom(client, "query", **query)["result"]] == [{"tenant_id": "acme"}]
    assert prom(client, "query", query='tea_requests_total{tenant_id="beta"}', time=at)["result"] == []
    assert prom(client, "label/tenant_id/values") == ["acme"]


def _b64(text: str) -> str:
    import base64
    return base64.b64encode(text.encode()).decode()


def _promtool(*args: str) -> list[dict]:
    done = subprocess.run(["promtool", "query", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        import os
        if os.environ.get("TEA_REQUIRE_SERVICES") == "1":
            pytest.fail("promtool is not installed but TEA_REQUIRE_SERVICES=1 (scripts/test installs prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


@pytest.mark.socket  # real clients given a URL: promtool, prometheus-api-client
def test_promtool_and_prometheus_api_client_agree_with_v1_metrics(secure, promtool: str) -> None:
    from prometheus_api_client import PrometheusConnect

    server = secure(storage_backend="duckdb")
    with httpx.Client(base_url=server.url, headers=bearer(ADMIN_TOKEN), timeout=60) as admin:
        post_all(admin, server, random_events(8, 1500, hours=HOURS))
    token = create_token(server.url, "acme")["token"]
    with httpx.Client(base_url=server.url, headers=bearer(token), timeout=60) as acme:
        want = v1_hourly(acme, "requests", "method")
        errors_want = sum(sum(v) for v in v1_hourly(acme, "errors", "method").values())
    query = "sum by (method) (increase(tea_requests_total[1h]))"
    start, end = T0_MS / 1000 + 3600, T0_MS / 1000 + HOURS * 3600
    # promtool query range sends the token as a header; query instant takes it as the URL's basic-auth password
    ranged = _promtool("range", "-o", "json", "--start", str(start), "--end", str(end), "--step", "1h",
                       "--header", f"Authorization: Bearer {token}", server.url, query)
    assert {tuple(s["metric"].items()): [float(v) for _, v in s["values"]] for s in ranged} == want
    with_password = server.url.replace("http://", f"http://grafana:{token}@")
    for hour in range(HOURS):
        instant = _promtool("instant", "-o", "json", "--time", str(start + 3600 * hour), with_password, query)
        assert {tuple(s["metric"].items()): float(s["value"][1]) for s in instant} == \
            {k: v[hour] for k, v in want.items() if v[hour]}
    client = PrometheusConnect(url=server.url, headers=bearer(token), disable_ssl=True)
    result = client.custom_query_range(query, start_time=datetime.fromtimestamp(start, timezone.utc),
                                       end_time=datetime.fromtimestamp(end, timezone.utc), step="3600")
    assert {tuple(s["metric"].items()): [float(v) for _, v in s["values"]] for s in result} == want
    errors = client.custom_query("sum(increase(tea_errors_total[6h]))", params={"time": end})
    assert float(errors[0]["value"][1]) == errors_want
    assert "tea_request_duration_ms_bucket" in client.all_metrics()
    assert client.get_label_values("tenant_id") == ["acme"]
