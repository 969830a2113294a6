"""Exporting a million events streams in bounded memory (the server's RSS, sampled from /proc)."""
from __future__ import annotations

import threading
import time

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TOTAL = 1_000_000
BATCH = 10_000


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def load(url: str) -> None:
    body = [{"event_type": "bulk", "tenant_id": f"t{i % 4}", "method": "tools/call", "duration_ms": i % 250,
             "attributes": {"i": i, "text": "x" * 200}} for i in range(BATCH)]
    with httpx.Client(base_url=url, timeout=120) as client:
        for _ in range(TOTAL // BATCH):
            while (r := client.post("/v1/events", json=body)).status_code == 503:
                time.sleep(0.2)
            assert r.status_code == 200
        deadline = time.monotonic() + 240
        while client.get("/health").json()["events_stored"] < TOTAL:
            assert time.monotonic() < deadline, "storage did not catch up"
            time.sleep(0.5)


@pytest.mark.parametrize("fmt", ["ndjson", "parquet"])
def test_export_of_a_million_events_in_bounded_memory(tea_process, fmt: str) -> None:
    server = tea_process(TEA_DUCKDB__MEMORY_LIMIT="256MB").start()
    load(server.url)
    pid = server.proc.pid
    before = rss_mb(pid)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    received = 0
    lines = 0
    try:
        with httpx.stream("GET", server.url + "/v1/export", params={"format": fmt}, timeout=600) as r:
            assert r.status_code == 200
            for chunk in r.iter_bytes():
                received += len(chunk)
                lines += chunk.count(b"\n")
    finally:
        done.set()
        sampler.join()
    if fmt == "ndjson":
        assert lines == TOTAL
        assert received > 250_000_000  # far more than the memory the export may take
    else:
        assert received > 1_000_000
    growth = peak - before
    print(f"{fmt}: exported {received / 1e6:.0f} MB; server RSS {before:.0f} MB before, peak {peak:.0f} MB")
    assert growth < 200, f"server RSS grew by {growth:.0f} MB during the export"
