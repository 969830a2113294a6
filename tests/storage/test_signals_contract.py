"""Metric points and log records on every backend: what the OTLP mappers make of a request is stored once
(replays and repeats in a batch too), read back with every value, filtered and paged as the store's
contract (tea.storage.signals) says, counted per signal and purged."""
from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from tea.pipeline.normalise import Normaliser
from tea.receive.otlp_signals import json_logs, json_metrics
from tea.signals.model import PointQuery, RecordQuery, SeriesKey
from tea.storage.signals import SignalRouter, split, split_chunks
from tea.types import Batch, encode_lines
from tests.storage.test_aggregate_contract import BACKENDS, T0, open_storage

NS = 1000


def kv(key: str, value: object) -> dict:
    typed = {str: "stringValue", bool: "boolValue", int: "intValue", float: "doubleValue"}[type(value)]
    return {"key": key, "value": {typed: str(value) if typed == "intValue" else value}}


def metrics_request() -> dict:
    t = str(T0 * NS)
    later = str((T0 + 60_000_000) * NS)
    resource = {"attributes": [kv("service.name", "api"), kv("tenant.id", "t1")]}
    return {"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"scope": {"name": "meter"}, "metrics": [
        {"name": "requests", "unit": "1", "sum": {"aggregationTemporality": 2, "isMonotonic": True, "dataPoints": [
            {"timeUnixNano": t, "startTimeUnixNano": str((T0 - 1) * NS), "asInt": "5",
             "attributes": [kv("route", "/a"), kv("code", 200)]},
            {"timeUnixNano": later, "asInt": "9", "attributes": [kv("route", "/a"), kv("code", 200)]},
            {"timeUnixNano": later, "asDouble": 2.5, "attributes": [kv("route", "/b%_"), kv("code", 500)]}]}},
        {"name": "queue", "gauge": {"dataPoints": [{"timeUnixNano": t, "asDouble": -1.25, "flags": 1}]}},
        {"name": "latency", "unit": "ms", "histogram": {"aggregationTemporality": 1, "dataPoints": [
            {"timeUnixNano": t, "count": str(2**64 - 1), "sum": 12.5, "min": 0.5, "max": 9.0,
             "explicitBounds": [1.0, 5.0], "bucketCounts": ["1", "0", str(2**64 - 2)]}]}},
        {"name": "size", "exponentialHistogram": {"aggregationTemporality": 2, "dataPoints": [
            {"timeUnixNano": t, "count": "3", "scale": -2, "zeroCount": "1", "positive": {"offset": -3,
                                                                                     "bucketCounts": ["1", "1"]}}]}},
        {"name": "rtt", "summary": {"dataPoints": [
            {"timeUnixNano": t, "count": "4", "sum": 10.0,
             "quantileValues": [{"quantile": 0.5, "value": 2.0}, {"quantile": 0.99, "value": 4.0}]}]}}]}]}]}


def logs_request() -> dict:
    resource = {"attributes": [kv("service.name", "worker"), kv("tenant.id", "t1")]}
    bodies = [{"stringValue": "Payment FAILED for 50%_off"}, {"kvlistValue": {"values": [kv("a", 1)]}},
              {"stringValue": "all good"}, {"intValue": "7"}, None]
    records = []
    for i, body in enumerate(bodies):
        record = {"timeUnixNano": str((T0 + i * 1000) * NS), "severityNumber": [17, 9, 9, 13, 5][i],
                  "severityText": ["ERROR", "INFO", "INFO", "WARN", ""][i], "attributes": [kv("order", f"o-{i % 2}")],
                  "traceId": "5B8EFFF798038103D269B633813FC60C" if i < 2 else "", "spanId": "EEE19B7EC3C1B174"}
        if body is not None:
            record["body"] = body
        records.append(record)
    return {"resourceLogs": [{"resource": resource, "scopeLogs": [{"scope": {"name": "app"}, "logRecords": records}]}]}


def lines(events: list) -> list[bytes]:
    accepted, errors, _, _ = Normaliser(clock=lambda: T0 + 10**9)(events, None, "otlp", None, None, True)
    assert not errors
    return encode_lines(accepted).splitlines(keepends=True)


def run(kind: str, path: Path, body):  # type: ignore[no-untyped-def]
    async def main():
        storage = open_storage(kind, path)
        await storage.open()
        try:
            return await body(storage)
        finally:
            await storage.close()
    return asyncio.run(main())


@pytest.fixture(autouse=True)
def _servers(request: pytest.FixtureRequest) -> None:
    kind = getattr(getattr(request.node, "callspec", None), "params", {}).get("kind")
    if kind in ("postgres", "clickhouse"):
        from tests.storage import test_aggregate_contract as contract
        contract._FRESH[kind] = request.getfixturevalue(f"{kind}_server").fresh_url


@pytest.mark.parametrize("kind", BACKENDS)
def test_points_are_stored_once_and_read_back_whole(kind: str, tmp_path: Path) -> None:
    metric_lines = lines(list(json_metrics(metrics_request(), True)))
    expected = {msgspec.json.decode(line)["event_id"]: msgspec.json.decode(line) for line in metric_lines}

    async def body(storage):  # type: ignore[no-untyped-def]
        router = SignalRouter(storage)
        data = b"".join(metric_lines)
        first = await router.write_batch(Batch([data + metric_lines[0]], len(metric_lines) + 1, T0, T0))
        again = await router.write_batch(Batch([data], len(metric_lines), T0, T0))
        every = await storage.signals.points(PointQuery())
        reads = {
            "names": await storage.signals.points(PointQuery(names=("requests", "queue"))),
            "window": await storage.signals.points(PointQuery(start_us=T0 + 1, end_us=T0 + 120_000_000)),
            "route": await storage.signals.points(PointQuery(attributes=(("route", "/b%_"),))),
            "code": await storage.signals.points(PointQuery(attributes=(("code", "200"),))),
            "tenant": await storage.signals.points(PointQuery(tenant_ids=("t2",))),
            "limit": await storage.signals.points(PointQuery(limit=2)),
            "service": await storage.signals.points(PointQuery(service="nope")),
        }
        return first, again, every, reads, await storage.signals.series(PointQuery(names=("requests",))), \
            await storage.count()
    first, again, every, reads, series, events = run(kind, tmp_path, body)
    assert (first.written, first.duplicates, again.written, again.duplicates) == (7, 1, 0, 7)
    assert events == 0  # points are not events
    assert [p.timestamp for p in every] == sorted(p.timestamp for p in every)
    for point in every:
        line = expected[point.id]
        assert point.tenant_id == "t1" and point.service == "api" and point.timestamp == line["timestamp"]
        assert msgspec.json.decode(msgspec.json.encode(point.data)) == line["attributes"]["metric"], point.data
        assert msgspec.json.decode(point.attributes) == line["attributes"]["attributes"]
        assert msgspec.json.decode(point.resource) == line["attributes"]["resource"] and point.scope == "meter"
    assert sorted(p.data.name for p in reads["names"]) == ["queue", "requests", "requests", "requests"]
    assert [p.data.value for p in reads["window"]] == [9.0, 2.5] or [p.data.value for p in reads["window"]] == [2.5, 9.0]
    assert [p.data.value for p in reads["route"]] == [2.5] and len(reads["code"]) == 2
    assert reads["tenant"] == [] and len(reads["limit"]) == 3 and reads["service"] == []
    assert sorted(series, key=lambda s: s.attributes) == [
        SeriesKey("t1", "requests", "sum", "api", '{"route":"/a","code":200}', "1", "cumulative", True),
        SeriesKey("t1", "requests", "sum", "api", '{"route":"/b%_","code":500}', "1", "cumulative", True)]


@pytest.mark.parametrize("kind", BACKENDS)
def test_records_are_searched_newest_first_and_paged(kind: str, tmp_path: Path) -> None:
    log_lines = lines(list(json_logs(logs_request(), True)))

    async def body(storage):  # type: ignore[no-untyped-def]
        router = SignalRouter(storage)
        result = await router.write_batch(Batch([b"".join(log_lines)], len(log_lines), T0, T0))
        replay = await router.write_batch(Batch([b"".join(log_lines)], len(log_lines), T0, T0))
        s = storage.signals
        pages, after = [], None
        while True:
            page = await s.records(RecordQuery(limit=2, after=after))
            pages.append([r.data.severity_number for r in page[:2]])
            if len(page) <= 2:
                break
            after = (page[1].timestamp, page[1].id)
        return result, replay, pages, {
            "all": await s.records(RecordQuery()),
            "warn": await s.records(RecordQuery(min_severity=13)),
            "body": await s.records(RecordQuery(body_contains="failed FOR 50%_")),
            "literal": await s.records(RecordQuery(body_contains="50%x")),
            "order": await s.records(RecordQuery(attributes=(("order", "o-1"),))),
            "trace": await s.records(RecordQuery(trace_id="5b8efff798038103d269b633813fc60c")),
            "window": await s.records(RecordQuery(start_us=T0 + 1000, end_us=T0 + 3000)),
        }, await s.counts(None, T0 - 10**9, T0 + 10**9, "day"), await s.purge_older_than(T0 + 2000), \
            await s.records(RecordQuery())
    result, replay, pages, found, counts, purged, left = run(kind, tmp_path, body)
    assert (result.written, replay.written) == (5, 0)
    assert pages == [[5, 13], [9, 9], [17]]
    every = found["all"]
    assert [r.timestamp for r in every] == [T0 + 4000, T0 + 3000, T0 + 2000, T0 + 1000, T0]
    assert [r.data.body for r in every] == [None, 7, "all good", {"a": 1}, "Payment FAILED for 50%_off"]
    assert every[-1].data.severity_text == "ERROR" and every[-1].service == "worker" and every[-1].scope == "app"
    assert every[-1].trace_id == "5b8efff798038103d269b633813fc60c" and every[-1].span_id == "eee19b7ec3c1b174"
    assert msgspec.json.decode(every[-1].attributes) == {"order": "o-0"}
    assert [r.data.severity_number for r in found["warn"]] == [13, 17]
    assert [r.data.body for r in found["body"]] == ["Payment FAILED for 50%_off"] and found["literal"] == []
    assert [r.data.body for r in found["order"]] == [7, {"a": 1}]
    assert len(found["trace"]) == 2 and [r.timestamp for r in found["window"]] == [T0 + 2000, T0 + 1000]
    day = T0 - T0 % 86_400_000_000
    assert sorted(counts) == [(day, "t1", "log_records", 5)]
    assert purged == 2 and len(left) == 3


def test_split_routes_lines_by_their_event_type() -> None:
    events, metrics, logs = split(b'{"event_type":"span","x":1}\n{"event_type":"metric","a":2}\n'
                                  b'{"event_type":"log","b":3}\n{"event_type":"metrics","c":4}\n')
    assert (len(events), len(metrics), len(logs)) == (2, 1, 1)


def test_split_chunks_passes_a_chunk_of_one_signal_whole() -> None:
    metric, log = b'{"event_type":"metric","a":1}\n', b'{"event_type":"log","b":2}\n'
    span, nested = b'{"event_type":"span","c":3}\n', b'{"event_type":"metric","d":{"event_type":"log"}}\n'
    events, metrics, logs = split_chunks([metric * 3 + nested, log * 2, span + metric + log, metric + log,
                                          metric + metric.rstrip(b"\n")])
    assert metrics == [metric * 3 + nested, metric, metric, metric, metric]
    assert logs == [log * 2, log, log] and events == [span]
    assert split_chunks([metric * 2, metric], frozenset(["metric"])) == ([], [metric * 2, metric], [])
    assert split_chunks([log], frozenset(["log"])) == ([], [], [log])
    assert split_chunks([span + metric], frozenset(["metric", "span"])) == ([span], [metric], [])
