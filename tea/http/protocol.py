"""uvicorn's httptools protocol with one send per small response instead of two.

uvicorn writes a response's head as soon as the app sends ``http.response.start`` and the body
when ``http.response.body`` follows — two ``send`` syscalls for every answer, which is a good part
of the cost of a small request (bench/README.md, "single-event requests"). Here the head waits for
the first body write and both go out in one ``write``; whatever is held is flushed when the
response completes (a HEAD answer writes no body) and before the transport closes. Interim
``100 Continue`` heads are never held.
"""
from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEAD = b"HTTP/1.1 "
_CONTINUE = b"HTTP/1.1 100 "
_END = b"\r\n\r\n"


class HeldHeadTransport:
    """Delegates to the real transport; holds a response head until the next write."""

    __slots__ = ("_transport", "_head")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif data[:9] == _HEAD and data[-4:] == _END and data[:13] != _CONTINUE:
            self._head = bytes(data)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class TeaHttpProtocol(HttpToolsProtocol):
    """``uvicorn.Config(http=TeaHttpProtocol)``: the httptools protocol on a HeldHeadTransport."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(HeldHeadTransport(transport))  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()
