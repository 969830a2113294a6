"""kill -9 mid-stream: after a restart every acknowledged event is stored, exactly once."""
from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from tests.e2e.conftest import stored_keys

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLIENTS = 4
PER_CLIENT = 25_000
BATCH = 500
KILL_AFTER = 30_000


def wait_drained(url: str, expected: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = httpx.get(url + "/health", timeout=10).json()
        if health["events_stored"] >= expected and health["buffer_bytes"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"storage did not reach {expected} events: {health}")


def test_sigkill_mid_stream_loses_and_duplicates_nothing(tea_process) -> None:
    server = tea_process().start()
    acked: set[tuple[str, str]] = set()
    acked_lock = threading.Lock()
    resume = threading.Event()
    killed = threading.Event()
    failures: list[str] = []

    def client(n: int) -> None:
        tenant = f"tenant-{n % 2}"
        batches = [[{"event_type": "e2e", "tenant_id": tenant, "event_id": f"c{n}-{i:06d}", "user_id": f"u{i % 50}",
                     "duration_ms": i % 97, "attributes": {"client": n, "i": i}}
                    for i in range(start, start + BATCH)] for start in range(0, PER_CLIENT, BATCH)]
        deadline = time.monotonic() + 240
        with httpx.Client(timeout=30) as http:
            for batch in batches:
                while True:
                    if time.monotonic() > deadline:
                        failures.append(f"client {n} timed out")
                        return
                    try:
                        r = http.post(server.url + "/v1/events", json=batch)
                    except httpx.TransportError:
                        resume.wait(120)  # the server is down: wait for the restart, then resend
                        continue
                    if r.status_code == 200:
                        assert r.json()["accepted"] == BATCH
                        with acked_lock:
                            acked.update((tenant, e["event_id"]) for e in batch)
                        break
                    if r.status_code != 503:
                        failures.append(f"client {n}: {r.status_code} {r.text[:200]}")
                        return
                    time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    while len(acked) < KILL_AFTER and any(t.is_alive() for t in threads):
        time.sleep(0.001)
    server.signal(signal.SIGKILL)
    server.wait(30)
    killed.set()
    with acked_lock:
        acked_before_kill = set(acked)
    assert KILL_AFTER <= len(acked_before_kill) < CLIENTS * PER_CLIENT, "the kill did not land mid-stream"

    server.start()  # same data dir, new process: replays the buffer before /readyz turns ready
    stored = stored_keys(server.url)
    missing = acked_before_kill - set(stored)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
    assert max(stored.values()) == 1, "duplicates after replay"

    resume.set()
    for t in threads:
        t.join(300)
    assert not failures, failures
    expected = {(f"tenant-{n % 2}", f"c{n}-{i:06d}") for n in range(CLIENTS) for i in range(PER_CLIENT)}
    assert acked == expected
    wait_drained(server.url, len(expected))
    final = stored_keys(server.url)
    assert set(final) == expected and max(final.values()) == 1 and sum(final.values()) == len(expected)
