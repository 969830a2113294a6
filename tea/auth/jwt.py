"""JWT / OIDC bearer tokens: HS256 with a shared secret, RS/ES/EdDSA with keys from a JWKS.

Claims map to the principal as the seed's AuthContext did — ``sub`` → user, ``tenant`` (then
``tenant_id``) → tenant, ``org`` → organization, ``scope``/``scp``/``scopes`` → scopes, ``iat``,
``exp`` — each claim name configurable (``auth.user_claim``, ``auth.tenant_claim``,
``auth.org_claim``, ``auth.scope_claim``); ``tier`` must name a known tier.

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

from tea.auth.principal import ADMIN, SCOPES, TIERS, Principal
from tea.errors import Unauthorized

log = logging.getLogger(__name__)
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
KEY_TYPES = {"RS256": "RSA", "RS384": "RSA", "RS512": "RSA", "PS256": "RSA", "ES256": "EC", "ES384": "EC",
             "EdDSA": "OKP"}


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

    async def key(self, kid: str | None, algorithm: str | None = None) -> PyJWK | None:
        """The key named ``kid``; for a token without ``kid``, the one key of ``algorithm``'s type
        when the set holds exactly one (several: None, as the token cannot say which)."""
        found = self._find(kid, algorithm)
        if found is not None or not self.url:
            return found
        async with self._lock:
            if self._find(kid, algorithm) is None and time.monotonic() - self._fetched_at >= self.refresh_min_s:
                self._fetched_at = time.monotonic()
                try:
                    raw = await asyncio.to_thread(self._fetch, self.url, self.timeout_s)
                    self._keys.update(_parse_jwks(raw))
                except (OSError, ValueError, jwt.PyJWKError) as exc:
                    log.error("JWKS fetch from %s failed: %s", self.url, exc)
        return self._find(kid, algorithm)

    def _find(self, kid: str | None, algorithm: str | None) -> PyJWK | None:
        found = self._keys.get(kid)
        if found is None and kid is None and algorithm in KEY_TYPES:
            matching = [k for k in self._keys.values() if k.key_type == KEY_TYPES[algorithm]]
            found = matching[0] if len(matching) == 1 else None
        return found


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
                 algorithms: tuple[str, ...], user_claim: str = "sub", org_claim: str = "org",
                 scope_claim: str = "scope") -> None:
        allowed = [a for a in algorithms if a in HMAC_ALGORITHMS + ASYMMETRIC_ALGORITHMS]
        self.hmac_algorithms = tuple(a for a in allowed if a in HMAC_ALGORITHMS) if secret else ()
        self.asymmetric_algorithms = tuple(a for a in allowed if a in ASYMMETRIC_ALGORITHMS) if jwks else ()
        self.secret = secret
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.tenant_claims = (tenant_claim, "tenant_id") if tenant_claim != "tenant_id" else ("tenant_id",)
        self.user_claim = user_claim
        self.org_claim = org_claim
        self.scope_claims = tuple(dict.fromkeys((scope_claim, "scp", "scopes")))
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
            kid = header.get("kid")
            key = await self.jwks.key(kid, algorithm)  # type: ignore[union-attr]
            if key is None:
                raise Unauthorized("JWT signed with an unknown key id" if kid is not None else
                                   f"JWT names no key id (kid) and the key set does not hold exactly one "
                                   f"{KEY_TYPES[algorithm]} key", code="invalid_token")
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
        scopes = _scopes(claims, self.scope_claims)
        scopes = scopes if scopes is not None else self.default_scopes
        tenant = next((str(claims[c]) for c in self.tenant_claims if claims.get(c)), None)
        if tenant is None and ADMIN not in scopes:
            raise Unauthorized("JWT names no tenant (claim " + " or ".join(self.tenant_claims) + ")",
                               code="invalid_token")
        tier = str(claims.get("tier") or self.default_tier)
        if tier not in TIERS:  # an unknown tier would have no limits at all
            raise Unauthorized(f"JWT names an unknown tier {tier!r}; tiers are {', '.join(TIERS)}",
                               code="invalid_token")
        return Principal(tenant_id=tenant, user_id=_str(claims.get(self.user_claim)),
                         organization=_str(claims.get(self.org_claim)),
                         scopes=frozenset(s for s in scopes if s in SCOPES), issued_at=_int(claims.get("iat")),
                         expires_at=_int(claims.get("exp")), tier=tier, method="jwt")


def _scopes(claims: dict[str, Any], names: tuple[str, ...]) -> frozenset[str] | None:
    """The first of ``names`` the token carries: a space-separated string or a list."""
    for name in names:
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
