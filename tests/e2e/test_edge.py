"""The HTTP edge of a real `tea serve`, over loopback sockets: header size limit (431), header and body
deadlines (408), the connection bound (503, or the oldest idle connection closed), and a slowloris of
2 000 connections while other clients keep being served — on TEA's port and the OTLP/HTTP port."""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import resource
import socket
import time
from typing import Any, Callable

import httpx
import pytest

from tests.conftest import free_port, wait_for
from tests.e2e.edge_clients import exchange, open_fds, raise_nofile, slowloris, status_of
from tests.e2e.test_export_memory import rss_mb

pytestmark = [pytest.mark.e2e]

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
FAST = {"TEA_HTTP__HEADER_TIMEOUT_S": "1", "TEA_HTTP__BODY_TIMEOUT_S": "1", "TEA_STORAGE_BACKEND": "memory"}


def serve(tea_process: Callable[..., Any], preexec_fn: Callable[[], None] | None = None, **env: str) -> Any:
    """`tea serve` with its OTLP/HTTP port on; ``server.ports`` maps main/otlp to the port numbers."""
    otlp_port = free_port()
    server = tea_process(preexec_fn=preexec_fn, TEA_OTLP__HTTP_PORT=str(otlp_port), **{**FAST, **env}).start()
    server.ports = {"main": server.port, "otlp": otlp_port}
    return server


def metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def body_of(response: bytes) -> dict[str, Any]:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


@pytest.mark.parametrize("port", ["main", "otlp"])
def test_an_oversize_header_is_431_and_never_buffered(tea_process, port: str) -> None:
    server = serve(tea_process)
    target = server.ports[port]
    under = exchange(target, HEALTHZ + b"X-Fill: " + b"a" * 60_000 + b"\r\nConnection: close\r\n\r\n")
    assert status_of(under) == 200, under[:200]  # 60 KB fits the default 64 KiB
    before = rss_mb(server.proc.pid)
    with concurrent.futures.ThreadPoolExecutor(20) as pool:  # 20 × 10 MB header sections at once
        answers = list(pool.map(lambda _: exchange(target, HEALTHZ + b"X-Big: " + b"a" * 10 * 1024 * 1024),
                                range(20)))
    grown = rss_mb(server.proc.pid) - before
    assert [status_of(a) for a in answers] == [431] * 20, [a[:100] for a in answers]
    assert body_of(answers[0])["error"] == "header_too_large"
    assert grown < 16, f"RSS grew {grown:.1f} MiB for 200 MB of refused headers"
    many = exchange(target, HEALTHZ + b"".join(b"X-H%d: v\r\n" % i for i in range(20_000)) + b"\r\n")
    assert status_of(many) == 431  # many small headers count together
    assert status_of(exchange(target, HEALTHZ + b"Connection: close\r\n\r\n")) == 200
    assert metric(server.url, 'tea_http_connections_closed_total{reason="header_too_large"}') == 21


def test_bodies_and_pipelined_requests_are_not_header_bytes(tea_process) -> None:
    server = serve(tea_process, TEA_HTTP__MAX_HEADER_BYTES="4096")
    events = json.dumps([{"event_type": "big", "attributes": {"pad": "x" * 1000}} for _ in range(150)]).encode()
    post = (b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Fill: %s\r\n"
            b"Content-Length: %d\r\n\r\n" % (b"f" * 3000, len(events)))
    pipelined = post + events + (HEALTHZ + b"X-Fill: " + b"f" * 3000 + b"\r\n\r\n") * 3
    answer = exchange(server.port, pipelined + HEALTHZ + b"Connection: close\r\n\r\n")  # ~160 KB in one send
    assert answer.count(b"HTTP/1.1 200 OK") == 5, answer[:300]
    assert b'"accepted":150' in answer
    too_big = exchange(server.port, post.replace(b"f" * 3000, b"f" * 4000) + events)
    assert status_of(too_big) == 431


@pytest.mark.parametrize("port", ["main", "otlp"])
def test_slow_headers_and_silent_connections_are_cut_off(tea_process, port: str) -> None:
    server = serve(tea_process)
    target = server.ports[port]
    slow = exchange(target, HEALTHZ)  # the header section never ends (not cut off: the read times out)
    assert status_of(slow) == 408 and body_of(slow)["error"] == "request_timeout", slow[:200]
    assert exchange(target, b"") == b""  # sent nothing: closed without an answer
    assert status_of(exchange(target, HEALTHZ + b"Connection: close\r\n\r\n")) == 200


@pytest.mark.parametrize("port", ["main", "otlp"])
def test_a_body_that_stops_arriving_is_408(tea_process, port: str) -> None:
    server = serve(tea_process, TEA_HTTP__BODY_TOTAL_TIMEOUT_S="2")
    target = server.ports[port]
    head = (b"POST /v1/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            % (b"events" if port == "main" else b"traces"))
    stalled = exchange(target, head + b'[{"event_type"')
    assert status_of(stalled) == 408, stalled[:200]
    assert "http.body_timeout_s" in body_of(stalled)["message"]
    with socket.create_connection(("127.0.0.1", target), timeout=15) as sock:  # a byte every 0.4 s: never a
        sock.sendall(head)                                                    # 1 s pause, but past 2 s in all
        answer, deadline = b"", time.monotonic() + 10
        while not answer and time.monotonic() < deadline:
            sock.sendall(b" ")
            sock.settimeout(0.4)
            try:
                answer = sock.recv(65536)
            except socket.timeout:
                continue
    assert status_of(answer) == 408, answer[:200]
    assert metric(server.url, 'tea_http_connections_closed_total{reason="body_timeout"}') == 2
    ok = httpx.post(f"http://127.0.0.1:{server.port}/v1/events", json=[{"event_type": "after"}], timeout=10)
    assert ok.status_code == 200, ok.text


def test_past_the_connection_bound_idle_connections_give_way_then_503(tea_process) -> None:
    server = serve(tea_process, TEA_HTTP__MAX_CONNECTIONS="8", TEA_HTTP__HEADER_TIMEOUT_S="60",
                   TEA_HTTP__BODY_TIMEOUT_S="60")
    open_now = lambda: metric(server.url, "tea_http_connections ")  # noqa: E731
    wait_for(open_now, lambda n: n <= 1)
    idle = [socket.create_connection(("127.0.0.1", server.ports["main" if i % 2 else "otlp"])) for i in range(8)]
    wait_for(open_now, lambda n: n >= 8)
    assert status_of(exchange(server.port, HEALTHZ + b"Connection: close\r\n\r\n")) == 200
    idle[0].settimeout(10)
    assert idle[0].recv(100) == b""  # the oldest idle connection was closed for the newcomer
    for sock in idle:
        sock.close()
    wait_for(open_now, lambda n: n <= 1)
    head = b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n["
    busy = [socket.create_connection(("127.0.0.1", server.ports["main" if i % 2 else "otlp"])) for i in range(8)]
    for sock in busy:  # each in the middle of a request: none may give way
        sock.sendall(head)
    wait_for(open_now, lambda n: n >= 8)
    refused = exchange(server.port, HEALTHZ + b"\r\n")
    assert status_of(refused) == 503, refused[:200]
    assert b"retry-after: 1\r\n" in refused.lower() and body_of(refused)["error"] == "too_many_connections"
    assert status_of(exchange(server.ports["otlp"], HEALTHZ + b"\r\n")) == 503  # one bound for both ports
    assert server.log().count("each busy with a request: new connections are answered 503") == 1  # once a minute
    for sock in busy:
        sock.close()
    wait_for(open_now, lambda n: n <= 1)
    assert status_of(exchange(server.port, HEALTHZ + b"Connection: close\r\n\r\n")) == 200


def limit_open_files_to_1024() -> None:  # runs in the server's process before it starts
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


@pytest.mark.slow
@pytest.mark.parametrize("preexec_fn", [None, limit_open_files_to_1024], ids=["default-limit", "nofile-1024"])
def test_a_slowloris_of_2000_connections_does_not_stop_other_clients(tea_process, preexec_fn) -> None:
    raise_nofile(4096)
    server = serve(tea_process, preexec_fn=preexec_fn, TEA_STORAGE_BACKEND="duckdb")
    limit = resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE)[0]
    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager, concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        stop = manager.Event()
        attack = pool.submit(slowloris, server.port, 2000, stop)
        time.sleep(3)  # the attack's connections are open
        try:
            served, failures, acked, most_fds = _legit_clients(server, requests=40)
            assert not attack.done(), attack.result()  # (still attacking while the others were served)
        finally:
            stop.set()
        stats = attack.result(timeout=60)
    assert failures == [], failures[:5]
    assert served == {"healthz": 20, "events": 20}, served
    assert most_fds < limit, (most_fds, limit)
    cut = stats.get("answered_408", 0) + stats.get("closed", 0) + stats.get("answered_503", 0)
    assert stats["connected"] >= 2000 and cut >= 1000, stats  # the edge cut the attack's connections off
    assert "Too many open files" not in server.log_path.read_text(errors="replace")
    health = wait_for(lambda: httpx.get(server.url + "/health", timeout=10).json(),
                      lambda h: h["events_stored"] >= acked and h["buffer_bytes"] == 0, timeout_s=30)
    assert health["events_stored"] == acked, health


def _legit_clients(server: Any, requests: int) -> tuple[dict[str, int], list[str], int, int]:
    """Other clients meanwhile, each request on a connection of its own: ``/healthz`` and single-event
    POSTs alternately; (served counts, failures, events acknowledged, most server descriptors seen)."""
    served = {"healthz": 0, "events": 0}
    failures: list[str] = []
    acked, most_fds = 0, 0
    for i in range(requests):
        most_fds = max(most_fds, open_fds(server.proc.pid))
        kind = "healthz" if i % 2 else "events"
        try:
            if kind == "healthz":
                r = httpx.get(server.url + "/healthz", timeout=10)
                ok = r.status_code == 200
            else:
                r = httpx.post(server.url + "/v1/events", json=[{"event_type": "legit", "event_id": f"e{i}"}],
                               timeout=10)
                ok = r.status_code == 200 and r.json()["accepted"] == 1
                acked += ok
        except httpx.TransportError as exc:
            failures.append(f"{kind}: {exc!r}")
            continue
        served[kind] += ok
        if not ok:
            failures.append(f"{kind}: {r.status_code} {r.text[:100]}")
    return served, failures, acked, most_fds
