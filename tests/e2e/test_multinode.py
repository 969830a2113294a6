"""Two `tea serve` nodes sharing one storage server (ClickHouse, then PostgreSQL), one Redis and one
TEA_SECRET_KEY: a token made on node 1 signs requests node 2 accepts; events posted to both are
readable from either; a nonce used on one is refused on the other; a tenant's rate limit is global;
node 1 is SIGKILLed under load and restarted — every acknowledged event is stored exactly once."""
from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter

import httpx
import pytest

from tests.auth.conftest import ADMIN_TOKEN, bearer, create_token
from tests.auth.test_tokens_and_signing import signed_post
from tests.e2e.conftest import stored_keys

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLIENTS = 4
PER_CLIENT = 4_000
BATCH = 250
KILL_AFTER = 5_000


def wait_for_count(url: str, expected: int, timeout_s: float = 120) -> Counter[tuple[str, str]]:
    deadline = time.monotonic() + timeout_s
    while True:
        keys = stored_keys(url, headers=bearer(ADMIN_TOKEN), event_type="load")
        if sum(keys.values()) >= expected or time.monotonic() > deadline:
            return keys
        time.sleep(0.5)


@pytest.mark.parametrize("backend", ["clickhouse", "postgres"])
def test_two_nodes_behave_as_one_service(backend, request, tea_process, redis_server, tmp_path) -> None:
    url = request.getfixturevalue(f"{backend}_server").fresh_url()
    env = {"TEA_AUTH_VALIDATION": "true", "TEA_ADMIN_TOKEN": ADMIN_TOKEN, "TEA_REDIS_URL": redis_server.url,
           "TEA_STORAGE_BACKEND": backend, f"TEA_{backend.upper()}_URL": url, "TEA_SECRET_KEY": "s" * 48,
           "TEA_TIER__FREE__REQUESTS_PER_MINUTE": "6", "TEA_WRITER__FLUSH_INTERVAL_MS": "50"}
    one = tea_process(tmp_path / "one", **env).start()
    two = tea_process(tmp_path / "two", **env).start()

    # a token created through node 1 signs a request node 2 accepts (shared token store + secret key)
    token = create_token(one.url, "acme", "enterprise")
    body = b'[{"event_type":"signed","tenant_id":"acme"}]'
    accepted = signed_post(two.url, token["token"], token["secret"], body)
    assert accepted.status_code == 200, accepted.text
    # a nonce used on node 1 is refused on node 2
    nonce = str(uuid.uuid4())
    assert signed_post(one.url, token["token"], token["secret"], body, nonce=nonce).status_code == 200
    replay = signed_post(two.url, token["token"], token["secret"], body, nonce=nonce)
    assert replay.status_code == 409, replay.text
    # one rate limit for the tenant across both nodes (tier free: 6 requests a minute)
    free = create_token(two.url, "limited", "free")["token"]
    statuses = [httpx.get((one if i % 2 else two).url + "/v1/events", headers=bearer(free)).status_code
                for i in range(8)]
    assert statuses == [200] * 6 + [429] * 2

    # load on both nodes; node 1 is killed with SIGKILL mid-stream and restarted
    writer = create_token(one.url, "load", "enterprise")["token"]
    acked: set[tuple[str, str]] = set()
    lock = threading.Lock()
    resume = threading.Event()
    failures: list[str] = []

    def client(n: int) -> None:
        target = one if n % 2 == 0 else two
        deadline = time.monotonic() + 240
        with httpx.Client(timeout=30, headers=bearer(writer)) as http:
            for start in range(0, PER_CLIENT, BATCH):
                batch = [{"event_type": "load", "event_id": f"n{n}-{i:06d}", "duration_ms": i % 50}
                         for i in range(start, start + BATCH)]
                while True:
                    if time.monotonic() > deadline:
                        failures.append(f"client {n} timed out")
                        return
                    try:
                        r = http.post(target.url + "/v1/events", json=batch)
                    except httpx.TransportError:
                        resume.wait(120)
                        continue
                    if r.status_code == 200:
                        with lock:
                            acked.update(("load", e["event_id"]) for e in batch)
                        break
                    if r.status_code not in (503, 429):
                        failures.append(f"client {n}: {r.status_code} {r.text[:200]}")
                        return
                    time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    while len(acked) < KILL_AFTER and any(t.is_alive() for t in threads):
        time.sleep(0.001)
    one.signal(signal.SIGKILL)
    one.wait(30)
    with lock:
        before_kill = set(acked)
    assert KILL_AFTER <= len(before_kill) < CLIENTS * PER_CLIENT, "the kill did not land mid-stream"
    one.start()  # same data dir: replays its buffer into the shared storage
    resume.set()
    for t in threads:
        t.join(300)
    assert not failures, failures
    expected = {("load", f"n{n}-{i:06d}") for n in range(CLIENTS) for i in range(PER_CLIENT)}
    assert acked == expected
    for node in (one, two):  # every event readable from either node, each exactly once
        stored = wait_for_count(node.url, len(expected))
        assert set(stored) == expected, f"{len(expected - set(stored))} acknowledged events missing"
        assert max(stored.values()) == 1, "duplicates"
    one.stop()
    two.stop()
