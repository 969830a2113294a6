from __future__ import annotations

import asyncio
import time

import msgspec

from tea.ops.retention import RetentionJob
from tea.storage.memory import MemoryStorage
from tea.types import Batch, Event

HOUR = 3_600_000_000
NOW = 1_800_000_000_000_000


def event(event_id: str, age_hours: float) -> Event:
    ts = int(NOW - age_hours * HOUR)
    return Event(event_type="t", event_id=event_id, tenant_id="t", timestamp=ts, received_at=ts,
                 attributes=msgspec.Raw(b"{}"))


def test_retention_deletes_only_what_is_past_the_window() -> None:
    async def scenario() -> None:
        storage = MemoryStorage()
        await storage.write_batch(Batch.from_events([event("new", 1), event("edge", 23.9), event("old", 25),
                                                     event("older", 100)]))
        job = RetentionJob(storage, hours=24, interval_s=3600, clock=lambda: NOW)
        assert await job.run_once() == 2
        assert job.purged_total == 2 and job.last_run_at is not None
        assert sorted(e.event_id for e in storage._events.values()) == ["edge", "new"]
        assert await job.run_once() == 0 and job.purged_total == 2
    asyncio.run(scenario())


def test_zero_hours_keeps_everything() -> None:
    async def scenario() -> None:
        storage = MemoryStorage()
        await storage.write_batch(Batch.from_events([event("ancient", 10_000)]))
        assert await RetentionJob(storage, hours=0, interval_s=1, clock=lambda: NOW).run_once() == 0
        assert await storage.count() == 1
    asyncio.run(scenario())


def test_the_server_runs_retention_on_its_schedule(serve) -> None:
    live = serve(storage_backend="duckdb", retention_hours=1, retention_interval_s=0.2, socket=False)
    old = [{"event_type": "old", "timestamp": 1_000_000_000_000 + i} for i in range(5)]
    assert live.client.post("/v1/events", json=old + [{"event_type": "fresh"}]).status_code == 200
    live.wait_stored(6)
    for _ in range(100):
        health = live.client.get("/health").json()
        if health["retention_purged_total"] == 5 and health["events_stored"] == 1:
            break  # (health counts events before it reads the retention counters: wait for both)
        time.sleep(0.05)
    assert health["retention_purged_total"] == 5 and health["events_stored"] == 1


def test_audit_rows_past_audit_retention_are_purged() -> None:
    from tea.telemetry import Telemetry
    from tea.types import AuditRecord

    async def scenario() -> None:
        storage = MemoryStorage()
        await storage.append_audit([AuditRecord(int(NOW - 3 * HOUR), "auth_failure"),
                                    AuditRecord(int(NOW - 0.5 * HOUR), "token_created")])
        keep = RetentionJob(storage, hours=0, interval_s=1, clock=lambda: NOW, audit_hours=0)
        await keep.run_once()
        assert len(await storage.query_audit()) == 2 and keep.audit_purged_total == 0
        telemetry = Telemetry()
        job = RetentionJob(storage, hours=0, interval_s=1, clock=lambda: NOW, telemetry=telemetry, audit_hours=1)
        await job.run_once()
        assert [r.action for r in await storage.query_audit()] == ["token_created"]
        assert job.audit_purged_total == 1
        assert b"tea_audit_purged_total 1.0" in telemetry.exposition()
    asyncio.run(scenario())


def test_records_past_records_retention_are_purged() -> None:
    """Alert history and the registry's transitions and audit go after ``records.retention_hours``."""
    from tea.telemetry import Telemetry

    async def scenario() -> None:
        storage = MemoryStorage()
        await storage.append_records("alert_history", [("t1", int(NOW - 3 * HOUR), {"state": "firing"}),
                                                       ("t1", int(NOW - 0.5 * HOUR), {"state": "resolved"})])
        keep = RetentionJob(storage, hours=0, interval_s=1, clock=lambda: NOW, records_hours=0)
        await keep.run_once()
        assert len(await storage.query_records("alert_history", tenant_ids=None)) == 2
        telemetry = Telemetry()
        job = RetentionJob(storage, hours=0, interval_s=1, clock=lambda: NOW, telemetry=telemetry, records_hours=1)
        await job.run_once()
        assert [b["state"] for _, _, b in await storage.query_records("alert_history", tenant_ids=None)] == ["resolved"]
        assert job.records_purged_total == 1
        assert b"tea_records_purged_total 1.0" in telemetry.exposition()
    asyncio.run(scenario())
