"""The authenticator chain, decided once at start-up.

Credentials, in order: ``Authorization: Bearer <TEA_ADMIN_TOKEN>`` (bootstrap admin), an API token
(``Bearer tk_…`` or ``X-API-Key``), a JWT (``Bearer`` with three dots). ``Authorization: Basic`` with
any user name and the credential as the password counts as that Bearer (what Grafana's data sources
and promtool's URLs send). Supabase's ``apikey`` header
counts as the Bearer when no ``Authorization`` is sent (with both, ``Authorization`` wins, as in
Supabase). A credential of a kind no authenticator knows is refused; with no credential at all the
request is refused too — unless ``auth_validation`` is off (development mode). There a credential TEA
can verify still counts as itself (its tenant, its scopes, its signature checked), and anything else —
no credential, an anon key, an unknown or expired token, a JWT signed by a key TEA does not hold —
runs as the all-scopes development principal whose tenant comes from the body, logged once per kind
of credential (never the credential). A request carrying ``X-Signature`` (or made
with a token when signatures are required) must be signed: the headers are checked now, and
``request.state["verify_body"]`` holds the check of the body, which ``Gate.admit`` runs on every
such request (over the empty body of a GET) before the request counts against a rate limit.

What the chain learnt about a credential it refused stays in ``request.state`` for the audit log
and the metrics: ``auth_method`` (none, bearer, token, hmac, jwt), ``auth_token_id`` and
``auth_tenant`` (once an API token was found).
"""
from __future__ import annotations

import base64
import binascii
import logging
import time
from typing import Any, Callable

from tea.auth import signing
from tea.auth.jwt import JwtAuthenticator
from tea.auth.keys import same
from tea.auth.principal import ADMIN, DEV, READ, WRITE, Principal
from tea.auth.state import SharedState
from tea.auth.tokens import TokenService
from tea.errors import Unauthorized, Unavailable
from tea.http import Request

log = logging.getLogger(__name__)
ADMIN_PRINCIPAL = Principal(tenant_id=None, scopes=frozenset({ADMIN, READ, WRITE}), method="admin_token",
                            token_id="admin")


class AuthChain:
    def __init__(self, *, tokens: TokenService, state: SharedState, jwt: JwtAuthenticator | None = None,
                 admin_token: str | None = None, dev_mode: bool = False, require_signature: bool = False,
                 allow_two_part: bool = False, signature_window_s: float = 600.0, nonce_ttl_s: int = 600,
                 clock: Callable[[], float] = time.time, sessions: Any = None) -> None:
        self.tokens = tokens
        self.state = state
        self.jwt = jwt if jwt is not None and jwt.enabled else None
        self.admin_token = admin_token
        self.dev_mode = dev_mode
        self.require_signature = require_signature
        self.allow_two_part = allow_two_part
        self.signature_window_s = signature_window_s
        self.nonce_ttl_s = nonce_ttl_s
        self.clock = clock
        self.sessions = sessions  # Control Center sign-ins (tea.ui.session.Sessions), None when the UI is off
        self._dev_kinds: set[str] = set()  # kinds of credential development mode has logged

    def describe(self) -> list[str]:
        chain = ["admin_token"] if self.admin_token else []
        chain += ["api_token"] + (["jwt"] if self.jwt else []) + (["dev"] if self.dev_mode else [])
        return chain

    async def authenticate(self, request: Request) -> Principal:
        try:  # (the credential checked here, not one coroutine further: once a request)
            headers = request.headers
            authorization = headers.get("authorization", "")
            bearer = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
            if bearer is None and authorization[:6].lower() == "basic ":
                bearer = basic_password(authorization[6:])  # (Grafana's and Prometheus clients' basic auth)
            if authorization and bearer is None:
                raise Unauthorized("Authorization must be 'Bearer <token>' (or Basic with the token as the password)",
                                   code="invalid_credentials")
            if bearer is None and headers.get("apikey"):
                # Supabase clients send the key as `apikey` (and usually as the Bearer too): the same credential
                bearer = headers["apikey"].strip()
            api_key = headers.get("x-api-key")
            state = request.state
            if bearer is None and api_key is None and self.sessions is not None and "cookie" in headers:
                session = self.sessions.read(headers)
                if session is not None:
                    state["auth_method"] = "session"
                    self.sessions.check_csrf(request.method, headers, session, request.scope.get("scheme") == "https")
                    return await self.for_token(request, session.token)
            if bearer and self.admin_token and same(bearer, self.admin_token):
                return ADMIN_PRINCIPAL
            if api_key or (bearer and bearer.startswith("tk_")):
                state["auth_method"] = "token"
                return await self._api_token(request, api_key or bearer)  # type: ignore[arg-type]
            if bearer and self.jwt is not None:
                state["auth_method"] = "jwt"
                principal = await self.jwt(bearer)
                if principal is not None:
                    return principal
            state["auth_method"] = "bearer" if bearer else "none"
            if bearer:
                raise Unauthorized("Invalid token", code="invalid_token")
            if signing.signed(headers):
                raise Unauthorized("Missing Authorization header for a signed request", code="missing_credentials")
            if self.dev_mode:
                return DEV
            raise Unauthorized("missing credentials: send Authorization: Bearer <token>", code="missing_credentials")
        except Unauthorized as exc:
            # development mode: what TEA cannot verify runs as the development principal; a credential it
            # knows (an API token it found) keeps its own failures (a missing or wrong signature), and a
            # Control Center session its own (a sign-in that no longer holds signs the browser out)
            if not self.dev_mode or request.state.get("auth_token_id") or request.state.get("auth_session"):
                raise
            return self.development(credential_kind(request.headers), exc.code or "invalid_credentials")

    def development(self, kind: str, reason: str) -> Principal:
        """The development principal for a credential TEA cannot verify; logged once per kind."""
        if kind not in self._dev_kinds:
            self._dev_kinds.add(kind)
            log.warning("development mode: %s that TEA cannot verify (%s) runs as the development principal "
                        "(all scopes, tenant from the body); other credentials of this kind are not logged again",
                        kind, reason)
        return DEV

    async def for_token(self, request: Request, token: str) -> Principal:
        """The principal of a token presented through a Control Center sign-in (the form, then its session
        cookie): the admin token, an API token or a JWT, checked as a Bearer is, except that no request
        signature is asked for (a browser cannot sign; the sealed cookie stands for the token)."""
        request.state["auth_session"] = True
        if self.admin_token and same(token, self.admin_token):
            return ADMIN_PRINCIPAL
        if token.startswith("tk_"):
            return await self._api_token(request, token)
        if self.jwt is not None:
            principal = await self.jwt(token)
            if principal is not None:
                return principal
        raise Unauthorized("Invalid token", code="invalid_token")

    async def claim_nonce(self, nonce: str) -> bool:
        try:
            return await self.state.claim_nonce(nonce, self.nonce_ttl_s)
        except Exception as exc:  # shared-state boundary: replay protection fails closed
            log.error("nonce store unreachable, refusing signed requests: %s", exc)
            raise Unavailable("replay protection is unavailable; retry later", retry_after_s=5,
                              code="nonce_store_unavailable") from None

    async def _api_token(self, request: Request, token: str) -> Principal:
        active = await self.tokens.lookup(token)
        if active is None:
            raise Unauthorized("Invalid token", code="invalid_token")
        headers = request.headers
        request.state.update(auth_token_id=active.record.token_id, auth_tenant=active.record.tenant_id)
        if (signing.signed(headers) or self.require_signature) and not request.state.get("auth_session"):
            request.state["auth_method"] = "hmac"
            signing.check_headers(headers, self.allow_two_part)
            request.state["verify_body"] = signing.verifier(headers, active.secret, self.signature_window_s,
                                                            self.claim_nonce, self.clock)
            return active.principal("hmac")
        return active.principal("token")


def basic_password(encoded: str) -> str | None:
    """The password of HTTP Basic credentials (``user:password`` in base64), None when malformed or empty:
    a client that can only send Basic auth sends the token as the password, any user name."""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    _, colon, password = decoded.partition(":")
    return password.strip() if colon and password.strip() else None


def credential_kind(headers: dict[str, str]) -> str:
    """What kind of credential a request carries, for logs: the header and the credential's shape, never
    the credential itself."""
    authorization = headers.get("authorization", "")
    scheme, space, _ = authorization.partition(" ")
    if authorization and scheme.lower() != "bearer":
        return f"a {scheme[:16]} Authorization header" if space else "an Authorization header without a scheme"
    for header, value in (("Authorization: Bearer", authorization[7:].strip()),
                          ("apikey header", headers.get("apikey")), ("X-API-Key header", headers.get("x-api-key"))):
        if value:
            shape = "a JWT" if value.count(".") == 2 else "an API token" if value.startswith("tk_") else "a key"
            return f"{shape} in the {header}"
    return "a signed request without a token" if signing.signed(headers) else "a request without credentials"
