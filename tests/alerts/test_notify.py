"""Webhook delivery: HMAC signatures a receiver can verify, retries with backoff, bounded queue; the loop."""
from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx

from tea.alerts.notify import Notifier, sign
from tests.alerts.conftest import SECRET, Receiver, verify
from tests.alerts.test_kinds import comm, post
from tests.conftest import free_port


def test_retries_until_the_receiver_answers_and_every_attempt_is_signed(alerting, receiver) -> None:
    flaky: Receiver = receiver(503, 502)   # fails twice, then 200
    refusing: Receiver = receiver(400)     # a 4xx is final: no retry
    throttled: Receiver = receiver(429)    # 429 is retried
    dead = f"http://127.0.0.1:{free_port()}/nobody"  # connection refused every time
    a = alerting("memory", flaky, alerts__webhook_urls=",".join([flaky.url, refusing.url, throttled.url, dead]),
                 alerts__webhook_retries=3)
    assert httpx.post(a.url + "/v1/alerts/rules", json={"name": "e", "kind": "error_rate",
                                                        "params": {"threshold_percent": 1}}).status_code == 201
    post(a, [comm("mcp", "error")], 1)
    assert [m["state"] for m in a.evaluate()] == ["firing"]
    body = flaky.wait_delivered(1)[0]
    assert body["state"] == "firing" and body["value"] == 100.0
    assert [s for s, _, _ in flaky.hits] == [503, 502, 200]
    for _, headers, raw in flaky.hits:
        assert verify(headers, raw) and headers["content-type"] == "application/json"
        assert headers["x-tea-signature"] == sign(SECRET, headers["x-tea-timestamp"], raw)
    assert not verify({**flaky.hits[0][1], "x-tea-signature": "sha256=" + "0" * 64}, flaky.hits[0][2])
    assert not verify(flaky.hits[0][1], flaky.hits[0][2].replace(b"firing", b"resolved"))
    docs_verify = docs_snippet()
    _, headers, raw = flaky.hits[-1]
    as_sent = {"X-TEA-Timestamp": headers["x-tea-timestamp"], "X-TEA-Signature": headers["x-tea-signature"]}
    assert docs_verify(SECRET, as_sent, raw) and not docs_verify("another secret", as_sent, raw)
    throttled.wait_delivered(1)
    assert [s for s, _, _ in throttled.hits] == [429, 200]
    notifier = a.app.alerts.notifier
    deadline = time.monotonic() + 10
    while notifier.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [s for s, _, _ in refusing.hits] == [400]
    assert (notifier.delivered, notifier.failed) == (2, 2)
    assert notifier.attempts == 3 + 1 + 2 + 4  # flaky, refusing, throttled, dead (1 + 3 retries)


def test_the_queue_is_bounded_and_drops_the_oldest() -> None:
    notifier = Notifier(("http://127.0.0.1:9/",), None, max_pending=2)
    for n in range(5):
        notifier.submit({"rule_id": "r", "state": "firing", "n": n})
    assert notifier.dropped == 3 and [x["n"] for x in notifier.batcher.queue] == [3, 4]
    Notifier((), None).submit({"n": 1})  # no URLs: nothing queued


def test_notifications_queued_at_shutdown_are_delivered_before_tea_stops(alerting, receiver) -> None:
    hook = receiver()
    hook.delay_s = 0.2  # a slow receiver: the queue is still full when the server is told to stop
    a = alerting("memory", hook)
    loop = a.app.loop
    for n in range(3):
        loop.call_soon_threadsafe(a.app.alerts.notifier.submit, {"rule_id": "r", "state": "firing", "n": n})
    a.live.stop()
    assert [b["n"] for b in hook.delivered()] == [0, 1, 2]
    assert a.app.alerts.notifier.dropped == 0 and a.app.alerts.notifier.delivered == 3


def test_drain_gives_up_at_its_deadline_and_counts_what_is_left() -> None:
    async def go() -> None:
        notifier = Notifier(("http://127.0.0.1:9/hook",), None, retries=5, backoff_s=1.0)  # refused, retried
        task = asyncio.create_task(notifier.run())
        for n in range(2):
            notifier.submit({"rule_id": "r", "state": "firing", "n": n})
        await asyncio.sleep(0.05)
        started = time.monotonic()
        assert await notifier.drain(0.3) == 2  # one in delivery, one queued
        assert 0.25 < time.monotonic() - started < 2 and notifier.dropped == 2
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        empty = Notifier(("http://127.0.0.1:9/hook",), None)
        assert await empty.drain(5) == 0 and empty.dropped == 0  # nothing queued: at once
    asyncio.run(go())


def test_unsigned_without_a_secret(receiver) -> None:
    hook = receiver()

    async def go() -> None:
        notifier = Notifier((hook.url,), None, backoff_s=0.01)
        async with httpx.AsyncClient() as client:
            assert await notifier.deliver(client, hook.url, b'{"state":"firing"}')
    asyncio.run(go())
    assert "x-tea-signature" not in hook.hits[0][1] and hook.hits[0][1]["x-tea-timestamp"].isdigit()


def test_the_loop_evaluates_on_its_own(alerting, receiver) -> None:
    hook = receiver()
    a = alerting("duckdb", hook, alerts__default_rules=True, alerts__interval_s=0.05)
    post(a, [comm("a2a", "error", duration_ms=5000)], 1)
    bodies = hook.wait_delivered(2)
    assert sorted(b["rule_id"] for b in bodies) == ["default-error-rate", "default-latency"]
    assert a.app.alerts.runs >= 1 and a.app.alerts.failures == 0


def docs_snippet():  # type: ignore[no-untyped-def]
    """The receiver-side ``verify`` of docs/agents.md, as printed there."""
    page = (Path(__file__).parents[2] / "docs" / "agents.md").read_text()
    [code] = [b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "X-TEA-Signature" in b]
    scope: dict = {}
    exec(code, scope)  # noqa: S102 - our own documentation
    return scope["verify"]
