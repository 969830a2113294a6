"""Alert notifications: signed JSON webhooks, delivered from a bounded queue with retries.

Every notification is one JSON body POSTed to each URL of ``alerts.webhook_urls`` with

* ``X-TEA-Timestamp``: unix seconds when it was signed (receivers should refuse old ones),
* ``X-TEA-Signature``: ``sha256=`` + hex HMAC-SHA256 over ``"{timestamp}.{body}"`` keyed with
  ``alerts.webhook_secret`` (absent when no secret is set).

A connection error, timeout, 5xx or 429 is retried up to ``alerts.webhook_retries`` times, after
``webhook_backoff_s`` doubling each time (at most 60 s, or the server's ``Retry-After`` up to that),
with jitter; any other answer ends the delivery. The queue holds at most ``max_pending`` notifications;
past that the oldest is dropped and counted. At shutdown TEA lets the queue drain for a while (``drain``)
before it stops the deliveries; what is left then is logged and counted as dropped.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
from typing import Any, Callable

import httpx
import msgspec

from tea.batching import Batcher

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 60.0
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``"{timestamp}.{body}"``)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class Notifier:
    def __init__(self, urls: tuple[str, ...], secret: str | None, *, timeout_s: float = 5.0, retries: int = 3,
                 backoff_s: float = 1.0, max_pending: int = 1000, wall: Callable[[], float] = time.time) -> None:
        self.urls = urls
        self.secret = secret
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.wall = wall
        # one notification at a time, at once: a batch of one, no interval; the oldest goes when full
        self.batcher: Batcher[dict[str, Any]] = Batcher("alert notifications", self._deliver_batch, max_items=1,
                                                        max_interval_s=0.0, max_queue=max_pending)
        self._client: httpx.AsyncClient | None = None
        self.dropped = 0
        self.delivered = 0
        self.failed = 0
        self.attempts = 0

    @property
    def pending(self) -> int:
        return self.batcher.pending

    def submit(self, notification: dict[str, Any]) -> None:
        """Queue one notification (never blocks); drops the oldest when the queue is full."""
        if not self.urls:
            return
        gone = self.batcher.offer_dropping_oldest(notification)
        if gone is not None:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("alert notification queue full (%d): dropped the oldest (%s %s); %d dropped so far",
                            self.batcher.max_queue, gone.get("rule_id"), gone.get("state"), self.dropped)

    async def drain(self, timeout_s: float) -> int:
        """Wait until every queued notification has been delivered or given up, at most ``timeout_s``;
        returns how many were still waiting (counted as dropped: the caller stops deliveries next)."""
        left = await self.batcher.drain(timeout_s)
        if left:
            self.dropped += left
            log.warning("shutdown: %d alert notification(s) not delivered within %.1f s", left, timeout_s)
        return left

    async def run(self) -> None:
        """Deliver notifications as they are submitted, until ``drain()``."""
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as client:
            self._client = client
            try:
                await self.batcher.run()
            finally:
                self._client = None

    async def _deliver_batch(self, notifications: list[dict[str, Any]]) -> None:
        assert self._client is not None
        for notification in notifications:
            await self._deliver_all(self._client, notification)

    async def _deliver_all(self, client: httpx.AsyncClient, notification: dict[str, Any]) -> None:
        body = msgspec.json.encode(notification)
        results = await asyncio.gather(*(self.deliver(client, url, body) for url in self.urls))
        for ok in results:
            if ok:
                self.delivered += 1
            else:
                self.failed += 1

    def headers(self, body: bytes) -> dict[str, str]:
        timestamp = str(int(self.wall()))
        out = {"content-type": "application/json", "user-agent": "tea-alerts", "x-tea-timestamp": timestamp}
        if self.secret:
            out["x-tea-signature"] = sign(self.secret, timestamp, body)
        return out

    async def deliver(self, client: httpx.AsyncClient, url: str, body: bytes) -> bool:
        """POST ``body`` to ``url`` with retries; True when the receiver answered 2xx."""
        for attempt in range(self.retries + 1):
            self.attempts += 1
            retry_after: float | None = None
            try:
                # signed per attempt: a retry carries a fresh timestamp
                response = await client.post(url, content=body, headers=self.headers(body))
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= response.status_code < 300:
                    return True
                problem = f"HTTP {response.status_code}"
                if response.status_code not in _RETRY_STATUSES:
                    log.warning("alert webhook %s refused the notification: %s (not retried)", url, problem)
                    return False
                retry_after = _retry_after(response.headers.get("retry-after"))
            if attempt == self.retries:
                log.warning("alert webhook %s failed after %d attempts: %s", url, attempt + 1, problem)
                return False
            delay = min(MAX_BACKOFF_S, self.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0)
            if retry_after is not None:
                delay = max(delay, min(retry_after, MAX_BACKOFF_S))
            log.info("alert webhook %s: %s; retry %d in %.2f s", url, problem, attempt + 1, delay)
            await asyncio.sleep(delay)
        return False


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
