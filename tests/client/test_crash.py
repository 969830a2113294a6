"""100 000 events recorded while `tea serve` is killed (SIGKILL) and restarted mid-stream: all stored exactly once.

Client-made ids make every resend harmless: a batch TEA had made durable before it died, but whose
answer never came back, is sent again and stored once."""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Optional

import pytest

from tea_client import TeaClient
from tests.client.conftest import events, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOTAL = 100_000
SLICE = 1_000


@pytest.mark.parametrize("spool", [True, False], ids=["spool", "memory"])
def test_sigkill_mid_stream_every_event_stored_once(tea_process, tmp_path: Path, spool: bool) -> None:
    tea = tea_process().start()
    client = TeaClient(tea.url, spool_dir=str(tmp_path / "spool") if spool else None, tenant_id="acme",
                       max_queue_events=TOTAL + 1, max_backoff_s=1.0, close_at_exit=False)
    recorded = 0
    failure: Optional[BaseException] = None
    back = threading.Event()

    def produce() -> None:
        """~20 000 events/s; past 70 % it waits for the restart, so that events are recorded before the kill,
        while TEA is down, and after it is back."""
        nonlocal recorded, failure
        try:
            for start in range(0, TOTAL, SLICE):
                if start == TOTAL * 7 // 10:
                    back.wait(120)
                for i in range(start, start + SLICE):
                    client.record("crash", method="tools/call", duration_ms=i % 97, i=i)
                recorded = start + SLICE
                time.sleep(0.05)
        except BaseException as exc:  # pragma: no cover - surfaced below
            failure = exc

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        assert wait_until(lambda: client.stats()["sent"] >= 20_000, 120), client.stats()
        tea.signal(signal.SIGKILL)
        tea.wait(30)
        killed_at = recorded
        tea.start()  # same port, same data dir: replays its buffer before it is ready
        restarted_at = recorded
    finally:
        back.set()
        producer.join(300)
    assert failure is None
    assert 20_000 <= killed_at < TOTAL and restarted_at < TOTAL, (killed_at, restarted_at)
    assert client.flush(180), client.stats()
    stats = client.stats()
    client.close(5)
    assert stats["dropped"] == 0 and stats["rejected"] == 0 and stats["retried"] >= 1, stats
    assert stats["sent"] >= TOTAL, stats  # a batch whose answer was lost in the kill is sent (and counted) twice

    stored = events(tea.url, expect=TOTAL, event_type="crash")
    assert len(stored) == TOTAL, "%d stored, %d expected" % (len(stored), TOTAL)
    assert len({e["event_id"] for e in stored}) == TOTAL
    assert sorted(e["attributes"]["i"] for e in stored) == list(range(TOTAL))
