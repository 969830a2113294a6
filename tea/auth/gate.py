"""Admission: who is asking, may they, and may they now. The ASGI dispatcher admits every route that
names a scope; routes that answer in their own protocol's shape (PostgREST, Telemetron, the seed's
``/metrics``) call ``Gate.admit`` themselves, and receivers that check credentials their own way
(telemetry-kit, OTLP/gRPC) report refusals through ``Gate.failed``."""
from __future__ import annotations

from typing import Any, Protocol

from tea.auth.audit import AuditLog
from tea.auth.chain import AuthChain
from tea.auth.limits import Limiter
from tea.auth.principal import DEV, READ, Principal
from tea.errors import ClientError, Forbidden, Unauthorized, Unavailable
from tea.http import Request
from tea.telemetry import Telemetry


class Consistency(Protocol):
    """What the gate asks of read-your-writes (``tea.query.consistency.ReadConsistency``)."""

    def arrived(self, request: Request) -> None: ...

    async def settle(self, request: Request, derived: bool = False) -> None: ...


def principal_of(request: Request) -> Principal:
    """Who is asking (the development-mode principal when authentication is off)."""
    return request.state.get("principal") or DEV


def is_read(request: Request, scope: str) -> bool:
    """Whether read-your-writes applies to ``request``: a GET, a HEAD, or any request needing ``events:read``."""
    return scope == READ or request.method in ("GET", "HEAD")


def write_tenant(principal: Principal, asked: str | None, default_tenant: str) -> str:
    """The tenant a write (or a single-tenant read) acts on: the caller's own; admins and development
    mode name one (else ``default_tenant``). 403 when a tenant principal names another tenant."""
    if principal.tenant_id and not principal.is_admin:
        if asked and asked != principal.tenant_id:
            raise Forbidden(f"this credential cannot act on tenant {asked!r}", code="forbidden_tenant",
                            details={"tenant_id": asked})
        return principal.tenant_id
    return asked or default_tenant


class Gate:
    def __init__(self, chain: AuthChain, limiter: Limiter, audit: AuditLog, telemetry: Telemetry,
                 signed_body_limit: int, consistency: Consistency | None = None) -> None:
        self.chain = chain
        self.consistency = consistency  # reads wait for what this node acknowledged (tea.query.consistency)
        self.limiter = limiter
        self.audit = audit
        self.telemetry = telemetry
        self.signed_body_limit = signed_body_limit  # a signed body is read before its route runs

    async def admit(self, request: Request, scope: str) -> None:
        """Authenticate (a signed request's signature too, over the body it carries — empty for a GET),
        check the scope, then count the request against the caller's rate limit: a request whose
        signature fails never uses up the token's allowance (telemetry-kit's verify_hmac → rate_limit).
        A read (GET, HEAD, or any request needing ``events:read``) then waits, if it must, until storage holds
        what this node acknowledged before the request arrived (``settle``)."""
        reads = self.consistency is not None and is_read(request, scope)
        if reads:  # (only a read waits: see settle)
            self.consistency.arrived(request)  # type: ignore[union-attr]
        t = self.telemetry
        try:
            principal = await self.chain.authenticate(request)
        except Unauthorized as exc:
            self.failed(request, exc)
            raise
        verify = request.state.pop("verify_body", None)
        if verify is not None:
            body = await request.body(self.signed_body_limit)
            try:
                await verify(body)
            except Unavailable:  # the nonce store is down: our outage, not the caller's failure
                raise
            except ClientError as exc:
                self.failed(request, exc)
                raise
        t.count(t.auth, 1, principal.method, "success")
        if not principal.can(scope):
            raise Forbidden(f"this needs the {scope} scope", code="insufficient_scope", details={"scope": scope})
        request.state["principal"] = principal
        request.state["limit_headers"] = await self.limiter.request(principal)
        if reads:
            await self.settle(request, scope)

    async def settle(self, request: Request, scope: str) -> None:
        """Read-your-writes for a read (GET, HEAD, or a request needing ``events:read``) whose caller is admitted
        (``admit`` calls this; so does a route admitting callers its own way). A route over data the processors
        derive (registry counts, analytics tables) waits for them too, one that reads no storage (the live tail)
        for nothing: ``request.state["consistency"]``, set from the route's ``consistency``."""
        if self.consistency is not None and is_read(request, scope):
            wanted = request.state.get("consistency", "stored")
            if wanted != "none":
                await self.consistency.settle(request, derived=wanted == "derived")

    def failed(self, request: Any, exc: ClientError) -> None:
        """Count a refused credential in ``tea_auth_attempts_total`` by method and audit it: the reason, the
        token id when the token was found (a bad signature, timestamp or nonce), else the first 12
        characters of an unknown ``tk_`` token. ``request`` is a Request or anything with its
        ``state``, ``header``, ``client`` and ``path`` (the gRPC metadata)."""
        state = request.state
        method = state.get("auth_method", "none")
        t = self.telemetry
        t.child(t.auth, method, "failure").inc()
        details = {"path": request.path, "auth_method": method, "status": str(exc.status)}
        token_id = state.get("auth_token_id")
        if token_id:
            details["token_id"] = token_id
        else:
            presented = (request.header("x-api-key") or request.header("authorization") or "").split()[-1:]
            if presented and presented[0].startswith("tk_"):
                details["token_prefix"] = presented[0][:12]
        self.audit.record("auth_failure", actor=token_id, tenant_id=state.get("auth_tenant"), success=False,
                          reason=exc.message, remote_addr=request.client, **details)
