"""Request body reading: limits, gzip, chunks — against a real ASGI receive channel."""
from __future__ import annotations

import asyncio
import gzip
import zlib

import pytest

from tea.errors import BadRequest, TooLarge, UnsupportedMediaType
from tea.http.request import ClientDisconnected, Request


def request(chunks: list[bytes], headers: dict[str, str] | None = None, disconnect: bool = False) -> Request:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    if disconnect:
        messages = messages[:1] + [{"type": "http.disconnect"}]
        messages[0]["more_body"] = True

    async def receive():
        return messages.pop(0)
    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()]}
    return Request(scope, receive)


def body(req: Request, limit: int = 1000) -> bytes:
    return asyncio.run(req.body(limit))


def test_chunks_are_joined() -> None:
    assert body(request([b"ab", b"cd", b"", b"e"])) == b"abcde"


def test_content_length_over_limit_is_refused_before_reading() -> None:
    with pytest.raises(TooLarge):
        body(request([b""], {"content-length": "5000"}))


def test_streamed_over_limit() -> None:
    with pytest.raises(TooLarge):
        body(request([b"x" * 600, b"x" * 600]))


@pytest.mark.parametrize("encoding, compress", [
    ("gzip", gzip.compress), ("x-gzip", gzip.compress), ("deflate", zlib.compress)])
def test_decompression(encoding: str, compress) -> None:
    data = compress(b"hello " * 50)
    assert body(request([data[:10], data[10:]], {"content-encoding": encoding})) == b"hello " * 50


def test_concatenated_gzip_members() -> None:
    data = gzip.compress(b"one ") + gzip.compress(b"two")
    assert body(request([data], {"content-encoding": "gzip"})) == b"one two"


def test_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)
    with pytest.raises(TooLarge):
        body(request([bomb], {"content-encoding": "gzip"}), limit=1_000_000)


def test_corrupt_and_truncated_gzip() -> None:
    with pytest.raises(BadRequest, match="not valid gzip"):
        body(request([b"not gzip at all"], {"content-encoding": "gzip"}))
    with pytest.raises(BadRequest, match="truncated"):
        body(request([gzip.compress(b"x" * 100)[:-8]], {"content-encoding": "gzip"}))


def test_unknown_encoding_and_bad_length() -> None:
    with pytest.raises(UnsupportedMediaType):
        body(request([b"x"], {"content-encoding": "br"}))
    with pytest.raises(BadRequest):
        body(request([b"x"], {"content-length": "ten"}))


def test_disconnect() -> None:
    with pytest.raises(ClientDisconnected):
        body(request([b"x", b"y"], disconnect=True))
