"""The services TEA is made of, as the composition root (``tea.compose``) built them.

Route modules never see this container, nor the application: each module's ``routes(...)`` names the
services it needs as typed parameters (``routes(readers: Readers, clock: Clock)``) and ``provide``
hands it exactly those, by name. Plugins get the container in ``register_routes(services)`` and may
use ``provide`` the same way.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from typing import Any, Callable, TypeVar

import pluggy

from tea.alerts.evaluate import Evaluator
from tea.auth.audit import AuditLog
from tea.auth.chain import AuthChain
from tea.auth.gate import Gate
from tea.auth.limits import Limiter
from tea.auth.state import SharedState, StoredQuotas
from tea.auth.tokens import TokenService
from tea.buffer.log import DurableBuffer
from tea.buffer.writer import Writer
from tea.comms.registry import Registry
from tea.http import Router
from tea.ops.retention import RetentionJob
from tea.ops.status import Status
from tea.pipeline.ingest import Ingestor
from tea.pipeline.normalise import Normaliser
from tea.pipeline.process import ProcessorRunner
from tea.query.readers import Readers
from tea.settings import Settings
from tea.storage.base import Storage
from tea.telemetry import Telemetry
from tea.ui.tail import LiveTail

T = TypeVar("T")
Clock = Callable[[], int]


@dataclass(eq=False)
class Services:
    settings: Settings
    clock: Clock                  # UTC microseconds
    plugins: pluggy.PluginManager
    storage: Storage              # writes, and the background jobs' reads; a route reads through ``readers``
    buffer: DurableBuffer
    writer: Writer
    telemetry: Telemetry
    state: SharedState            # nonces, rate limits (Redis when shared between nodes)
    quotas: StoredQuotas | None   # monthly quota counters kept in storage (no Redis)
    tokens: TokenService
    auth: AuthChain
    limiter: Limiter
    audit: AuditLog
    gate: Gate                    # admission: authenticate, authorise, rate-limit; audit refusals
    readers: Readers              # a request's tenant-scoped reader
    registry: Registry
    alerts: Evaluator
    normaliser: Normaliser
    processors: ProcessorRunner
    ingestor: Ingestor            # the one ingestion path: normalise, then the durable buffer
    live: LiveTail                # the live tail of acknowledged events (GET /v1/events/stream)
    retention: RetentionJob
    status: Status
    router: Router                # every route, once the hook has run (``/openapi.json`` reads it)


def provide(factory: Callable[..., T], services: Services) -> T:
    """Call ``factory`` with the services its parameters name (every parameter must name one)."""
    names = inspect.signature(factory).parameters
    known = {f.name for f in fields(services)}
    missing = [n for n in names if n not in known]
    if missing:
        raise TypeError(f"{factory.__module__}.{factory.__qualname__} asks for {missing[0]!r}, which is no service "
                        f"(services: {', '.join(sorted(known))})")
    args: dict[str, Any] = {n: getattr(services, n) for n in names}
    return factory(**args)
