"""A slow processor plugin never holds ingestion back: events are stored while it sleeps, its lag shows in
``/health`` and Prometheus ``/metrics``, the buffer keeps (and counts) what it has not read, and it catches
up afterwards, seeing every event once."""
from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path
from typing import Any

import httpx

from tea.app import TeaApp
from tea.hookspecs import hookimpl
from tea.types import Event
from tests.conftest import LiveServer, make_settings, wait_for

EVENTS = 3000


class Sleeper:
    """Sleeps while ``asleep`` is set (as long as a test wants), then keeps what it was handed."""

    def __init__(self) -> None:
        self.asleep = threading.Event()
        self.asleep.set()
        self.seen: list[str] = []

    async def __call__(self, events: list[Event]) -> None:
        while self.asleep.is_set():
            await asyncio.sleep(0.05)
        self.seen += [e.event_id for e in events]  # type: ignore[misc]


class SleeperPlugin:
    def __init__(self, processor: Sleeper) -> None:
        self.processor = processor

    @hookimpl
    def register_processors(self, settings: Any, storage: Any) -> list[tuple[str, Any]]:
        return [("sleeper", self.processor)]


def lag(url: str) -> tuple[dict[str, Any], dict[str, float]]:
    """The consumers' lag from /health, and tea_consumer_lag_events by consumer from /metrics."""
    health = httpx.get(url + "/health").json()
    metrics = httpx.get(url + "/metrics").text
    events = {m[0]: float(m[1]) for m in re.findall(r'^tea_consumer_lag_events\{consumer="([^"]+)"\} (\S+)$',
                                                     metrics, re.M)}
    assert "tea_consumer_lag_seconds{consumer=\"sleeper\"}" in metrics
    return health, events


def test_a_sleeping_processor_lags_without_holding_storage_back_then_catches_up(tmp_path: Path) -> None:
    sleeper = Sleeper()
    # a processor queue of 100 events made the writer wait for processors when it was full: no longer
    settings = make_settings(tmp_path / "d", storage_backend="duckdb", writer__flush_interval_ms=20.0,
                             processing__batch_timeout_ms=20.0, processing__max_pending_events=100,
                             processing__batch_size=100)
    live = LiveServer(TeaApp(settings, plugins=[SleeperPlugin(sleeper)])).start()
    try:
        for start in range(0, EVENTS, 300):
            r = httpx.post(live.url + "/v1/events", json=[{"event_type": "slow", "event_id": f"s{i}"}
                                                          for i in range(start, start + 300)])
            assert r.status_code == 200
        health = wait_for(lambda: httpx.get(live.url + "/health").json(), lambda h: h["events_stored"] == EVENTS)
        assert health["events_stored"] == EVENTS  # all stored while the processor sleeps
        health, metric = lag(live.url)
        assert health["consumers"]["writer"] == {"lag_events": 0, "lag_seconds": 0.0}
        assert health["consumers"]["sleeper"]["lag_events"] == EVENTS == metric["sleeper"]
        assert health["consumers"]["sleeper"]["lag_seconds"] > 0 and metric["writer"] == 0
        assert health["buffer_bytes"] > 0  # kept until the slowest consumer has read it (and counted in the bound)
        assert sleeper.seen == []

        sleeper.asleep.clear()
        # (the bytes go once every consumer has passed them: the built-in processors may pass them a moment later)
        health = wait_for(lambda: httpx.get(live.url + "/health").json(),
                          lambda h: h["consumers"]["sleeper"]["lag_events"] == 0 and h["buffer_bytes"] == 0,
                          timeout_s=60)
        assert health["consumers"]["sleeper"] == {"lag_events": 0, "lag_seconds": 0.0}
        assert health["buffer_bytes"] == 0 and lag(live.url)[1]["sleeper"] == 0
        assert sorted(sleeper.seen) == sorted(f"s{i}" for i in range(EVENTS))  # each once, none lost
    finally:
        sleeper.asleep.clear()
        live.stop()


def test_what_a_processor_had_not_read_at_shutdown_it_reads_after_the_restart(tmp_path: Path) -> None:
    """Shutdown drains the writer but not a processor that is asleep: its events stay in the buffer, and after the
    restart the processor resumes from its own position — every event once, none lost."""
    settings = make_settings(tmp_path / "d", storage_backend="duckdb", writer__flush_interval_ms=20.0,
                             processing__batch_timeout_ms=20.0, shutdown_timeout_s=1.0)
    asleep = Sleeper()
    live = LiveServer(TeaApp(settings, plugins=[SleeperPlugin(asleep)])).start()
    try:
        r = httpx.post(live.url + "/v1/events", json=[{"event_type": "slow", "event_id": f"r{i}"} for i in range(500)])
        assert r.status_code == 200
        wait_for(lambda: httpx.get(live.url + "/health").json(), lambda h: h["events_stored"] == 500)
    finally:
        live.stop()  # the processor sleeps through the shutdown budget
    assert asleep.seen == [] and list((tmp_path / "d" / "buffer").glob("*.seg"))
    awake = Sleeper()
    awake.asleep.clear()
    again = LiveServer(TeaApp(settings, plugins=[SleeperPlugin(awake)])).start()
    try:
        health = wait_for(lambda: httpx.get(again.url + "/health").json(),
                          lambda h: h["consumers"]["sleeper"]["lag_events"] == 0 and h["buffer_bytes"] == 0)
        assert health["events_stored"] == 500 and health["events_written"] == 0  # nothing stored twice
        assert sorted(awake.seen) == sorted(f"r{i}" for i in range(500))
    finally:
        asleep.asleep.clear()
        again.stop()
