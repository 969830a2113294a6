"""Responses: a status, a body and headers; JSON through msgspec."""
from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable

import msgspec

Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON = b"application/json"
_encoder = msgspec.json.Encoder()


class Response:
    __slots__ = ("status", "body", "headers", "media_type", "stream")

    def __init__(self, body: bytes = b"", status: int = 200, media_type: bytes | None = JSON,
                 headers: dict[str, str] | None = None,
                 stream: AsyncIterator[bytes] | None = None) -> None:
        self.status = status
        self.body = body
        self.media_type = media_type
        self.headers = headers
        self.stream = stream

    async def send(self, send: Send, head_only: bool = False) -> None:
        raw_headers: list[tuple[bytes, bytes]] = []
        if self.media_type is not None:
            raw_headers.append((b"content-type", self.media_type))
        if self.stream is None:
            raw_headers.append((b"content-length", b"%d" % len(self.body)))
        if self.headers:
            raw_headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items())
        await send({"type": "http.response.start", "status": self.status, "headers": raw_headers})
        if self.stream is None or head_only:
            await send({"type": "http.response.body", "body": b"" if head_only else self.body})
            return
        async for chunk in self.stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


# the encoder's own method (no Python call around it: every JSON response encodes once)
encode_json: Callable[[Any], bytes] = _encoder.encode


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(obj), status, JSON, headers)


def text_response(text: str, status: int = 200, headers: dict[str, str] | None = None,
                  media_type: bytes = b"text/plain; charset=utf-8") -> Response:
    return Response(text.encode(), status, media_type, headers)


def empty_response(status: int = 204, headers: dict[str, str] | None = None) -> Response:
    return Response(b"", status, None, headers)
