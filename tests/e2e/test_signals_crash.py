"""kill -9 while OTLP metric points and log records stream in: after the restart every acknowledged point
and record is stored, exactly once — also those a client sent again because its answer was lost."""
from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1 import common_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REQUESTS = 60
POINTS = 250           # per metrics request (sums and histograms)
RECORDS = 100          # per logs request
KILL_AFTER = 20        # acknowledged requests of each kind before the kill
NOW_NS = time.time_ns()


def kv(key: str, value: str) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


def metrics_body(n: int) -> bytes:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.append(kv("service.name", "crash"))
    sm = rm.scope_metrics.add()
    counter = sm.metrics.add(name="jobs")
    counter.sum.aggregation_temporality, counter.sum.is_monotonic = 2, True
    hist = sm.metrics.add(name="latency", unit="ms")
    hist.histogram.aggregation_temporality = 2
    for i in range(POINTS):
        key = f"{n}-{i}"
        if i % 2:
            p = counter.sum.data_points.add(time_unix_nano=NOW_NS + i, as_int=i)
        else:
            p = hist.histogram.data_points.add(time_unix_nano=NOW_NS + i, count=3, sum=9.0, explicit_bounds=[5.0],
                                               bucket_counts=[2, 1])
        p.attributes.append(kv("key", key))
    return request.SerializeToString()


def logs_body(n: int) -> dict:
    return {"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "crash"}}]},
                              "scopeLogs": [{"logRecords": [
                                  {"timeUnixNano": str(NOW_NS + i), "severityNumber": 9,
                                   "body": {"stringValue": f"record {n}-{i}"}} for i in range(RECORDS)]}]}]}


def stored(url: str) -> tuple[Counter[str], Counter[str]]:
    points: Counter[str] = Counter()
    with httpx.Client(base_url=url, timeout=120) as client:
        for name in ("jobs", "latency"):
            body = client.get("/v1/otel/metrics/points", params={"name": name, "limit": "100000",
                                                                 "start_time": str(NOW_NS // 10**6 - 3_600_000)}).json()
            assert not body["has_more"]
            points.update(p["attributes"]["key"] for p in body["points"])
        records: Counter[str] = Counter()
        params = {"service": "crash", "limit": "1000", "start_time": str(NOW_NS // 10**6 - 3_600_000)}
        for _ in range(1000):
            page = client.get("/v1/logs", params=params).json()
            records.update(log["body"] for log in page["logs"])
            if not page["has_more"]:
                return points, records
            params["cursor"] = page["next_cursor"]
    raise AssertionError("pagination did not end")


def test_sigkill_loses_and_doubles_no_point_or_record(tea_process) -> None:
    server = tea_process().start()
    acked = {"metrics": set(), "logs": set()}  # type: dict[str, set[int]]
    resume = threading.Event()
    failures: list[str] = []

    def send(kind: str) -> None:
        with httpx.Client(timeout=30) as http:
            for n in range(REQUESTS):
                while True:
                    try:
                        if kind == "metrics":
                            r = http.post(server.url + "/v1/metrics", content=metrics_body(n),
                                          headers={"content-type": "application/x-protobuf"})
                        else:
                            r = http.post(server.url + "/v1/logs", json=logs_body(n))
                    except httpx.TransportError:
                        resume.wait(120)  # down: wait for the restart, then send the same request again
                        continue
                    if r.status_code == 200:
                        acked[kind].add(n)
                        break
                    if r.status_code != 503:
                        failures.append(f"{kind} {n}: {r.status_code} {r.text[:200]}")
                        return
                    time.sleep(0.05)

    threads = [threading.Thread(target=send, args=(kind,)) for kind in ("metrics", "logs")]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while min(len(a) for a in acked.values()) < KILL_AFTER and time.monotonic() < deadline:
        time.sleep(0.001)
    server.signal(signal.SIGKILL)
    server.wait(30)
    before = {kind: set(ns) for kind, ns in acked.items()}
    assert all(KILL_AFTER <= len(ns) < REQUESTS for ns in before.values()), "the kill did not land mid-stream"

    server.start()  # the same data directory: the buffer is replayed before /readyz
    points, records = stored(server.url)
    assert {f"{n}-{i}" for n in before["metrics"] for i in range(POINTS)} <= set(points)
    assert {f"record {n}-{i}" for n in before["logs"] for i in range(RECORDS)} <= set(records)
    resume.set()
    for t in threads:
        t.join(300)
    assert not failures, failures
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        points, records = stored(server.url)
        if len(points) == REQUESTS * POINTS and len(records) == REQUESTS * RECORDS:
            break
        time.sleep(0.2)
    assert set(points) == {f"{n}-{i}" for n in range(REQUESTS) for i in range(POINTS)} and max(points.values()) == 1
    assert len(records) == REQUESTS * RECORDS and max(records.values()) == 1
