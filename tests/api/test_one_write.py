"""A response of known length leaves TEA's HTTP edge in one write of the socket's transport (head and body
together: one send, one TCP segment), a streamed one's head at once; HEAD answers, ``100 Continue`` and a
closing connection still get every byte. The transport's writes are recorded on a real loopback server."""
from __future__ import annotations

import socket
import time
from typing import Any, Iterator

import pytest
from asyncio.selector_events import _SelectorSocketTransport

pytestmark = [pytest.mark.socket]

TOKEN = "admin-" + "x" * 40


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every ``write`` of the socket transports of the server's event loop (asyncio's), in order; each still
    reaches the socket."""
    recorded: list[bytes] = []
    real_write = _SelectorSocketTransport.write

    def write(self: Any, data: Any) -> None:
        recorded.append(bytes(data))
        real_write(self, data)

    monkeypatch.setattr(_SelectorSocketTransport, "write", write)
    return recorded


def exchange(port: int, request: bytes, expect: int = 1) -> bytes:
    """Send ``request`` on a new connection; read until ``expect`` whole responses (by Content-Length) arrived."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        deadline = time.monotonic() + 10
        while _complete(data) < expect and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def _complete(data: bytes) -> int:
    done = 0
    for response in _responses(data):
        done += 1 if response is not None else 0
    return done


def _responses(data: bytes) -> Iterator[bytes | None]:
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            yield None
            return
        if head.startswith(b"HTTP/1.1 1"):
            data = rest
            continue
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        if b" HEAD " in head or len(rest) < length:
            yield head + sep + rest[:length] if len(rest) >= length else None
            return
        yield head + sep + rest[:length]
        data = rest[length:]


def post(body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST /v1/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + TOKEN.encode() +
            b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body)


def heads(recorded: list[bytes]) -> list[bytes]:
    return [w for w in recorded if w.startswith(b"HTTP/1.1 ")]


def test_a_response_of_known_length_is_one_write(serve: Any, writes: list[bytes]) -> None:
    server = serve(storage_backend="memory", admin_token=TOKEN)
    writes.clear()
    body = b'{"event_type":"one_write"}'
    answer = exchange(server.port, post(body) * 3, expect=3)  # (pipelined: three answers in turn)
    assert answer.count(b"HTTP/1.1 200 ") == 3, answer
    answers = [w for w in writes if w.startswith(b"HTTP/1.1 200 ")]
    assert len(answers) == 3 and len(writes) == 3, writes
    for written in answers:  # each write is a whole response: its head and all of its body
        head, _, rest = written.partition(b"\r\n\r\n")
        assert b'"accepted":1' in rest and rest.endswith(b"}"), written
    writes.clear()
    refused = exchange(server.port, post(b"[]"))  # an error answer too
    assert refused.startswith(b"HTTP/1.1 400 ") and len(writes) == 1 and writes[0] == refused, writes


def test_head_continue_close_and_streams_get_every_byte(serve: Any, writes: list[bytes]) -> None:
    server = serve(storage_backend="memory", admin_token=TOKEN)
    writes.clear()
    head = exchange(server.port, b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n") and len(writes) == 1, (head, writes)

    writes.clear()  # Expect: 100-continue — the interim answer goes first, then the response in one write
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        body = b'{"event_type":"continued"}'
        sock.sendall(post(body, b"Expect: 100-continue\r\n")[:-len(body)])
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        sock.sendall(body)
        data = b""
        while _complete(data) < 1:
            data += sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 200 ") and len(heads(writes)) == 2 and writes[-1] == data, writes

    writes.clear()  # Connection: close — the answer, then the close
    closing = exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert closing.startswith(b"HTTP/1.1 200 ") and b"connection: close" in closing.lower(), closing

    writes.clear()  # a stream (chunked): its head leaves before any event does
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /v1/events/stream HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + TOKEN.encode() +
                     b"\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ") and b"transfer-encoding: chunked" in first.lower(), first
    assert writes[0].startswith(b"HTTP/1.1 200 ") and writes[0].endswith(b"\r\n\r\n"), writes[:2]
