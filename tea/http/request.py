"""The request as handlers see it: headers, query parameters, and a body read within bounds."""
from __future__ import annotations

import zlib
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

from tea.errors import BadRequest, TooLarge, UnsupportedMediaType

Receive = Callable[[], Awaitable[dict[str, Any]]]


class ClientDisconnected(Exception):
    """The client went away before its body was read."""


class Request:
    __slots__ = ("scope", "receive", "method", "path", "path_params", "headers", "_query", "_body", "state")

    def __init__(self, scope: dict[str, Any], receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.path_params: dict[str, str] = {}
        # the headers, names lower-cased (built here, not behind a property: every request reads them a few times)
        raw = scope["headers"]
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}
        self.headers: dict[str, str] = headers if len(headers) == len(raw) else _joined(raw)
        self._query: dict[str, list[str]] | None = None
        self._body: bytes | None = None
        self.state: dict[str, Any] = {}

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            raw = self.scope.get("query_string", b"").decode("latin-1")
            self._query = parse_qs(raw, keep_blank_values=True) if raw else {}
        return self._query

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    @property
    def client(self) -> str | None:
        client = self.scope.get("client")
        return client[0] if client else None

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lower-cased; '' when absent."""
        value = self.headers.get("content-type", "")
        if value == "application/json":  # (the usual header: already what the rest would make of it)
            return value
        return value.split(";", 1)[0].strip().lower()

    async def body(self, max_bytes: int) -> bytes:
        """The whole body, decompressed. 413 past ``max_bytes`` (raw or decompressed), 415 for an
        unknown Content-Encoding, 400 for a corrupt or truncated gzip stream. Chunked bodies work.
        Read once: a second call (a signed request's body was read to verify it) answers the same bytes."""
        if self._body is not None:
            if len(self._body) > max_bytes:
                raise _too_large(max_bytes)
            return self._body
        headers = self.headers
        encoding = headers.get("content-encoding")
        if encoding is not None:
            encoding = encoding.strip().lower()
            if encoding not in ("identity", "", "gzip", "x-gzip", "deflate"):
                raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding!r}; use gzip, deflate or identity",
                                           code="unsupported_content_encoding")
        length = headers.get("content-length")
        if length is not None:
            if not (length.isdigit() or length.strip().isdigit()):  # (the usual header: one call)
                raise BadRequest("invalid Content-Length header", code="invalid_header")
            if int(length) > max_bytes:
                raise _too_large(max_bytes)
        compressed = encoding is not None and encoding in ("gzip", "x-gzip", "deflate")
        inflater = _Inflater(encoding, max_bytes) if compressed else None
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            data = message.get("body", b"")
            more = message.get("more_body", False)
            received += len(data)
            if received > max_bytes:
                raise _too_large(max_bytes)
            if data:
                chunks.append(inflater.feed(data) if inflater else data)
        if inflater:
            chunks.append(inflater.finish())
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._body = body
        check = self.state.pop("verify_body", None)
        if check is not None:  # e.g. a request signature over the exact bytes received
            await check(body)
        return body


def _joined(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Headers whose names repeat: each name's values joined with ", ", in order."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = headers[key] + ", " + text if key in headers else text
    return headers


def _too_large(max_bytes: int) -> TooLarge:
    return TooLarge(f"request body exceeds max_body_bytes ({max_bytes} bytes)",
                    details={"max_body_bytes": max_bytes})


class _Inflater:
    """Streaming gzip/deflate decompression that stops at ``max_bytes`` of output (gzip bombs)."""

    def __init__(self, encoding: str, max_bytes: int) -> None:
        self.wbits = 16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self.max_bytes = max_bytes
        self.produced = 0
        self.d = zlib.decompressobj(self.wbits)
        self.encoding = encoding

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        while data:
            try:
                chunk = self.d.decompress(data, self.max_bytes - self.produced + 1)
            except zlib.error as exc:
                raise BadRequest(f"body is not valid {self.encoding}: {exc}", code="invalid_encoding") from None
            self.produced += len(chunk)
            if self.produced > self.max_bytes:
                raise _too_large(self.max_bytes)
            out.append(chunk)
            if self.d.unconsumed_tail:
                data = self.d.unconsumed_tail
            elif self.d.eof and self.d.unused_data:  # another gzip member follows
                data = self.d.unused_data
                self.d = zlib.decompressobj(self.wbits)
            else:
                data = b""
        return b"".join(out)

    def finish(self) -> bytes:
        if not self.d.eof:
            raise BadRequest(f"{self.encoding} body is truncated", code="invalid_encoding")
        return b""
