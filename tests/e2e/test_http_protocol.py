"""The HTTP protocol `tea serve` runs (tea.http.protocol): a response's head and body leave in one
write, and nothing about HTTP/1.1 changes — HEAD, 204, 100-continue, pipelining, streaming."""
from __future__ import annotations

import asyncio
import socket

import pytest

from tea.http.protocol import HeldHeadTransport


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default=None):  # type: ignore[no-untyped-def]
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


def test_head_and_body_leave_in_one_write() -> None:
    real = Recording()
    held = HeldHeadTransport(real)
    held.write(HEAD)
    assert real.writes == []
    held.write(b"{}")
    held.write(b"more")  # anything after the body passes straight through
    assert real.writes == [HEAD + b"{}", b"more"]


def test_held_head_flushed_without_a_body_and_before_close() -> None:
    real = Recording()
    held = HeldHeadTransport(real)
    held.write(HEAD)
    held.flush()  # a HEAD answer: the protocol flushes when the response completes
    assert real.writes == [HEAD]
    held.write(HEAD)
    held.close()
    assert real.writes == [HEAD, HEAD] and real.closed


def test_interim_continue_and_plain_data_are_not_held() -> None:
    real = Recording()
    held = HeldHeadTransport(real)
    held.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    held.write(b"partial body chunk")
    assert real.writes == [b"HTTP/1.1 100 Continue\r\n\r\n", b"partial body chunk"]
    assert held.get_extra_info("peername") == ("127.0.0.1", 1)  # everything else is the real transport's


def _exchange(port: int, payload: bytes, until: bytes, count: int = 1, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        while data.count(until) < count:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


@pytest.mark.e2e
def test_http_semantics_over_a_real_server(tea_process) -> None:
    server = tea_process().start()
    port = int(server.url.rsplit(":", 1)[1])
    head = _exchange(port, b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
    # two pipelined requests on one connection, both answered, in order
    two = _exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"HTTP/1.1 ", count=2)
    assert two.index(b"HTTP/1.1 200") < two.index(b"HTTP/1.1 404")
    # Expect: 100-continue: the interim answer arrives before the body is sent
    body = b'{"event_type":"proto"}'
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        answer = b""
        while b'"accepted"' not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
    # 204 (DNT: 1): a head with no body still goes out
    dnt = _exchange(port, b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nDNT: 1\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body, b"\r\n\r\n")
    assert dnt.startswith(b"HTTP/1.1 204")
