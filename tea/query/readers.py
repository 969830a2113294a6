"""Where read routes get storage: a ``ScopedStorage`` per request, seen through the caller's principal
(an admin's read is audited once per request), and the service's own reads of every tenant."""
from __future__ import annotations

from tea.auth.audit import AuditLog
from tea.auth.gate import principal_of
from tea.auth.principal import SYSTEM
from tea.http import Request
from tea.query.scope import ScopedStorage
from tea.storage.base import Storage


class Readers:
    def __init__(self, storage: Storage, audit: AuditLog) -> None:
        self.storage = storage  # reads are timed (tea.telemetry.TimedReads) by the composition root
        self.audit = audit
        self._system = ScopedStorage(storage, SYSTEM)

    def of(self, request: Request, audited: bool = True) -> ScopedStorage:
        """Storage for this request's reads, scoped to the caller's tenant (admins see every tenant). One
        per request: an admin's read is audited once, however many reads its route runs — unless it reads
        TEA's own administrative records rather than tenant data (``audited=False``: the audit log itself,
        retention settings)."""
        found: ScopedStorage | None = request.state.get("reader")
        if found is None:
            found = request.state["reader"] = ScopedStorage(self.storage, principal_of(request))
            if audited:
                self.audit_admin_read(request)
        return found

    def system(self) -> ScopedStorage:
        """TEA's own reads across tenants (``/health``'s event count): never a caller's."""
        return self._system

    def audit_admin_read(self, request: Request) -> None:
        """Record an admin's read (``admin_read``, the tenant it named, the path) once per request."""
        principal = principal_of(request)
        if principal.is_admin and principal.method != "dev" and not request.state.get("admin_read_audited"):
            request.state["admin_read_audited"] = True
            asked = request.param("tenant_id")
            if asked and asked.startswith("eq."):  # PostgREST's tenant_id=eq.X
                asked = asked[3:]
            self.audit.record("admin_read", actor=principal.user_id or principal.token_id, tenant_id=asked,
                              remote_addr=request.client, path=request.path)
