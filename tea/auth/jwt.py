"""JWT / OIDC bearer tokens: HS256 with a shared secret, RS/ES/EdDSA with keys from a JWKS.

The algorithm comes from an allow-list decided at start-up (never ``none``); an HMAC algorithm is
checked only against the configured secret and an asymmetric one only against JWKS keys, so a
public key can never be abused as an HMAC secret. JWKS from a URL is fetched on a worker thread
with a timeout, cached, and refreshed when a token names an unknown ``kid`` (at most every
``refresh_min_s``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from typing import Any, Callable

import jwt
from jwt import PyJWK

from tea.auth.principal import ADMIN, SCOPES, Principal
from tea.errors import Unauthorized

log = logging.getLogger(__name__)
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")


class JwksCache:
    def __init__(self, url: str | None, file: str | None, timeout_s: float = 5.0, refresh_min_s: float = 30.0,
                 fetch: Callable[[str, float], bytes] | None = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.refresh_min_s = refresh_min_s
        self._fetch = fetch or _http_get
        self._keys: dict[str | None, PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        if file:
            with open(file, "rb") as fh:
                self._keys.update(_parse_jwks(fh.read()))

    async def key(self, kid: str | None) -> PyJWK | None:
        found = self._keys.get(kid)
        if found is not None or not self.url:
            return found
        async with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at >= self.refresh_min_s:
                self._fetched_at = time.monotonic()
                try:
                    raw = await asyncio.to_thread(self._fetch, self.url, self.timeout_s)
                    self._keys.update(_parse_jwks(raw))
                except (OSError, ValueError, jwt.PyJWKError) as exc:
                    log.error("JWKS fetch from %s failed: %s", self.url, exc)
        return self._keys.get(kid)


def _http_get(url: str, timeout_s: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return response.read()


def _parse_jwks(raw: bytes) -> dict[str | None, PyJWK]:
    keys: dict[str | None, PyJWK] = {}
    for entry in json.loads(raw).get("keys", []):
        try:
            keys[entry.get("kid")] = PyJWK(entry)
        except jwt.PyJWKError as exc:
            log.warning("skipping a JWKS key (%s): %s", entry.get("kid"), exc)
    return keys


class JwtAuthenticator:
    method = "jwt"

    def __init__(self, *, secret: str | None, jwks: JwksCache | None, issuer: str | None, audience: str | None,
                 leeway_s: float, tenant_claim: str, default_scopes: frozenset[str], default_tier: str,
                 algorithms: tuple[str, ...]) -> None:
        allowed = [a for a in algorithms if a in HMAC_ALGORITHMS + ASYMMETRIC_ALGORITHMS]
        self.hmac_algorithms = tuple(a for a in allowed if a in HMAC_ALGORITHMS) if secret else ()
        self.asymmetric_algorithms = tuple(a for a in allowed if a in ASYMMETRIC_ALGORITHMS) if jwks else ()
        self.secret = secret
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.tenant_claims = (tenant_claim, "tenant_id") if tenant_claim != "tenant_id" else ("tenant_id",)
        self.default_scopes = default_scopes
        self.default_tier = default_tier

    @property
    def enabled(self) -> bool:
        return bool(self.hmac_algorithms or self.asymmetric_algorithms)

    async def __call__(self, token: str) -> Principal | None:
        """A Principal for a JWT, None when ``token`` is no JWT; raises Unauthorized for a bad one."""
        if token.count(".") != 2 or token.startswith("tk_"):
            return None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            return None  # not a JWT after all: another authenticator may know it
        algorithm = header.get("alg")
        if algorithm in self.hmac_algorithms:
            key: Any = self.secret
        elif algorithm in self.asymmetric_algorithms:
            key = await self.jwks.key(header.get("kid"))  # type: ignore[union-attr]
            if key is None:
                raise Unauthorized("JWT signed with an unknown key id", code="invalid_token")
        else:
            raise Unauthorized(f"JWT algorithm {algorithm!r} is not allowed", code="invalid_token")
        try:
            claims = jwt.decode(token, key, algorithms=[algorithm], audience=self.audience, issuer=self.issuer,
                                leeway=self.leeway_s,
                                options={"require": ["exp"], "verify_aud": self.audience is not None})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("JWT has expired", code="token_expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("JWT is not valid yet", code="invalid_token") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid JWT: {exc}", code="invalid_token") from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        scopes = _scopes(claims)
        scopes = scopes if scopes is not None else self.default_scopes
        tenant = next((str(claims[c]) for c in self.tenant_claims if claims.get(c)), None)
        if tenant is None and ADMIN not in scopes:
            raise Unauthorized("JWT names no tenant (claim " + " or ".join(self.tenant_claims) + ")",
                               code="invalid_token")
        return Principal(tenant_id=tenant, user_id=_str(claims.get("sub")), organization=_str(claims.get("org")),
                         scopes=frozenset(s for s in scopes if s in SCOPES), issued_at=_int(claims.get("iat")),
                         expires_at=_int(claims.get("exp")), tier=str(claims.get("tier") or self.default_tier),
                         method="jwt")


def _scopes(claims: dict[str, Any]) -> frozenset[str] | None:
    if isinstance(claims.get("scope"), str):
        return frozenset(claims["scope"].split())
    for name in ("scp", "scopes"):
        value = claims.get(name)
        if isinstance(value, list):
            return frozenset(str(v) for v in value)
        if isinstance(value, str):
            return frozenset(value.split())
    return None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None
