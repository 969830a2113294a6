"""Retries: 429 and 5xx are retried after Retry-After or an exponential, jittered delay; other 4xx never are.

The 429 storm comes from two real peers: a small HTTP server that answers as scripted (to time every
attempt), and TEA's own rate limits."""
from __future__ import annotations

import time

import pytest

from tests.auth.conftest import admin_headers, create_token
from tests.client.conftest import events


def gaps(peer) -> list:
    times = [t for t, _, _ in peer.requests]
    return [b - a for a, b in zip(times, times[1:])]


def test_a_429_storm_is_waited_out_as_retry_after_asks(peer, clients) -> None:
    tea = peer([(429, {"error": "rate_limit_exceeded", "message": "slow down", "retry_after": 1}, "1")] * 3)
    client = clients(tea.url, max_in_flight=1)
    for i in range(10):
        client.record("storm", i=i)
    assert client.flush(30)
    assert len(tea.requests) == 4
    assert all(gap >= 1.0 for gap in gaps(tea)), gaps(tea)  # never sooner than Retry-After
    assert all(gap < 2.5 for gap in gaps(tea)), gaps(tea)   # nor much later (10 % jitter, capped at 1 s)
    bodies = [body for _, _, body in tea.requests]
    assert all(body == bodies[0] for body in bodies)  # the same events, the same ids: a retry is idempotent
    stats = client.stats()
    assert (stats["sent"], stats["retried"], stats["dropped"], stats["requests"]) == (10, 3, 0, 4)


def test_5xx_backs_off_exponentially_with_jitter(peer, clients) -> None:
    tea = peer([(503, {"error": "buffer_full", "message": "busy"}, None)] * 4)
    client = clients(tea.url, max_in_flight=1)
    client.record("busy")
    assert client.flush(30)
    assert len(tea.requests) == 5 and client.stats()["retried"] == 4 and client.stats()["sent"] == 1
    # 0.5 s doubling each time, equal jitter: delay n is in [base/2, base] (+ scheduling slack)
    for n, gap in enumerate(gaps(tea)):
        base = 0.5 * 2 ** n
        assert base / 2 - 0.01 <= gap <= base + 0.5, (n, gaps(tea))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_other_4xx_are_final(peer, clients, status: int) -> None:
    tea = peer([(status, {"error": "no", "message": "refused"}, "1")])
    client = clients(tea.url)
    for i in range(5):
        client.record("refused", i=i)
    assert client.flush(10)
    time.sleep(0.3)  # a retry would come now
    stats = client.stats()
    assert len(tea.requests) == 1
    assert (stats["rejected"], stats["retried"], stats["sent"], stats["dropped"]) == (5, 0, 0, 0)


def test_a_batch_tea_finds_too_large_is_halved_not_refused(peer, clients) -> None:
    tea = peer([(413, {"error": "too_many_events", "message": "batch holds more than 6 events"}, None)] * 3)
    client = clients(tea.url, max_in_flight=1)
    for i in range(20):
        client.record("big", i=i)
    assert client.flush(10)
    sizes = [len(body) for _, _, body in tea.requests]
    assert sizes == [20, 10, 5, 2, 3, 5, 10], sizes  # each refused batch halved, the first half first
    delivered = [e["attributes"]["i"] for _, _, body in tea.requests[3:] for e in body]
    assert delivered == list(range(20))  # in order
    stats = client.stats()
    assert (stats["sent"], stats["rejected"], stats["retried"]) == (20, 0, 0)


def test_a_retry_timeout_without_spool_drops_and_counts(peer, clients) -> None:
    tea = peer([(503, None, "0")] * 1000)
    client = clients(tea.url, retry_timeout_s=0.5, max_backoff_s=0.05)
    client.record("doomed")
    assert client.flush(10)
    stats = client.stats()
    assert stats["dropped_by_reason"]["retry_timeout"] == 1 and stats["sent"] == 0 and stats["retried"] >= 2


@pytest.mark.slow
def test_teas_own_rate_limit_is_honoured_and_nothing_is_lost(secure, clients) -> None:
    # 30 requests a minute: a burst of 30, then one every 2 s, refused with 429 and Retry-After in between
    server = secure(tier__free__requests_per_minute=30, tier__free__events_per_minute=0,
                    tier__free__events_per_month=0)
    token = create_token(server.url, "limited", tier="free")
    client = clients(server.url, token=token["token"], max_batch_events=10, flush_interval_ms=1, max_in_flight=1,
                     max_queue_events=1000)
    started = time.monotonic()
    for i in range(340):  # 34 batches of 10: 4 past the burst
        client.record("limited", i=i)
    assert client.flush(60)
    elapsed = time.monotonic() - started
    stats = client.stats()
    assert stats["sent"] == 340 and stats["dropped"] == 0 and stats["rejected"] == 0
    assert stats["retried"] >= 1 and elapsed >= 4 * 2 * 0.9, (stats, elapsed)
    stored = events(server.url, admin_headers(), expect=340, event_type="limited")
    assert sorted(e["attributes"]["i"] for e in stored) == list(range(340))
