"""telemetry-kit request signing (CONTRACTS.md 1.2.3–1.2.4).

``X-Signature`` = lowercase hex HMAC-SHA256 of ``"{X-Timestamp}:{X-Nonce}:{raw body}"`` keyed with
the secret's UTF-8 bytes, compared in constant time. Checked in upstream's order: headers (401),
UTF-8 body (400), signature (401), timestamp format (400), window ±``window_s`` (403), nonce replay
(409, an atomic set-if-absent in the shared state).
"""
from __future__ import annotations

import hashlib
import hmac
import time
from typing import Awaitable, Callable

from tea.auth.keys import same
from tea.errors import BadRequest, Conflict, Forbidden, Unauthorized

HEADERS = ("x-signature", "x-timestamp", "x-nonce")


def sign(secret: str, timestamp: str, nonce: str | None, body: bytes) -> str:
    message = f"{timestamp}:{nonce}:".encode() + body if nonce is not None else f"{timestamp}:".encode() + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signed(headers: dict[str, str]) -> bool:
    return any(name in headers for name in HEADERS)


def check_headers(headers: dict[str, str], allow_two_part: bool) -> None:
    for name in HEADERS:
        if name not in headers and not (name == "x-nonce" and allow_two_part):
            canonical = "-".join(part.capitalize() for part in name.split("-"))
            raise Unauthorized(f"Missing {canonical} header", code="missing_signature")


def verifier(headers: dict[str, str], secret: str, window_s: float,
             claim_nonce: Callable[[str], Awaitable[bool]], clock: Callable[[], float] = time.time,
             ) -> Callable[[bytes], Awaitable[None]]:
    """The check to run on the raw body once it is read."""
    signature, timestamp, nonce = headers["x-signature"], headers["x-timestamp"], headers.get("x-nonce")

    async def verify(body: bytes) -> None:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("body is not valid UTF-8", code="invalid_utf8") from None
        if not same(sign(secret, timestamp, nonce, body), signature):
            raise Unauthorized("Invalid HMAC signature", code="invalid_signature")
        try:
            stamp = int(timestamp)
        except ValueError:
            raise BadRequest("X-Timestamp must be Unix seconds", code="invalid_timestamp") from None
        if abs(clock() - stamp) > window_s:
            raise Forbidden("Timestamp outside acceptable window", code="timestamp_out_of_window")
        if nonce is not None and not await claim_nonce(nonce):
            raise Conflict("Duplicate nonce detected", code="duplicate_nonce")
    return verify
