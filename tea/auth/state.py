"""State shared between TEA nodes: replay nonces, rate-limit cells and quota counters.

``LocalState`` keeps it in this process (one node); ``RedisState`` in Redis, with every decision
made atomically by a server-side script, so any number of nodes enforce one limit together.
Without Redis the monthly quota counters are also saved in storage (``StoredQuotas``: documents of
kind ``tea.quota``, every few seconds and at shutdown), so a restart does not start the month over;
nonces and per-minute cells are not (a restart forgets them: they last minutes).
Rate limits use GCRA (the generic cell rate algorithm): a steady rate with a burst of one full
period, no fixed-window boundary to double up on.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from tea.lifecycle import Periodic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: float       # epoch seconds when the full allowance is back
    retry_after_s: float  # 0 when allowed


class SharedState(Protocol):
    async def claim_nonce(self, nonce: str, ttl_s: int) -> bool:
        """True the first time a nonce is seen within ``ttl_s``; False for a replay. Atomic."""

    async def gcra(self, key: str, limit: int, period_s: float, cost: int = 1) -> Decision:
        """Take ``cost`` cells from a bucket refilled at ``limit`` per ``period_s`` (burst: ``limit``)."""

    async def quota(self, key: str, limit: int, cost: int, ttl_s: int) -> tuple[bool, int]:
        """Add ``cost`` to a counter unless that would pass ``limit``: (allowed, used so far)."""

    async def close(self) -> None: ...


def _gcra_math(tat: float, now: float, limit: int, period_s: float, cost: int) -> tuple[bool, float, Decision]:
    interval = period_s / limit
    tat = max(tat, now)
    new_tat = tat + cost * interval
    allow_at = new_tat - period_s
    if now < allow_at:
        remaining = max(0, int((now + period_s - tat) / interval))
        return False, tat, Decision(False, limit, remaining, now + (tat - now), allow_at - now)
    remaining = max(0, int(math.floor((now + period_s - new_tat) / interval)))
    return True, new_tat, Decision(True, limit, remaining, new_tat, 0.0)


class LocalState:
    def __init__(self, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        self.clock = clock
        self._nonces: dict[str, float] = {}
        self._cells: dict[str, float] = {}
        self._counters: dict[str, tuple[int, float]] = {}
        self._changed: set[str] = set()  # quota counters not yet saved (StoredQuotas)
        self._sweep_at = 0.0

    def _sweep(self, now: float) -> None:
        if now < self._sweep_at:
            return
        self._sweep_at = now + 60
        self._nonces = {k: v for k, v in self._nonces.items() if v > now}
        self._counters = {k: v for k, v in self._counters.items() if v[1] > now}

    async def claim_nonce(self, nonce: str, ttl_s: int) -> bool:
        now = self.clock()
        self._sweep(now)
        if self._nonces.get(nonce, 0) > now:
            return False
        self._nonces[nonce] = now + ttl_s
        return True

    async def gcra(self, key: str, limit: int, period_s: float, cost: int = 1) -> Decision:
        now = self.clock()
        allowed, tat, decision = _gcra_math(self._cells.get(key, 0.0), now, limit, period_s, cost)
        if allowed:
            self._cells[key] = tat
        return decision

    async def quota(self, key: str, limit: int, cost: int, ttl_s: int) -> tuple[bool, int]:
        now = self.clock()
        used, expires = self._counters.get(key, (0, now + ttl_s))
        if expires <= now:
            used, expires = 0, now + ttl_s
        if used + cost > limit:
            return False, used
        self._counters[key] = (used + cost, expires)
        self._changed.add(key)
        return True, used + cost

    def restore_quota(self, key: str, used: int, expires_at: float) -> None:
        """A counter saved before a restart (kept when it is still running and ahead of this one)."""
        if expires_at > self.clock() and used > self._counters.get(key, (0, 0.0))[0]:
            self._counters[key] = (used, expires_at)

    def changed_quotas(self) -> dict[str, tuple[int, float]]:
        """The counters changed since the last call: ``key -> (used, expires_at)``."""
        out = {k: self._counters[k] for k in self._changed if k in self._counters}
        self._changed.clear()
        return out

    async def close(self) -> None:
        return None


_GCRA_LUA = """
local now = tonumber(ARGV[1]) local limit = tonumber(ARGV[2]) local period = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local interval = period / limit
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - period
if now < allow_at then
  return {0, tostring(tat), tostring(allow_at - now)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, tostring(new_tat), '0'}
"""
_QUOTA_LUA = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local cost = tonumber(ARGV[1]) local limit = tonumber(ARGV[2])
if used + cost > limit then return {0, used} end
used = redis.call('INCRBY', KEYS[1], cost)
if used == cost then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3])) end
return {1, used}
"""


class RedisState:
    """Shared state in Redis; time comes from this node's clock (keep nodes NTP-synced)."""

    def __init__(self, url: str, prefix: str = "tea:", timeout_s: float = 2.0, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        import redis.asyncio as aioredis

        self.clock = clock
        self.prefix = prefix
        self.client = aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._gcra = self.client.register_script(_GCRA_LUA)
        self._quota = self.client.register_script(_QUOTA_LUA)

    async def claim_nonce(self, nonce: str, ttl_s: int) -> bool:
        return bool(await self.client.set(f"{self.prefix}nonce:{nonce}", b"1", nx=True, ex=ttl_s))

    async def gcra(self, key: str, limit: int, period_s: float, cost: int = 1) -> Decision:
        now = self.clock()
        allowed, tat, retry = await self._gcra(keys=[f"{self.prefix}gcra:{key}"],
                                               args=[repr(now), limit, repr(period_s), cost])
        tat, retry = float(tat), float(retry)
        interval = period_s / limit
        if allowed:
            return Decision(True, limit, max(0, int((now + period_s - tat) / interval)), tat, 0.0)
        return Decision(False, limit, max(0, int((now + period_s - tat) / interval)), tat, retry)

    async def quota(self, key: str, limit: int, cost: int, ttl_s: int) -> tuple[bool, int]:
        allowed, used = await self._quota(keys=[f"{self.prefix}quota:{key}"], args=[cost, limit, ttl_s])
        return bool(allowed), int(used)

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()


class StoredQuotas:
    """The monthly quota counters of a node without Redis, saved as storage documents (kind
    ``tea.quota`` of the system tenant ``_tea``, one per token and month) every ``save_every_s`` and
    at shutdown, and loaded at start. A crash loses at most the last ``save_every_s`` of counting.
    Several nodes without Redis each count on their own (and save over each other): share limits
    through Redis instead."""

    KIND = "tea.quota"
    TENANT = "_tea"

    def __init__(self, state: LocalState, storage: Any, save_every_s: float = 5.0) -> None:
        self.state = state
        self.storage = storage
        self.save_every_s = save_every_s

    async def load(self) -> int:
        """Restore the saved counters; forget the expired ones. Returns how many were restored."""
        restored = 0
        now = self.state.clock()
        for _, key, doc in await self.storage.list_documents(self.KIND, (self.TENANT,)):
            if doc.get("expires_at", 0) > now:
                self.state.restore_quota(key, int(doc["used"]), float(doc["expires_at"]))
                restored += 1
            else:
                await self.storage.delete_document(self.KIND, self.TENANT, key)
        return restored

    async def save(self) -> None:
        await self.storage.put_documents(self.KIND, [(self.TENANT, key, {"used": used, "expires_at": expires_at})
                                                     for key, (used, expires_at) in self.state.changed_quotas().items()])

    def schedule(self, final: Callable[[], Awaitable[object]] | None = None) -> Periodic:
        """``save`` every ``save_every_s``, the first a period after start, then ``final`` at stop."""
        return Periodic("quota saver", self.save, self.save_every_s, at_start=False, failed=self._failed,
                        final=final)

    def _failed(self, exc: Exception) -> None:  # storage boundary: keep counting in memory, save next time
        log.error("saving the monthly quota counters failed: %s", exc)
