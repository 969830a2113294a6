"""API tokens for SDKs and services: create, list, revoke, rotate, and look up (cached).

A token is shown once, at creation (or rotation), with its signing secret; storage keeps only
the token's SHA-256 and the secret sealed with AES-GCM. Lookups are cached for ``cache_ttl_s``
(hits and misses), so the request path touches storage at most once per token per TTL; a revoke
on another node takes effect here within that TTL. While storage is unavailable an expired entry
is used as it was (no revoke can be stored then either), so ingestion with a token this node has
seen keeps being acknowledged into the durable buffer.
"""
from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable

from tea.auth import keys
from tea.auth.principal import SCOPES, TIERS, Principal
from tea.errors import BadRequest, Conflict, NotFound, StorageUnavailable
from tea.storage.base import Storage
from tea.timeutil import now_us
from tea.types import TokenRecord

DEFAULT_SCOPES = ("events:write", "events:read")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class ActiveToken:
    record: TokenRecord
    secret: str

    def principal(self, method: str = "token") -> Principal:
        r = self.record
        return Principal(tenant_id=r.tenant_id, scopes=frozenset(r.scopes), issued_at=r.created_at // 1_000_000,
                         token_id=r.token_id, tier=r.tier, method=method, org_id=r.org_id, app_id=r.app_id)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    secret: str
    record: TokenRecord


class TokenService:
    def __init__(self, storage: Storage, box: keys.SecretBox, clock: Callable[[], int] = now_us,
                 cache_ttl_s: float = 30.0, cache_size: int = 10000) -> None:
        self.storage = storage
        self.box = box
        self.clock = clock
        self.cache_ttl_s = cache_ttl_s
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[float, ActiveToken | None]] = OrderedDict()

    async def create(self, tenant_id: str, tier: str = "free", scopes: Iterable[str] | None = None,
                     org_id: str | None = None, app_id: str | None = None) -> IssuedToken:
        scope_list = _check(tenant_id, tier, scopes, org_id, app_id)
        token, secret = keys.new_token(org_id), keys.new_secret()
        token_id = keys.new_token_id()
        record = TokenRecord(token_id=token_id, token_hash=keys.token_hash(token), token_prefix=token[:12],
                             tenant_id=tenant_id, tier=tier, scopes=scope_list,
                             secret_sealed=self.box.seal(secret, token_id), created_at=self.clock(),
                             org_id=org_id, app_id=app_id)
        await self.storage.save_token(record)
        return IssuedToken(token, secret, record)

    async def list(self, tenant_id: str | None = None) -> list[TokenRecord]:
        return await self.storage.list_tokens(tenant_id)

    async def get(self, token_id: str) -> TokenRecord:
        record = await self.storage.find_token(token_id=token_id)
        if record is None:
            raise NotFound(f"no token {token_id!r}", code="token_not_found", details={"token_id": token_id})
        return record

    async def revoke(self, token_id: str) -> TokenRecord:
        record = await self.get(token_id)
        if record.revoked_at is None:
            record = _replace(record, revoked_at=self.clock())
            await self.storage.save_token(record)
        self._forget(record.token_hash)
        return record

    async def rotate(self, token_id: str) -> IssuedToken:
        """A new token value and signing secret for the same token id; the old value stops working."""
        record = await self.get(token_id)
        if record.revoked_at is not None:
            raise Conflict(f"token {token_id!r} is revoked", code="token_revoked")
        token, secret = keys.new_token(record.org_id), keys.new_secret()
        updated = _replace(record, token_hash=keys.token_hash(token), token_prefix=token[:12],
                           secret_sealed=self.box.seal(secret, token_id), rotated_at=self.clock())
        await self.storage.save_token(updated)
        self._forget(record.token_hash)
        return IssuedToken(token, secret, updated)

    async def lookup(self, token: str) -> ActiveToken | None:
        """The live token behind ``token``, or None (unknown or revoked). Cached."""
        digest = keys.token_hash(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            record = await self.storage.find_token(token_hash=digest)
        except StorageUnavailable:
            if cached is None:
                raise
            return cached[1]  # (kept expired: the next lookup asks storage again)
        active = None
        if record is not None and record.revoked_at is None and keys.same(record.token_hash, digest):
            active = ActiveToken(record, self.box.open(record.secret_sealed, record.token_id))
        self._cache[digest] = (now + self.cache_ttl_s, active)
        self._cache.move_to_end(digest)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return active

    def _forget(self, digest: str) -> None:
        self._cache.pop(digest, None)


def _check(tenant_id: str, tier: str, scopes: Iterable[str] | None, org_id: str | None = None,
           app_id: str | None = None) -> list[str]:
    if not tenant_id or len(tenant_id) > 256 or tenant_id.startswith("_"):
        raise BadRequest("tenant_id must be 1 to 256 characters and not start with '_'", code="invalid_body",
                         details={"field": "tenant_id"})
    if tier not in TIERS:
        raise BadRequest(f"tier must be one of {', '.join(TIERS)}", code="invalid_body", details={"field": "tier"})
    for name, value in (("org_id", org_id), ("app_id", app_id)):
        if value is not None and not _UUID.fullmatch(value):  # it goes into the token: tk_<org>_<random>
            raise BadRequest(f"{name} must be a UUID like 550e8400-e29b-41d4-a716-446655440000, got {value[:64]!r}",
                             code="invalid_body", details={"field": name})
    chosen = list(dict.fromkeys(scopes if scopes is not None else DEFAULT_SCOPES))
    bad = [s for s in chosen if s not in SCOPES]
    if bad or not chosen:
        raise BadRequest(f"scopes must be some of {', '.join(SCOPES)}", code="invalid_body", details={"field": "scopes"})
    return chosen


def _replace(record: TokenRecord, **changes: object) -> TokenRecord:
    import msgspec
    return msgspec.structs.replace(record, **changes)
