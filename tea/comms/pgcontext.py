"""What the PostgREST surface (``tea.comms.postgrest``, ``pgwrite``, ``pgregistry``) needs from the
composition root, in one place."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tea.auth.gate import Gate, principal_of, write_tenant
from tea.comms.registry import Registry
from tea.http import Request
from tea.pipeline.ingest import Ingestor
from tea.query.readers import Readers
from tea.settings import Settings


@dataclass(frozen=True, eq=False)
class PgRest:
    settings: Settings
    clock: Callable[[], int]
    readers: Readers
    registry: Registry  # writes, and the registry's own reads under its lock (uniqueness of an upsert)
    ingestor: Ingestor
    gate: Gate

    def write_tenant(self, request: Request, asked: str | None = None) -> str:
        """The tenant a write acts on: the caller's own; admins and development mode name one."""
        return write_tenant(principal_of(request), asked or request.param("tenant_id"),
                            self.settings.default_tenant)
