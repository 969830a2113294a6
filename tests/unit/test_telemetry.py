"""TEA's own metrics: per-thread tallies folded into prometheus_client's metrics at collection."""
from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from tea.telemetry import LATENCY_BUCKETS, Telemetry


def samples(telemetry: Telemetry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = telemetry.exposition().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_counters_from_many_threads_lose_nothing() -> None:
    t = Telemetry()
    per_thread, threads = 20_000, 8

    def work() -> None:
        for i in range(per_thread):
            t.child(t.events_received, "native").inc()
            t.child(t.events_accepted, "otlp").inc(2)
            t.count(t.events_accepted, 3, "otlp")  # (the one-call form, into the same tally)
            if i % 5000 == 0:
                t.fold()  # folds racing the increments must not lose or double any

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        samples(t)  # scrapes during the increments
    for w in workers:
        w.join()
    got = samples(t)
    assert got[("tea_events_received_total", (("protocol", "native"),))] == per_thread * threads
    assert got[("tea_events_accepted_total", (("protocol", "otlp"),))] == 5 * per_thread * threads
    assert samples(t) == got  # folding twice adds nothing


def test_histogram_tallies_place_values_as_prometheus_client_does() -> None:
    t = Telemetry()
    reference = Histogram("ref", "same buckets", ["route"], buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    values = [0.0, 0.0005, 0.00050001, 0.001, 0.003, 0.01, 0.7, 10.0, 10.5, 1e9, -1.0]
    for i, v in enumerate(values):
        if i % 2:
            t.child(t.http_duration, "/v1/events", "POST", "200").observe(v)
        else:  # (the one-call form, into the same tally)
            t.observe(t.http_duration, v, "/v1/events", "POST", "200")
        reference.labels("/v1/events").observe(v)
    got = samples(t)
    want = {(s.name, s.labels.get("le")): s.value
            for family in reference.collect() for s in family.samples if not s.name.endswith("_created")}
    for (name, le), value in want.items():
        name = name.replace("ref", "tea_http_request_duration_seconds")
        labels = {"route": "/v1/events", "method": "POST", "status": "200", **({"le": le} if le else {})}
        assert got[(name, tuple(sorted(labels.items())))] == pytest.approx(value), (name, le)


def test_an_unlabelled_metric_and_a_negative_increment() -> None:
    t = Telemetry()
    t.child(t.events_written).inc(7)
    assert samples(t)[("tea_events_written_total", ())] == 7
    with pytest.raises(ValueError):
        t.child(t.events_written).inc(-1)
    with pytest.raises(ValueError):
        t.count(t.events_written, -1)
    t.count(t.events_written, 2)
    t.count(t.events_received, 1, "native")  # (a thread's first count of a child)
    got = samples(t)
    assert got[("tea_events_written_total", ())] == 9 and got[("tea_events_received_total", (("protocol", "native"),))] == 1
