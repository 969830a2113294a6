"""The disk spool: TEA unreachable at start → batches on disk → delivered later, by the next process, in order."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tea_client.spool import Spool
from tests.client.conftest import events, wait_until
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def run_client(endpoint: str, spool: Path, count: int, prefix: str, flush_s: float) -> dict:
    done = subprocess.run([sys.executable, "-m", "tests.client.run_client", endpoint, str(spool), str(count), prefix,
                           str(flush_s)], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "DO_NOT_TRACK": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.e2e
def test_unreachable_at_start_spooled_then_delivered_by_the_next_process(tea_process, tmp_path: Path) -> None:
    tea = tea_process()  # its port is chosen now; nothing listens on it yet
    spool = tmp_path / "spool"
    first = run_client(tea.url, spool, 3000, "before", 1.0)
    assert first["flushed"] is False and first["sent"] == 0 and first["dropped"] == 0
    assert first["spooled"] == 3000 and first["retried"] >= 1
    files = sorted(spool.glob("*.json.gz"))
    assert files and first["spool_files"] == len(files)

    tea.start()
    second = run_client(tea.url, spool, 10, "after", 60.0)
    assert second["flushed"] is True and second["spool_files"] == 0 and not list(spool.glob("*.json.gz"))
    assert second["sent"] == 3010 and second["dropped"] == 0  # the backlog, then its own events

    stored = events(tea.url, expect=3010, event_type="spooled")
    labels = [e["attributes"]["i"] for e in stored]
    assert sorted(labels) == sorted(["before-%d" % n for n in range(3000)] + ["after-%d" % n for n in range(10)])
    assert len({e["event_id"] for e in stored}) == 3010
    # in order: every spooled event reached TEA before the second process's own
    last_spooled = max(e["received_at"] for e in stored if e["attributes"]["i"].startswith("before"))
    first_new = min(e["received_at"] for e in stored if e["attributes"]["i"].startswith("after"))
    assert last_spooled <= first_new
    # and the spooled events kept the time they were recorded at, not the time they arrived
    assert max(e["timestamp"] for e in stored if e["attributes"]["i"].startswith("before")) < first_new


def test_the_spool_is_bounded_in_bytes_oldest_dropped_first(clients, tmp_path: Path) -> None:
    client = clients("http://127.0.0.1:%d" % free_port(), spool_dir=str(tmp_path / "spool"), max_spool_bytes=20_000,
                     max_batch_events=100, max_backoff_s=0.1, max_queue_events=5000)
    for n in range(3000):
        client.record("bounded", payload="x%07d" % n * 4)
    assert client.close(5) is True  # TEA never came, but nothing is left in memory: all of it reached the spool
    stats = client.stats()
    assert stats["spooled"] == 3000 and stats["dropped_by_reason"]["spool_full"] > 0
    assert stats["dropped_by_reason"]["closed"] == 0
    spool = Spool(tmp_path / "spool", 20_000)
    assert spool.bytes <= 20_000 + max(size for _, size in spool._files)
    kept = sum(int(name.split(".")[0].split("-")[3]) for name, _ in spool._files)
    assert kept + stats["dropped_by_reason"]["spool_full"] == 3000
    newest = max(name for name, _ in spool._files)
    assert newest == spool._files[-1][0]  # the newest batches are the ones kept


@pytest.mark.e2e
def test_without_a_spool_the_queue_waits_in_memory_until_tea_comes(tea_process, clients) -> None:
    tea = tea_process()  # not listening yet
    client = clients(tea.url, max_backoff_s=0.5)
    for n in range(1500):
        client.record("waited", i=n)
    assert wait_until(lambda: client.stats()["retried"] >= 3, 30)  # refused connections, retried
    assert client.stats()["sent"] == 0
    tea.start()
    assert client.flush(60), client.stats()
    stats = client.stats()
    assert stats["sent"] == 1500 and stats["dropped"] == 0
    assert sorted(e["attributes"]["i"] for e in events(tea.url, expect=1500, event_type="waited")) == list(range(1500))
