"""The live tail, GET /v1/events/stream, over real HTTP (no browser): the SSE format, filters, tenant
scoping, resuming with Last-Event-ID, gaps, the slow-client drop, the per-tenant cap, shutdown."""
from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from tests.ui.sse import Stream, messages

ADMIN = "stream-admin-" + "s" * 32


def client(url: str, token: str | None = None, read_s: float = 5.0) -> httpx.Client:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(10.0, read=read_s))


def post(url: str, events: list[dict[str, Any]], token: str | None = None) -> httpx.Response:
    with client(url, token) as c:
        r = c.post("/v1/events", json=events)
    assert r.status_code == 200, r.text
    return r


def opened(stream: Stream) -> str:
    """Read the stream's first message (the id it opens at); returns that id."""
    first = stream.next()
    assert "open" in first.comments and first.retry == 2000 and first.id
    return first.id


def test_events_arrive_as_server_sent_events(serve) -> None:
    live = serve(storage_backend="memory")
    with client(live.url) as c, Stream(c, {"tenant_id": "acme"}) as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert "no-cache" in stream.response.headers["cache-control"]
        epoch = opened(stream).split("-")[0]
        sent = [{"event_type": "tool_call", "tenant_id": "acme", "method": f"m{i}", "attributes": {"i": i}}
                for i in range(3)]
        sent.insert(1, {"event_type": "tool_call", "tenant_id": "other", "method": "not-mine"})
        ids = post(live.url, sent).json()["event_ids"]
        got = stream.events(3)
    assert [m.event for m in got] == ["message"] * 3
    bodies = [m.json() for m in got]
    assert [b["method"] for b in bodies] == ["m0", "m1", "m2"]
    assert [b["event_id"] for b in bodies] == [ids[0], ids[2], ids[3]]
    assert bodies[0]["attributes"] == {"i": 0} and bodies[0]["tenant_id"] == "acme"
    assert bodies[0]["timestamp"].endswith("Z")  # the shape of GET /v1/events/{id}
    seqs = [int(m.id.split("-")[1]) for m in got]
    assert all(m.id.startswith(epoch + "-") for m in got) and seqs == sorted(seqs) and len(set(seqs)) == 3
    assert all("\n" not in m.data for m in got)  # one data: line per event


def test_filters_are_those_of_v1_events(serve) -> None:
    live = serve(storage_backend="memory")
    now = int(time.time() * 1000)
    params = {"tenant_id": "acme", "event_type": "tool_call", "status": "error", "source": "gw",
              "start_time": str(now - 60_000)}
    with client(live.url) as c:
        assert c.get("/v1/events/stream", params={"nope": "1"}).status_code == 400
        assert c.get("/v1/events/stream", params={"limit": "5"}).json()["details"] == {"parameter": "limit"}
        with Stream(c, params) as stream:
            opened(stream)
            base = {"event_type": "tool_call", "tenant_id": "acme", "status": "error", "source": "gw"}
            post(live.url, [{**base, "method": "old", "timestamp": now - 3_600_000},
                            {**base, "status": "ok", "method": "ok"},
                            {**base, "event_type": "other", "method": "type"},
                            {**base, "source": "elsewhere", "method": "source"},
                            {**base, "method": "match-1"}, {**base, "method": "match-2"}])
            got = [m.json()["method"] for m in stream.events(2)]
    assert got == ["match-1", "match-2"]


def test_resume_with_last_event_id_has_no_gap_and_no_duplicate(serve) -> None:
    live = serve(storage_backend="memory")
    with client(live.url) as c:
        with Stream(c, {"tenant_id": "acme"}) as stream:
            opened(stream)
            post(live.url, [{"event_type": "e", "tenant_id": "acme", "method": f"a{i}"} for i in range(5)])
            first = stream.events(2)
            resume_from = first[-1].id
        post(live.url, [{"event_type": "e", "tenant_id": "acme", "method": f"b{i}"} for i in range(3)])
        post(live.url, [{"event_type": "e", "tenant_id": "other", "method": "x"}])
        with Stream(c, {"tenant_id": "acme"}, headers={"last-event-id": resume_from}) as again:
            assert again.next().id == resume_from  # it opens where the client left off
            resumed = again.events(6)
            post(live.url, [{"event_type": "e", "tenant_id": "acme", "method": "c0"}])
            resumed.append(again.next_event())
        # the same through the query parameter (for clients that cannot set headers)
        with Stream(c, {"tenant_id": "acme", "last_event_id": resumed[-2].id}) as third:
            again_last = third.next_event()
    assert [m.json()["method"] for m in first] == ["a0", "a1"]
    assert [m.json()["method"] for m in resumed] == ["a2", "a3", "a4", "b0", "b1", "b2", "c0"]
    assert again_last.json()["method"] == "c0"


def test_a_resume_that_cannot_be_exact_says_so(serve) -> None:
    live = serve(storage_backend="memory")
    with client(live.url) as c:
        bad = c.get("/v1/events/stream", headers={"last-event-id": "not-an-id"})
        assert bad.status_code == 400 and bad.json()["details"] == {"parameter": "last_event_id"}
        with Stream(c, {"tenant_id": "acme"}, headers={"last-event-id": "00000000-5"}) as stream:
            opened(stream)
            gap = stream.next_event()
            post(live.url, [{"event_type": "e", "tenant_id": "acme", "method": "after"}])
            after = stream.next_event()
    assert gap.event == "gap" and "another TEA process" in gap.json()["reason"]
    assert after.json()["method"] == "after"


def test_heartbeats_carry_the_position(serve) -> None:
    live = serve(storage_backend="memory", stream__heartbeat_s=0.2)
    with client(live.url) as c, Stream(c, {"tenant_id": "acme"}) as stream:
        start = opened(stream)
        post(live.url, [{"event_type": "e", "tenant_id": "other"}] * 3)  # not this stream's: skipped
        beats = [stream.next() for _ in range(3)]
    assert all("keep-alive" in m.comments and not m.data for m in beats)
    epoch, seq = start.split("-")
    assert beats[-1].id == f"{epoch}-{int(seq) + 3}"  # past what it scanned: a resume starts there


def test_tenant_scoping(serve) -> None:
    live = serve(storage_backend="memory", auth_validation=True, admin_token=ADMIN)
    tokens = {}
    with client(live.url, ADMIN) as admin:
        for tenant in ("acme", "beta"):
            r = admin.post("/v1/tokens", json={"tenant_id": tenant})
            assert r.status_code == 201, r.text
            tokens[tenant] = r.json()["token"]
    assert httpx.get(live.url + "/v1/events/stream").status_code == 401
    with client(live.url, tokens["acme"]) as acme:
        refused = acme.get("/v1/events/stream", params={"tenant_id": "beta"})
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden_tenant"
        with Stream(acme) as mine, client(live.url, ADMIN) as admin, Stream(admin) as every, \
                Stream(admin, {"tenant_id": "beta"}) as betas:
            for s in (mine, every, betas):
                opened(s)
            post(live.url, [{"event_type": "e", "method": "b1"}], tokens["beta"])
            post(live.url, [{"event_type": "e", "method": "a1"}], tokens["acme"])
            post(live.url, [{"event_type": "e", "method": "b2"}], tokens["beta"])
            assert [m.json()["method"] for m in mine.events(1)] == ["a1"]
            assert [m.json()["method"] for m in betas.events(2)] == ["b1", "b2"]
            assert [(m.json()["tenant_id"], m.json()["method"]) for m in every.events(3)] == [
                ("beta", "b1"), ("acme", "a1"), ("beta", "b2")]


def test_streams_per_tenant_are_capped(serve) -> None:
    live = serve(storage_backend="memory", stream__max_per_tenant=2)
    with client(live.url) as c:
        first, second = Stream(c, {"tenant_id": "acme"}), Stream(c, {"tenant_id": "acme"})
        opened(first), opened(second)
        third = c.get("/v1/events/stream", params={"tenant_id": "acme"})
        assert third.status_code == 429 and third.json()["error"] == "too_many_streams"
        assert third.headers["retry-after"] == "5"
        with Stream(c, {"tenant_id": "beta"}) as other:  # another tenant has its own allowance
            opened(other)
        first.close()
        deadline = time.monotonic() + 10  # the server notices the disconnect, then frees the slot
        while True:
            with Stream(c, {"tenant_id": "acme"}) as again:
                if again.response.status_code == 200:
                    break
            assert time.monotonic() < deadline, "the closed stream's slot was never freed"
            time.sleep(0.05)
        second.close()


def _read_chunked(sock: socket.socket, timeout_s: float) -> bytes:
    """Read one chunked HTTP response to its end; returns the body."""
    sock.settimeout(timeout_s)
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += sock.recv(65536)
    head, rest = raw.split(b"\r\n\r\n", 1)
    assert b" 200 " in head.split(b"\r\n")[0] and b"transfer-encoding: chunked" in head.lower()
    body = b""
    while True:
        while b"\r\n" not in rest:
            rest += sock.recv(65536)
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        while len(rest) < size + 2:
            chunk = sock.recv(65536)
            assert chunk, "connection closed inside a chunk"
            rest += chunk
        if size == 0:
            return body
        body += rest[:size]
        rest = rest[size + 2:]


def test_a_slow_client_is_dropped_with_a_final_event_and_ingestion_goes_on(serve) -> None:
    live = serve(storage_backend="memory", stream__window_bytes=64 * 1024)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that takes little and reads nothing
    sock.connect(("127.0.0.1", live.port))
    sock.sendall(b"GET /v1/events/stream?tenant_id=acme HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    try:
        deadline = time.monotonic() + 10
        while live.app.live.open_streams < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        batch = [{"event_type": "e", "tenant_id": "acme", "attributes": {"pad": "x" * 900}}] * 200
        with client(live.url) as c:
            accepted = 0
            for _ in range(40):  # ~7 MB: past the window and every buffer between the stream and the client
                r = c.post("/v1/events", json=batch)
                assert r.status_code == 200, r.text
                accepted += r.json()["accepted"]
        assert accepted == 8000
        body = _read_chunked(sock, 20)
    finally:
        sock.close()
    got = list(messages(iter(body.decode().split("\n"))))
    assert got[-1].event == "dropped"
    assert json.loads(got[-1].data)["reason"] == "slow_client"
    delivered = [m for m in got if m.event == "message" and m.data]
    assert 0 < len(delivered) < 8000
    assert live.app.live.dropped == {"slow_client": 1}


def test_a_stopping_server_ends_its_streams(serve) -> None:
    live = serve(storage_backend="memory")
    with client(live.url) as c, Stream(c, {"tenant_id": "acme"}) as stream:
        opened(stream)
        started = time.monotonic()
        live.stop()  # would wait for the stream (forever, or tea serve's graceful timeout) otherwise
        assert stream.rest() == []  # the response ended cleanly, with nothing after it
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("backend", ["duckdb"])
def test_the_live_tail_needs_no_storage_write(serve, backend: str) -> None:
    """Events reach a stream at acknowledgement: before the writer's next flush stores them."""
    live = serve(storage_backend=backend, writer__flush_interval_ms=60_000.0, writer__batch_events=1_000_000)
    with client(live.url) as c, Stream(c, {"tenant_id": "acme"}) as stream:
        opened(stream)
        post(live.url, [{"event_type": "e", "tenant_id": "acme", "method": "fast"}])
        assert stream.next_event().json()["method"] == "fast"
        assert live.app.writer.stats.events_written == 0  # not stored yet: the writer waits for its interval


def test_a_stream_that_too_many_events_match_is_dropped_and_says_why(serve) -> None:
    live = serve(storage_backend="memory", stream__max_events_per_s=100, stream__window_bytes=64 * 1024)
    with client(live.url, read_s=20) as c, Stream(c, {"tenant_id": "acme"}) as stream:
        opened(stream)
        batch = [{"event_type": "e", "tenant_id": "acme", "attributes": {"pad": "y" * 200}}] * 500
        for _ in range(6):  # 3000 events at once: 30 s at 100 events/s, far past the 64 KiB window
            post(live.url, batch)
        got = stream.rest()
    assert got[-1].event == "dropped" and got[-1].json()["reason"] == "too_many_events"
    assert "stream.max_events_per_s" in got[-1].json()["message"]
    delivered = [m for m in got if m.event == "message" and m.data]
    assert 100 <= len(delivered) < 3000
    assert live.app.live.dropped == {"too_many_events": 1}
