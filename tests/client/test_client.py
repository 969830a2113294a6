"""TeaClient and AsyncTeaClient against a real TEA over loopback: what is stored, credentials, bounds, budgets."""
from __future__ import annotations

import asyncio
import threading
import time
import uuid

import jwt
import pytest

from tea_client import AsyncTeaClient, TeaClient
from tea_client.transport import default_gzip_level
from tests.auth.conftest import admin_headers, create_token
from tests.client.conftest import events
from tests.conftest import free_port


def test_events_are_stored_with_client_ids_columns_and_attributes(serve, clients) -> None:
    server = serve()
    client = clients(server.url, source="checkout", tenant_id="acme")
    before = time.time()
    for i in range(1200):
        client.record("mcp_request", method="tools/call", duration_ms=i % 50, user_id="u%d" % (i % 3), tool="search",
                      i=i)
    assert client.flush(30)
    stats = client.stats()
    assert stats["sent"] == 1200 and stats["dropped"] == 0 and stats["queued"] == 0 and stats["rejected"] == 0
    assert stats["requests"] >= 3  # 512-event batches
    stored = events(server.url, expect=1200, tenant_id="acme", event_type="mcp_request")
    assert len(stored) == 1200 and len({e["event_id"] for e in stored}) == 1200
    assert sorted(e["attributes"]["i"] for e in stored) == list(range(1200))
    one = next(e for e in stored if e["attributes"]["i"] == 7)
    assert uuid.UUID(one["event_id"]).version == 7
    assert (one["source"], one["method"], one["duration_ms"], one["user_id"]) == ("checkout", "tools/call", 7.0, "u1")
    assert one["tool"] == "search"  # TEA's MCP/GenAI column, as method is
    assert one["attributes"] == {"i": 7} and one["source_protocol"] == "native"
    stamped = time.mktime(time.strptime(one["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert before - 1 <= stamped <= time.time() + 1  # the time of record(), made by the client


def test_signed_requests_with_a_token_and_its_secret(secure, clients) -> None:
    server = secure(auth__require_signature=True)
    token = create_token(server.url, "acme")
    # gzipped as across a network: TEA checks the signature over the decompressed body
    client = clients(server.url, token=token["token"], secret=token["secret"], gzip_level=1)
    for i in range(10):
        client.record("signed", i=i)
    assert client.flush(30) and client.stats()["sent"] == 10
    signed = events(server.url, admin_headers(), expect=10, event_type="signed")
    assert len(signed) == 10 and {e["tenant_id"] for e in signed} == {"acme"}
    # the same token without its secret is refused (signature required): counted, never retried
    unsigned = clients(server.url, token=token["token"])
    unsigned.record("signed")
    assert unsigned.flush(30)
    stats = unsigned.stats()
    assert (stats["sent"], stats["rejected"], stats["retried"], stats["requests"]) == (0, 1, 0, 1)


def test_a_jwt_is_sent_as_a_bearer_token(secure, clients) -> None:
    server = secure(auth__jwt_secret="j" * 32)
    token = jwt.encode({"sub": "alice", "tenant": "beta", "exp": int(time.time()) + 600}, "j" * 32, algorithm="HS256")
    client = clients(server.url, token=token)
    client.record("with_jwt")
    assert client.flush(30) and client.stats()["sent"] == 1
    [stored] = events(server.url, admin_headers(), expect=1, event_type="with_jwt")
    assert stored["tenant_id"] == "beta"


def test_a_full_queue_drops_the_oldest_and_counts_them(peer, clients) -> None:
    tea = peer([])
    client = clients(tea.url, max_queue_events=100, max_batch_events=1000, flush_interval_ms=60_000)
    for i in range(250):
        client.record("burst", i=i)
    stats = client.stats()
    assert (stats["queued"], stats["dropped"], stats["dropped_by_reason"]["queue_full"]) == (100, 150, 150)
    assert client.flush(30)
    assert [e["attributes"]["i"] for e in tea.events()] == list(range(150, 250))  # the newest 100, in order
    assert client.stats()["sent"] == 100


def test_close_keeps_to_its_budget_when_tea_is_away(clients) -> None:
    client = clients("http://127.0.0.1:%d" % free_port(), max_backoff_s=0.2)
    for i in range(20):
        client.record("lost", i=i)
    started = time.monotonic()
    assert client.close(0.5) is False
    assert time.monotonic() - started < 3.0
    stats = client.stats()
    assert stats["dropped_by_reason"]["closed"] == 20 and stats["sent"] == 0 and stats["retried"] >= 1
    client.record("after_close")  # ignored, never raised
    assert client.stats()["recorded"] == 20


def test_record_never_raises(peer, clients) -> None:
    tea = peer([])
    client = clients(tea.url)
    client.record("odd", value=object(), nested={"set": {1, 2}}, when=b"bytes", nan=float("nan"))
    client.record("odd", duration_ms="not a number")  # TEA refuses it per item: counted as rejected
    assert client.flush(10)
    assert client.stats()["sent"] == 2  # the peer accepts everything; TEA's own checks are below
    assert [e["event_type"] for e in tea.events()] == ["odd", "odd"]


def test_items_tea_refuses_are_counted_not_retried(serve, clients) -> None:
    server = serve()
    client = clients(server.url)
    client.record("fine")
    client.record("bad", duration_ms=-5)
    client.record("bad", status_code="x")
    assert client.flush(30)
    stats = client.stats()
    assert (stats["sent"], stats["rejected"], stats["retried"], stats["requests"]) == (1, 2, 0, 1)


def test_do_not_track_sends_nothing(monkeypatch, peer) -> None:
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    tea = peer([])
    senders = sum(t.name == "tea-client-sender" for t in threading.enumerate())
    client = TeaClient(tea.url, close_at_exit=False)
    client.record("tracked?", i=1)
    client.track_command("build", success=True)
    assert client.flush(1) and client.close(1)
    assert not client.enabled and client.stats()["recorded"] == 0 and client.stats()["enabled"] is False
    assert tea.requests == []
    assert sum(t.name == "tea-client-sender" for t in threading.enumerate()) == senders  # no thread, no socket


def test_environment_configures_a_client_without_arguments(monkeypatch, peer) -> None:
    tea = peer([])
    monkeypatch.setenv("TEA_ENDPOINT", tea.url)
    monkeypatch.setenv("TEA_TOKEN", "tk_from_env")
    monkeypatch.setenv("TEA_SECRET", "secret-from-env")
    client = TeaClient(close_at_exit=False, flush_interval_ms=50)
    try:
        client.record("from_env")
        assert client.flush(10)
    finally:
        client.close(1)
    _, headers, _ = tea.requests[0]
    assert headers["Authorization"] == "Bearer tk_from_env"
    assert len(headers["X-Signature"]) == 64
    assert "Content-Encoding" not in headers  # a TEA on the loopback: no gzip by default


def test_gzip_across_a_network_or_when_asked(peer) -> None:
    assert [default_gzip_level(url) for url in ("http://127.0.0.1:3001", "http://[::1]:3001",
                                                "http://localhost:3001", "http://127.8.0.1",
                                                "https://tea.example.com", "http://10.0.0.7:3001")] == [0, 0, 0, 0, 1, 1]
    tea = peer([])
    client = TeaClient(tea.url, "tk_x", "s3cret", close_at_exit=False, flush_interval_ms=50, gzip_level=1)
    try:
        client.record("packed", n=1)
        assert client.flush(10)
    finally:
        client.close(1)
    _, headers, body = tea.requests[0]
    assert headers["Content-Encoding"] == "gzip" and len(headers["X-Signature"]) == 64
    assert body[0]["attributes"] == {"n": 1}  # (the peer decompressed what it got)


def test_missing_endpoint_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("TEA_ENDPOINT", raising=False)
    monkeypatch.delenv("DO_NOT_TRACK", raising=False)
    with pytest.raises(ValueError, match="endpoint"):
        TeaClient(close_at_exit=False)


def test_timed_blocks_and_functions(serve, clients) -> None:
    server = serve()
    client = clients(server.url)
    with client.timed("job", method="nightly") as t:
        time.sleep(0.05)
        t.set(rows=3)
    with pytest.raises(KeyError):
        with client.timed("job", method="broken"):
            raise KeyError("missing")

    @client.timed("step")
    def step(x: int) -> int:
        return x * 2

    @client.timed("async_step")
    async def async_step() -> str:
        await asyncio.sleep(0.01)
        return "done"

    assert step(21) == 42 and asyncio.run(async_step()) == "done"
    assert client.flush(30)
    by_method = {e["method"]: e for e in events(server.url, expect=4)}
    assert by_method["nightly"]["status"] == "ok" and by_method["nightly"]["duration_ms"] >= 50
    assert by_method["nightly"]["attributes"] == {"rows": 3}
    broken = by_method["broken"]
    assert (broken["status"], broken["error_type"], broken["error_message"]) == ("error", "KeyError", "'missing'")
    assert by_method["test_timed_blocks_and_functions.<locals>.step"]["event_type"] == "step"
    assert by_method["test_timed_blocks_and_functions.<locals>.async_step"]["duration_ms"] >= 10


def test_track_command_and_feature_as_telemetry_kit_records_them(serve, clients) -> None:
    server = serve()
    client = clients(server.url, source="my-cli")
    client.track_command("deploy", success=False, duration_ms=1234.0, exit_code=2, subcommand="prod")
    client.track_feature("export", method="csv", success=True, rows=10)
    assert client.flush(30)
    stored = {e["event_type"]: e for e in events(server.url, expect=2)}
    command = stored["command_execution"]
    assert (command["method"], command["status"], command["duration_ms"], command["source"]) == (
        "deploy", "error", 1234.0, "my-cli")
    assert command["attributes"] == {"category": "usage", "data": {
        "command": "deploy", "subcommand": "prod", "success": False, "duration_ms": 1234.0, "exit_code": 2}}
    feature = stored["feature_used"]
    assert (feature["method"], feature["status"]) == ("export", "ok")
    assert feature["attributes"] == {"category": "library", "data": {
        "feature": "export", "method": "csv", "success": True, "rows": 10}}


def test_async_client(serve) -> None:
    server = serve()

    async def main() -> dict:
        async with AsyncTeaClient(server.url, flush_interval_ms=50, close_at_exit=False) as client:
            for i in range(5):
                await client.record("async_event", i=i)
            await client.track_feature("search")
            async with client.timed("async_block"):
                await asyncio.sleep(0.01)
            assert await client.flush(30)
            return await client.stats()

    stats = asyncio.run(main())
    assert stats["sent"] == 7
    assert sorted(e["event_type"] for e in events(server.url, expect=7)) == ["async_block"] + ["async_event"] * 5 + [
        "feature_used"]


def test_a_connection_the_server_closed_while_idle_is_not_a_failure(serve, clients) -> None:
    server = serve()  # uvicorn closes a kept-alive connection after 5 s of silence
    client = clients(server.url, max_in_flight=1)
    client.record("before_idle")
    assert client.flush(10)
    time.sleep(5.5)
    client.record("after_idle")
    assert client.flush(10)
    stats = client.stats()
    assert (stats["sent"], stats["retried"], stats["dropped"]) == (2, 0, 0), stats
