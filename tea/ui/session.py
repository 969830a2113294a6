"""Control Center sign-in: a session cookie that stands for the TEA token it was opened with.

The cookie (``tea_session``: ``HttpOnly``, ``SameSite=Strict``, ``Path=/``, ``Secure`` over TLS)
holds the token, a session id, a CSRF secret and an expiry, sealed with AES-GCM under the
server's master key (``SecretBox``, the key that already seals API-token secrets): the browser
can neither read nor forge it, and every node sharing the master key accepts it. Each request
made with it authenticates the token again through the same chain as a ``Bearer`` (so a revoked
or expired token stops working at once, and the token's tenant and scopes apply), without a
request signature (a browser cannot sign; the cookie stands for the token).

CSRF: a state-changing request (any method but GET, HEAD, OPTIONS) authenticated by the cookie
must carry the session's CSRF secret in ``X-CSRF-Token`` (pages get it from a ``<meta>`` tag),
and its ``Origin``, when sent, must be this host. ``SameSite=Strict`` already keeps other sites'
requests from carrying the cookie; the token check is the second lock. Sign-out forgets the
session in this process (``revoke``) and clears the cookie.
"""
from __future__ import annotations

import base64
import binascii
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

import msgspec
from cryptography.exceptions import InvalidTag

from tea.auth.keys import same
from tea.errors import Forbidden, Unauthorized

COOKIE = "tea_session"
LOGIN_COOKIE = "tea_login"  # the sign-in form's own CSRF secret (double submit), before any session
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_COOKIE_BYTES = 4000  # browsers keep cookies up to about 4096 bytes, name and attributes included
_CONTEXT = "tea-ui-session-v1"
_MAX_REVOKED = 100_000


class _Sealed(msgspec.Struct, array_like=True):
    sid: str
    token: str
    csrf: str
    expires_at: float


@dataclass(frozen=True)
class Session:
    sid: str
    token: str
    csrf: str
    expires_at: float


def cookies(header: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name not in out:
            out[name] = value.strip().strip('"')
    return out


def same_origin(headers: dict[str, str], secure: bool) -> bool:
    """True when the request has no Origin (not a browser's cross-origin request) or it is this host."""
    origin = headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.netloc == headers.get("host", "") and parts.scheme == ("https" if secure else "http")


def is_tls(scope: dict[str, Any]) -> bool:
    return scope.get("scheme") == "https"


class Sessions:
    def __init__(self, box: Callable[[], Any], lifetime_s: float, clock: Callable[[], float] = time.time) -> None:
        self.box = box  # the SecretBox, known once start-up loaded the master key
        self.lifetime_s = lifetime_s
        self.clock = clock
        self._revoked: dict[str, float] = {}  # sid -> its expiry

    def issue(self, token: str) -> tuple[Session, str]:
        """A new session for ``token`` and its cookie value. ValueError when the token is too long for a cookie."""
        session = Session(secrets.token_urlsafe(12), token, secrets.token_urlsafe(24), self.clock() + self.lifetime_s)
        sealed = self.box().seal(msgspec.json.encode(_Sealed(session.sid, token, session.csrf,
                                                             session.expires_at)).decode(), _CONTEXT)
        value = base64.urlsafe_b64encode(sealed).decode().rstrip("=")
        if len(value) + 200 > MAX_COOKIE_BYTES:
            raise ValueError("this token is too long to keep in a browser cookie")
        return session, value

    def read(self, headers: dict[str, str]) -> Session | None:
        """The session the request's cookie holds; None without one. Unauthorized when it is not valid."""
        value = cookies(headers.get("cookie")).get(COOKIE)
        if not value:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            data = msgspec.json.decode(self.box().open(raw, _CONTEXT), type=_Sealed)
        except (binascii.Error, ValueError, InvalidTag, msgspec.DecodeError):
            raise Unauthorized("the session cookie is not valid; sign in again", code="invalid_session") from None
        if data.expires_at <= self.clock() or data.sid in self._revoked:
            raise Unauthorized("the session has ended; sign in again", code="session_expired")
        return Session(data.sid, data.token, data.csrf, data.expires_at)

    def check_csrf(self, method: str, headers: dict[str, str], session: Session, secure: bool,
                   presented: str | None = None) -> None:
        """403 for a state-changing request without the session's CSRF secret, or from another origin."""
        if method in SAFE_METHODS:
            return
        if not same_origin(headers, secure):
            raise Forbidden("cross-origin request refused", code="csrf_failed")
        token = presented if presented is not None else headers.get(CSRF_HEADER)
        if not token or not same(token, session.csrf):
            raise Forbidden(f"this request needs the session's CSRF token in {CSRF_HEADER}", code="csrf_failed")

    def revoke(self, session: Session) -> None:
        now = self.clock()
        if len(self._revoked) >= _MAX_REVOKED:
            self._revoked = {sid: at for sid, at in self._revoked.items() if at > now}
        self._revoked[session.sid] = session.expires_at

    def cookie(self, value: str, secure: bool, max_age_s: int | None = None) -> str:
        age = int(self.lifetime_s) if max_age_s is None else max_age_s
        return (f"{COOKIE}={value}; Path=/; Max-Age={age}; HttpOnly; SameSite=Strict" + ("; Secure" if secure else ""))
