"""Rate limits (GCRA) and quotas: the algorithm with an injected clock, the HTTP contract, and the
same limits shared through a real Redis by two TEA processes."""
from __future__ import annotations

import asyncio
import signal
import time
import uuid

import httpx
import pytest

from tea.auth.limits import Limiter, TierLimits
from tea.auth.principal import Principal
from tea.auth.state import LocalState, RedisState
from tea.errors import RateLimited
from tests.auth.conftest import ADMIN_TOKEN, admin_headers, bearer, create_token
from tests.auth.test_tokens_and_signing import signed_post


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@pytest.mark.parametrize("make_state", ["local", "redis"])
def test_gcra_allows_a_burst_then_the_steady_rate(make_state: str, request: pytest.FixtureRequest) -> None:
    clock = Clock()

    async def scenario() -> None:
        state = LocalState(clock) if make_state == "local" else RedisState(
            request.getfixturevalue("redis_server").url, prefix=f"t{uuid.uuid4().hex}:", clock=clock)
        decisions = [await state.gcra("k", 10, 60.0) for _ in range(12)]
        assert [d.allowed for d in decisions] == [True] * 10 + [False] * 2
        assert [d.remaining for d in decisions[:10]] == list(range(9, -1, -1))
        assert 5.9 < decisions[10].retry_after_s <= 6.0  # one cell every 6 s
        clock.t += 6.0
        assert (await state.gcra("k", 10, 60.0)).allowed
        assert not (await state.gcra("k", 10, 60.0)).allowed
        clock.t += 60.0
        burst = [await state.gcra("k", 10, 60.0) for _ in range(10)]
        assert all(d.allowed for d in burst)  # no fixed window: after a full period the whole burst is back
        big = await state.gcra("events", 100, 60.0, cost=80)
        assert big.allowed and big.remaining == 20
        assert not (await state.gcra("events", 100, 60.0, cost=30)).allowed
        await state.close()
    run(scenario())


@pytest.mark.parametrize("make_state", ["local", "redis"])
def test_monthly_quota_and_nonces(make_state: str, request: pytest.FixtureRequest) -> None:
    async def scenario() -> None:
        state = LocalState() if make_state == "local" else RedisState(
            request.getfixturevalue("redis_server").url, prefix=f"t{uuid.uuid4().hex}:")
        assert await state.quota("q", 100, 60, 3600) == (True, 60)
        assert await state.quota("q", 100, 50, 3600) == (False, 60)  # would pass the quota: refused whole
        assert await state.quota("q", 100, 40, 3600) == (True, 100)
        assert await state.claim_nonce("n1", 600) is True
        assert await state.claim_nonce("n1", 600) is False
        await state.close()
    run(scenario())


def test_limiter_per_tier() -> None:
    clock = Clock()
    tiers = {"free": TierLimits(2, 5, 8), "enterprise": TierLimits(0, 0, 0)}
    limiter = Limiter(LocalState(clock), tiers, clock=clock)
    free = Principal(tenant_id="a", tier="free", token_id="tok_1", method="token")

    async def scenario() -> None:
        assert (await limiter.request(free))["x-ratelimit-limit"] == "2"
        await limiter.request(free)
        with pytest.raises(RateLimited) as info:
            await limiter.request(free)
        assert info.value.headers["x-ratelimit-remaining"] == "0" and int(info.value.headers["retry-after"]) >= 1
        await limiter.events(free, 5)
        with pytest.raises(RateLimited, match="event rate"):
            await limiter.events(free, 1)
        clock.t += 60
        await limiter.events(free, 3)
        with pytest.raises(RateLimited, match="monthly event quota") as quota:
            await limiter.events(free, 1)
        assert quota.value.code == "quota_exceeded"
        unlimited = Principal(tenant_id="b", tier="enterprise", token_id="tok_2", method="token")
        assert await limiter.request(unlimited) == {}
        await limiter.events(unlimited, 10**6)
    run(scenario())


def test_429_contract_over_http(secure) -> None:
    live = secure(storage_backend="memory", tier__free__requests_per_minute=3)
    token = create_token(live.url, "acme", "free")["token"]
    responses = [httpx.post(live.url + "/v1/events", json={"event_type": "x"}, headers=bearer(token))
                 for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    ok, limited = responses[0], responses[3]
    assert ok.headers["x-ratelimit-limit"] == "3" and ok.headers["x-ratelimit-remaining"] == "2"
    assert int(ok.headers["x-ratelimit-reset"]) > time.time()
    body = limited.json()
    assert body["error"] == "rate_limit_exceeded" and body["retry_after"] >= 1 and body["message"]
    assert limited.headers["retry-after"] == str(body["retry_after"]) and limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["x-ratelimit-limit"] == "3" and int(limited.headers["x-ratelimit-reset"]) > time.time()
    admin = httpx.get(live.url + "/v1/events", headers=admin_headers())  # admins are not limited
    assert admin.status_code == 200 and "x-ratelimit-limit" not in admin.headers


def test_event_quota_over_http(secure) -> None:
    live = secure(storage_backend="memory", tier__free__events_per_month=5, tier__free__requests_per_minute=100)
    token = create_token(live.url, "acme", "free")["token"]
    assert httpx.post(live.url + "/v1/events", json=[{"event_type": "x"}] * 4, headers=bearer(token)).status_code == 200
    r = httpx.post(live.url + "/v1/events", json=[{"event_type": "x"}] * 2, headers=bearer(token))
    assert r.status_code == 429 and r.json()["error"] == "quota_exceeded"
    assert httpx.post(live.url + "/v1/events", json=[{"event_type": "x"}], headers=bearer(token)).status_code == 200


@pytest.mark.e2e
def test_two_processes_share_nonces_and_limits_through_redis(tea_process, redis_server, tmp_path) -> None:
    import jwt

    secret_key = "jwt-shared-secret-" + "z" * 32
    env = {"TEA_AUTH_VALIDATION": "true", "TEA_ADMIN_TOKEN": ADMIN_TOKEN, "TEA_REDIS_URL": redis_server.url,
           "TEA_STORAGE_BACKEND": "memory", "TEA_SECRET_KEY": "k" * 40, "TEA_AUTH__JWT_SECRET": secret_key,
           "TEA_TIER__FREE__REQUESTS_PER_MINUTE": "4"}
    first = tea_process(tmp_path / "one", **env).start()
    second = tea_process(tmp_path / "two", **env).start()
    # Replay: a nonce used on node 1 is refused on node 2 (nonces are global in Redis). Each node has its own
    # memory store here, so each signs with a token of its own; shared token stores come with issue 8's backends.
    one, two = create_token(first.url, "acme", "enterprise"), create_token(second.url, "acme", "enterprise")
    body = b'[{"event_type":"redis"}]'
    nonce = str(uuid.uuid4())
    assert signed_post(first.url, one["token"], one["secret"], body, nonce=nonce).status_code == 200
    replay = signed_post(second.url, two["token"], two["secret"], body, nonce=nonce)
    assert replay.status_code == 409 and replay.json()["message"] == "Duplicate nonce detected"
    # Limits: one JWT accepted by both nodes, tier free (4 requests/min) counted once across both
    claims = {"sub": "u", "tenant": "acme", "tier": "free", "exp": int(time.time()) + 300}
    token = jwt.encode(claims, secret_key, algorithm="HS256")
    statuses = [httpx.get((first if i % 2 == 0 else second).url + "/v1/events", headers=bearer(token)).status_code
                for i in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]
    # Redis goes away: signed requests fail closed (503); limits follow the "open" policy
    redis_server.stop()
    down = signed_post(first.url, one["token"], one["secret"], body)
    assert down.status_code == 503 and down.json()["error"] == "nonce_store_unavailable"
    assert httpx.get(first.url + "/v1/events", headers=bearer(token)).status_code == 200
    first.signal(signal.SIGTERM)
    second.signal(signal.SIGTERM)


def test_monthly_quota_survives_a_restart_without_redis(secure) -> None:
    settings = dict(storage_backend="duckdb", tier__free__events_per_month=5, tier__free__requests_per_minute=100)
    live = secure(**settings)
    token = create_token(live.url, "acme", "free")["token"]
    assert httpx.post(live.url + "/v1/events", json=[{"event_type": "x"}] * 4, headers=bearer(token)).status_code == 200
    live.stop()
    again = secure(**settings)  # the same data dir
    r = httpx.post(again.url + "/v1/events", json=[{"event_type": "x"}] * 2, headers=bearer(token))
    assert r.status_code == 429 and r.json()["error"] == "quota_exceeded", r.text  # 4 + 2 > 5: still this month's 4
    assert httpx.post(again.url + "/v1/events", json=[{"event_type": "x"}], headers=bearer(token)).status_code == 200
    assert httpx.post(again.url + "/v1/events", json=[{"event_type": "x"}], headers=bearer(token)).status_code == 429


def test_quota_counters_are_saved_while_running_and_expired_ones_forgotten() -> None:
    from tea.auth.state import StoredQuotas
    from tea.storage.memory import MemoryStorage

    async def scenario() -> None:
        clock = Clock()
        storage = MemoryStorage()
        state = LocalState(clock)
        quotas = StoredQuotas(state, storage, save_every_s=0.01)
        assert await state.quota("tok_1:2027-01", 100, 30, 3600) == (True, 30)
        saver = asyncio.create_task(quotas.schedule().run())
        await asyncio.sleep(0.1)  # saved by the loop, no shutdown needed (a crash loses at most one period)
        saver.cancel()
        await storage.put_document("tea.quota", "_tea", "tok_old:2026-12", {"used": 9, "expires_at": clock.t - 1})
        fresh = LocalState(clock)
        assert await StoredQuotas(fresh, storage).load() == 1
        assert await fresh.quota("tok_1:2027-01", 100, 71, 3600) == (False, 30)
        assert await fresh.quota("tok_1:2027-01", 100, 70, 3600) == (True, 100)
        assert [k for _, k, _ in await storage.list_documents("tea.quota", None)] == ["tok_1:2027-01"]
    run(scenario())


def test_events_per_minute_over_http(secure) -> None:
    live = secure(storage_backend="memory", tier__free__events_per_minute=5, tier__free__requests_per_minute=100,
                  tier__free__events_per_month=1000)
    token = create_token(live.url, "acme", "free")["token"]
    assert httpx.post(live.url + "/v1/events", json=[{"event_type": "x"}] * 3, headers=bearer(token)).status_code == 200
    r = httpx.post(live.url + "/v1/events", json=[{"event_type": "x"}] * 3, headers=bearer(token))
    assert r.status_code == 429 and r.json()["error"] == "rate_limit_exceeded"
    assert "5 events per minute" in r.json()["message"] and int(r.headers["retry-after"]) >= 1
    assert r.json()["retry_after"] == int(r.headers["retry-after"])
    assert httpx.post(live.url + "/v1/events", json=[{"event_type": "x"}] * 2, headers=bearer(token)).status_code == 200
    time.sleep(0.2)
    assert httpx.get(live.url + "/v1/events", headers=bearer(token)).json()["total_count"] == 5  # the refused 3: not stored


def test_error_answers_carry_the_rate_limit_headers(secure) -> None:
    live = secure(storage_backend="memory", tier__free__requests_per_minute=10)
    token = create_token(live.url, "acme", "free")["token"]
    answers = [httpx.post(live.url + "/v1/events", content=b"{not json", headers={**bearer(token),
                                                                                 "content-type": "application/json"}),
               httpx.get(live.url + "/v1/events/no-such-event", headers=bearer(token)),
               httpx.get(live.url + "/v1/events", params={"limit": "0"}, headers=bearer(token)),
               httpx.get(live.url + "/v1/events", params={"tenant_id": "globex"}, headers=bearer(token))]
    assert [r.status_code for r in answers] == [400, 404, 400, 403]
    remaining = [int(r.headers["x-ratelimit-remaining"]) for r in answers]
    assert remaining == [9, 8, 7, 6] and all(r.headers["x-ratelimit-limit"] == "10" for r in answers)
    assert all(int(r.headers["x-ratelimit-reset"]) >= int(time.time()) for r in answers)


def test_redis_down_with_limits_closed_then_back(secure, redis_server) -> None:
    live = secure(storage_backend="memory", redis_url=redis_server.url, auth__limits_on_state_error="closed")
    issued = create_token(live.url, "acme", "free")
    token, secret = issued["token"], issued["secret"]
    used = str(uuid.uuid4())
    assert signed_post(live.url, token, secret, b'[{"event_type":"r"}]', nonce=used).status_code == 200
    assert httpx.get(live.url + "/v1/events", headers=bearer(token)).status_code == 200
    redis_server.stop()
    r = httpx.get(live.url + "/v1/events", headers=bearer(token))
    assert r.status_code == 503 and r.json()["error"] == "limits_unavailable" and r.headers["retry-after"]
    assert signed_post(live.url, token, secret, b'[{"event_type":"r"}]').status_code == 503  # replay: closed
    assert httpx.get(live.url + "/v1/events", headers=admin_headers()).status_code == 200  # admins: no limits
    redis_server.start()  # the same port, empty (no persistence)
    statuses = [httpx.get(live.url + "/v1/events", headers=bearer(token)).status_code for _ in range(3)]
    assert statuses[-1] == 200, statuses  # reconnected by itself
    assert signed_post(live.url, token, secret, b'[{"event_type":"r"}]').status_code == 200
    # the documented cost of a Redis without persistence: the nonces it held are gone, so a request
    # signed before the restart (and still inside the ±600 s window) is accepted once more
    assert signed_post(live.url, token, secret, b'[{"event_type":"r"}]', nonce=used).status_code == 200
    assert signed_post(live.url, token, secret, b'[{"event_type":"r"}]', nonce=used).status_code == 409
