"""Rate limits and quotas per token (or per tenant for JWT principals), by tier.

Requests per minute are checked before the body is read; events per minute and the monthly event
quota once the events are counted. Limits of 0 mean unlimited (enterprise by default: no headers).
When the shared state is unreachable, ``on_error`` decides: ``open`` lets requests through (and
logs), ``closed`` answers 503.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from tea.auth.principal import Principal
from tea.auth.state import Decision, SharedState
from tea.errors import RateLimited, Unavailable

log = logging.getLogger(__name__)
MONTH_TTL_S = 35 * 86400


@dataclass(frozen=True)
class TierLimits:
    requests_per_minute: int
    events_per_minute: int
    events_per_month: int


class QuotaExceeded(RateLimited):
    code = "quota_exceeded"


def headers(decision: Decision) -> dict[str, str]:
    return {"x-ratelimit-limit": str(decision.limit), "x-ratelimit-remaining": str(decision.remaining),
            "x-ratelimit-reset": str(int(decision.reset_at + 0.999))}


def _too_many(message: str, decision: Decision, cls: type[RateLimited] = RateLimited) -> RateLimited:
    retry = max(1, int(decision.retry_after_s + 0.999))
    exc = cls(message, details={"retry_after": retry}, headers={**headers(decision), "retry-after": str(retry)})
    exc.retry_after = retry  # type: ignore[attr-defined]
    return exc


class Limiter:
    def __init__(self, state: SharedState, tiers: dict[str, TierLimits], on_error: str = "open",
                 clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.tiers = tiers
        self.on_error = on_error
        self.clock = clock

    def _tier(self, principal: Principal) -> TierLimits | None:
        if principal.is_admin or principal.method in ("dev", "admin_token"):
            return None
        return self.tiers.get(principal.tier)

    async def request(self, principal: Principal) -> dict[str, str]:
        """Count one request; the X-RateLimit-* headers to send, or raise 429."""
        tier = self._tier(principal)
        if tier is None or tier.requests_per_minute <= 0:
            return {}
        decision = await self._guard(self.state.gcra(f"rpm:{principal.limit_key}", tier.requests_per_minute, 60.0))
        if decision is None:
            return {}
        if not decision.allowed:
            raise _too_many("Rate limit exceeded for this token", decision)
        return headers(decision)

    async def events(self, principal: Principal, count: int) -> None:
        """Count ``count`` events against the per-minute rate and the monthly quota, or raise 429."""
        tier = self._tier(principal)
        if tier is None or count <= 0:
            return
        if tier.events_per_minute > 0:
            decision = await self._guard(self.state.gcra(f"epm:{principal.limit_key}", tier.events_per_minute,
                                                         60.0, count))
            if decision is not None and not decision.allowed:
                raise _too_many(f"event rate limit exceeded ({tier.events_per_minute} events per minute)", decision)
        if tier.events_per_month > 0:
            month = datetime.fromtimestamp(self.clock(), timezone.utc).strftime("%Y-%m")
            result = await self._guard(self.state.quota(f"{principal.limit_key}:{month}", tier.events_per_month,
                                                        count, MONTH_TTL_S))
            if result is not None and not result[0]:
                reset = _next_month(self.clock())
                decision = Decision(False, tier.events_per_month, 0, reset, reset - self.clock())
                raise _too_many(f"monthly event quota exceeded ({tier.events_per_month} events, "
                                f"{result[1]} used)", decision, QuotaExceeded)

    async def _guard(self, pending):  # type: ignore[no-untyped-def]
        try:
            return await pending
        except (OSError, ConnectionError, TimeoutError) as exc:
            return self._state_down(exc)
        except Exception as exc:  # redis raises its own error types: state boundary
            if type(exc).__module__.startswith("redis"):
                return self._state_down(exc)
            raise

    def _state_down(self, exc: BaseException) -> None:
        log.error("rate-limit state unreachable (%s); policy: %s", exc, self.on_error)
        if self.on_error == "closed":
            raise Unavailable("rate limits cannot be checked right now", retry_after_s=5,
                              code="limits_unavailable") from None
        return None


def _next_month(now: float) -> float:
    dt = datetime.fromtimestamp(now, timezone.utc)
    year, month = (dt.year + 1, 1) if dt.month == 12 else (dt.year, dt.month + 1)
    return datetime(year, month, 1, tzinfo=timezone.utc).timestamp()
