"""One HTTP connection to TEA: gzip bodies, bearer token or JWT, telemetry-kit's HMAC signature, replies classified.

Signing (TEA's scheme, telemetry-kit's): ``X-Signature`` = lowercase hex HMAC-SHA256 keyed with the
secret's UTF-8 bytes over ``"{X-Timestamp}:{X-Nonce}:{body}"``, the body before compression (TEA
checks the signature over the decompressed body). Every attempt is signed afresh: a new nonce and
timestamp, so a retry is never refused as a replay.
"""
from __future__ import annotations

import email.utils
import hashlib
import hmac
import http.client
import ipaddress
import ssl
import time
import uuid
import zlib
from typing import Dict, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

import msgspec

from tea_client._version import __version__

USER_AGENT = "tea-client-python/" + __version__
RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
NETWORK_ERRORS: Tuple[type, ...] = (OSError, http.client.HTTPException)
# what a kept-alive connection the server closed while it was idle raises on its next use
STALE_ERRORS: Tuple[type, ...] = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                                  ConnectionAbortedError)
_outcome = msgspec.json.Decoder()


class Reply(NamedTuple):
    status: int
    accepted: int
    rejected: int
    retry_after_s: Optional[float]
    message: str

    @property
    def retryable(self) -> bool:
        return self.status in RETRY_STATUSES


def normalise_endpoint(endpoint: str) -> str:
    """``http://host:3001`` from what users write: a trailing slash or a pasted ``/v1/events`` are dropped."""
    endpoint = endpoint.strip().rstrip("/")
    for suffix in ("/v1/events", "/v1/communications", "/v1"):
        if endpoint.endswith(suffix):
            endpoint = endpoint[: -len(suffix)]
            break
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("TEA endpoint must be an http:// or https:// URL, got %r" % endpoint)
    return endpoint


def default_gzip_level(endpoint: str) -> int:
    """1 (zlib's fastest) for a TEA across a network; 0 for one on this machine's loopback, where gzip
    would only cost both sides CPU (about a third of the client's work per event) to save no bandwidth."""
    host = (urlsplit(endpoint).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return 0
    try:
        return 0 if ipaddress.ip_address(host).is_loopback else 1
    except ValueError:
        return 1


def gzip_bytes(body: bytes, level: int) -> bytes:
    """One gzip member (wbits=31); ``zlib.compress`` takes wbits only from Python 3.11."""
    packer = zlib.compressobj(level, zlib.DEFLATED, 31)
    return packer.compress(body) + packer.flush()


def sign(secret: str, body: bytes, timestamp: str, nonce: str) -> str:
    message = ("%s:%s:" % (timestamp, nonce)).encode() + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def parse_retry_after(value: Optional[str], now: float) -> Optional[float]:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


class Transport:
    """Not thread-safe: the sender thread owns it."""

    def __init__(self, endpoint: str, token: Optional[str] = None, secret: Optional[str] = None,
                 timeout_s: float = 10.0, gzip_level: int = 1, headers: Optional[Dict[str, str]] = None,
                 ssl_context: Optional[ssl.SSLContext] = None) -> None:
        parts = urlsplit(normalise_endpoint(endpoint))
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._token, self._secret = token, secret
        self._timeout_s = timeout_s
        self._gzip_level = gzip_level
        self._headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json", **(headers or {})}
        if token:
            self._headers["Authorization"] = "Bearer " + token
        self._ssl = ssl_context
        self._conn: Optional[http.client.HTTPConnection] = None
        self._answered = False  # the open connection has carried an answer (it may since have gone stale)
        self._request: Optional[Tuple[str, bytes, Optional[bytes]]] = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout_s,
                                                         context=self._ssl or ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        return self._conn

    def post(self, path: str, body: bytes, count: int, packed: Optional[bytes] = None) -> Reply:
        """POST one JSON body (``packed``: the same already gzip-compressed, from the spool); raises one of
        ``NETWORK_ERRORS`` when no HTTP answer came back."""
        self.start(path, body, packed)
        return self.finish(count)

    def start(self, path: str, body: bytes, packed: Optional[bytes] = None) -> None:
        """Send the request without waiting for the answer: the caller can prepare the next batch while TEA
        works on this one, then call ``finish()``."""
        self._request = (path, body, packed)
        self._send(path, body, packed, retry_stale=True)

    def _send(self, path: str, body: bytes, packed: Optional[bytes], retry_stale: bool) -> None:
        headers = dict(self._headers)
        if self._secret:  # signed afresh for every send: a new nonce is never a replay
            stamp, nonce = str(int(time.time())), str(uuid.uuid4())
            headers.update({"X-Timestamp": stamp, "X-Nonce": nonce, "X-Signature": sign(self._secret, body, stamp, nonce)})
        wire = body
        if packed is not None:
            wire = packed
            headers["Content-Encoding"] = "gzip"
        elif self._gzip_level > 0:
            wire = gzip_bytes(body, self._gzip_level)
            headers["Content-Encoding"] = "gzip"
        reused = self._conn is not None and self._answered
        try:
            self._connection().request("POST", self._prefix + path, body=wire, headers=headers)
        except STALE_ERRORS:
            self.close()
            if not (reused and retry_stale):
                raise
            self._send(path, body, packed, retry_stale=False)  # the server had closed an idle connection
        except BaseException:
            self.close()  # a half-sent request leaves http.client's connection unusable
            raise

    def finish(self, count: int) -> Reply:
        """Read the answer to the request ``start()`` sent."""
        reused = self._answered
        try:
            response = self._connection().getresponse()
            data = response.read()
        except STALE_ERRORS:
            self.close()
            if not reused or self._request is None:
                raise
            # a kept-alive connection the server closed while idle: no answer was coming; send once more on a
            # new connection (what an idle HTTP client does; the event ids make a resend harmless)
            self._send(*self._request, retry_stale=False)
            try:
                response = self._connection().getresponse()
                data = response.read()
            except BaseException:
                self.close()
                raise
        except BaseException:
            self.close()
            raise
        self._answered = True
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return _reply(response.status, data, count, response.getheader("Retry-After"))

    def close(self) -> None:
        self._answered = False
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def _reply(status: int, data: bytes, count: int, retry_after: Optional[str]) -> Reply:
    """TEA's ingest answer: 200 all accepted, 207 some refused (listed), 400 none accepted, else an error."""
    body = None
    if data:
        try:
            body = _outcome.decode(data)
        except msgspec.DecodeError:
            body = None
    accepted, rejected, message = 0, 0, ""
    if isinstance(body, dict):
        message = str(body.get("message") or "")
        errors = body.get("errors")
        if status == 207 and isinstance(errors, list) and errors and isinstance(errors[0], dict):
            message = str(errors[0].get("message") or message)
        if isinstance(body.get("accepted"), int):
            accepted, rejected = body["accepted"], int(body.get("rejected") or 0)
    if status in (200, 201, 202, 204) and not accepted and not rejected:
        accepted = count
    elif 400 <= status < 500 and status not in RETRY_STATUSES:
        accepted, rejected = 0, count
    if not message and status >= 300:
        message = data[:200].decode("utf-8", "replace")
    return Reply(status, accepted, rejected, parse_retry_after(retry_after, time.time()), message)
