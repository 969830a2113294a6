"""The one identity every request resolves to."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

WRITE = "events:write"
READ = "events:read"
ADMIN = "admin"
SCOPES = (WRITE, READ, ADMIN)
TIERS = ("free", "pro", "business", "enterprise")  # rate-limit tiers (settings tier.<name>.*)


@dataclass(frozen=True)
class Principal:
    """The seed's AuthContext plus what TEA needs. ``tenant_id`` None only for admins (and dev mode)."""

    tenant_id: str | None
    user_id: str | None = None
    organization: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    issued_at: int | None = None
    expires_at: int | None = None
    token_id: str | None = None
    tier: str = "enterprise"
    method: str = "none"  # how it was authenticated: jwt, token, hmac, admin_token, dev
    org_id: str | None = None  # telemetry-kit token binding
    app_id: str | None = None

    @cached_property  # (read a few times a request, of a principal kept for its credential: computed once)
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    def can(self, scope: str) -> bool:
        return scope in self.scopes or self.is_admin

    def tenants(self) -> tuple[str, ...] | None:
        """The tenants this principal may read: None means every tenant (admin)."""
        if self.is_admin:
            return None
        return (self.tenant_id,) if self.tenant_id else ()

    @property
    def limit_key(self) -> str:
        """Whose rate limits and quotas this request counts against."""
        return self.token_id or f"tenant:{self.tenant_id}"


DEV = Principal(tenant_id=None, scopes=frozenset(SCOPES), method="dev")
SYSTEM = Principal(tenant_id=None, scopes=frozenset({ADMIN}), method="system")  # TEA's own reads (/health)
