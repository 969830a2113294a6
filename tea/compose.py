"""The composition root: the one place that builds TEA's services from the settings and wires them
together, then collects every route through the ``register_routes`` hook (TEA's own through
``tea.builtins``, exactly as a plugin's). Nothing else constructs a service; ``tea.app`` runs them."""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from tea.alerts import build_alerts
from tea.auth.audit import AuditLog
from tea.auth.chain import AuthChain
from tea.auth.gate import Gate
from tea.auth.jwt import JwksCache, JwtAuthenticator
from tea.auth.keys import check_secret_key
from tea.auth.limits import Limiter, TierLimits
from tea.auth.state import LocalState, RedisState, SharedState, StoredQuotas
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
from tea.plugins import make_plugin_manager, make_storage
from tea.pricing import PriceTable
from tea.query.consistency import ReadConsistency
from tea.query.readers import Readers
from tea.services import Services
from tea.settings import Settings
from tea.storage.base import Storage
from tea.storage.signals import SignalRouter
from tea.telemetry import Telemetry, TimedReads
from tea.timeutil import now_us
from tea.ui.session import Sessions
from tea.ui.tail import LiveTail

SEED_PREFIX_PATHS = ("/events", "/health", "/")  # the seed served these under /tea/... too (its Spin route)


def compose(settings: Settings, storage: Storage | None = None, clock: Callable[[], int] = now_us,
            plugins: Sequence[Any] = ()) -> Services:
    """Every service, built and wired, with every route registered on ``services.router``."""
    check_secret_key(settings.secret_key)  # now, as one line, not at start-up under the server
    pm = make_plugin_manager(plugins)
    storage = storage or make_storage(settings, pm)
    telemetry = Telemetry()
    buffer = DurableBuffer(os.path.join(settings.data_dir, "buffer"), max_bytes=settings.buffer.max_bytes,
                           segment_bytes=settings.buffer.segment_bytes, ack=settings.buffer.ack,
                           fsync_interval_s=settings.buffer.fsync_interval_ms / 1000, clock=clock,
                           recent_bytes=settings.buffer.recent_bytes)
    state: SharedState = RedisState(settings.redis_url) if settings.redis_url else LocalState()
    # without Redis the monthly quota counters live in this process: saved to storage so a restart keeps them
    quotas = StoredQuotas(state, storage) if isinstance(state, LocalState) else None
    tokens = TokenService(storage, None, clock, settings.auth.token_cache_s)  # (its box: at start-up)
    chain = build_chain(settings, tokens, state)
    limiter = Limiter(state, tier_limits(settings), settings.auth.limits_on_state_error)
    audit = AuditLog(storage, clock, telemetry=telemetry)
    registry = Registry(storage, clock)
    stages = tuple(stage for group in pm.hook.register_validators(settings=settings) for stage in group)
    normaliser = Normaliser(default_tenant=settings.default_tenant, max_future_skew_s=settings.max_future_skew_s,
                            clock=clock, stages=stages,
                            prices=PriceTable.load(settings.genai.price_table, settings.data_dir))
    processors = build_processors(settings, storage, pm, telemetry, clock, buffer)
    live = LiveTail.from_settings(settings)  # the live tail (GET /v1/events/stream) of acknowledged events
    writer = Writer(buffer, SignalRouter(storage), batch_events=settings.writer.batch_events,
                    flush_interval_s=settings.writer.flush_interval_ms / 1000,
                    max_backoff_s=settings.writer.max_backoff_s,
                    dead_letter_path=os.path.join(settings.data_dir, "dead-letter", "events.ndjson"),
                    clock=clock, telemetry=telemetry)
    watch(telemetry, buffer, writer)
    retention = RetentionJob(storage, settings.retention_hours_effective, settings.retention_interval_s, clock,
                             settings.retention_tenant_hours, telemetry, audit_hours=settings.audit.retention_hours,
                             records_hours=settings.records.retention_hours)
    # a signed request's body is read (and verified) before its route runs, within the largest route bound
    signed_body_limit = max(settings.max_body_bytes, settings.otlp.max_message_bytes)
    timed: Storage = TimedReads(storage, telemetry.storage_query_seconds)  # type: ignore[assignment]
    consistency = ReadConsistency(buffer, writer, processors.consumers, mode=settings.reads.consistency,
                                  max_wait_s=settings.reads.max_wait_ms / 1000, telemetry=telemetry)
    services = Services(
        settings=settings, clock=clock, plugins=pm, storage=storage, buffer=buffer, writer=writer,
        telemetry=telemetry, state=state, quotas=quotas, tokens=tokens, auth=chain, limiter=limiter, audit=audit,
        gate=Gate(chain, limiter, audit, telemetry, signed_body_limit, consistency), readers=Readers(timed, audit),
        registry=registry, alerts=build_alerts(settings, storage, registry, clock), normaliser=normaliser,
        processors=processors, ingestor=Ingestor(buffer, normaliser, telemetry, limiter, live), live=live, retention=retention,
        status=Status(buffer, writer), router=Router())
    register_routes(services)
    return services


def register_routes(services: Services) -> None:
    """Every plugin's routes (TEA's own first), then the seed's routes again under ``/tea``."""
    router = services.router
    for group in services.plugins.hook.register_routes(services=services):
        for route in group:
            router.add(route)
    router.mount("/tea", [r for r in router.routes if r.path in SEED_PREFIX_PATHS])


def build_processors(settings: Settings, storage: Storage, pm: Any, telemetry: Telemetry,
                     clock: Callable[[], int], buffer: DurableBuffer) -> ProcessorRunner:
    """Every plugin's processors, each a consumer of ``buffer`` behind the writer, from its own position."""
    processors = [p for group in pm.hook.register_processors(settings=settings, storage=storage) for p in group]
    p = settings.processing
    return ProcessorRunner(processors, storage, buffer, batch_size=p.batch_size,
                           batch_timeout_s=p.batch_timeout_ms / 1000, retry_attempts=p.retry_attempts,
                           retry_delay_s=p.retry_delay_ms / 1000, read_events=p.max_pending_events,
                           telemetry=telemetry, clock=clock,
                           fallback_path=os.path.join(settings.data_dir, "dead-letter", "dlq.ndjson"))


def watch(telemetry: Telemetry, buffer: DurableBuffer, writer: Writer) -> None:
    """Gauges read from the live buffer and writer at scrape time."""
    telemetry.gauge("tea_buffer_bytes", "Durable buffer backlog not yet in storage", lambda: buffer.backlog_bytes)
    telemetry.gauge("tea_buffer_max_bytes", "Bound of the durable buffer backlog", lambda: buffer.max_bytes)
    telemetry.gauge("tea_buffer_segments", "Segment files of the durable buffer", lambda: buffer.segment_count)
    telemetry.gauge("tea_buffer_events_pending", "Acknowledged events not yet committed", writer.available)
    telemetry.counter("tea_buffer_disk_read_records", "Durable records a consumer (the writer, a processor) read "
                      "back from the segment files: its backlog was past buffer.recent_bytes, or TEA restarted",
                      lambda: buffer.disk_reads)
    telemetry.counter("tea_buffer_corrupt_records", "Corrupt records met in the segment files (from each on, the rest "
                      "of its segment is skipped and kept as <segment>.corrupt)",
                      lambda: buffer.corrupt_records)
    telemetry.gauge("tea_writer_lag_seconds", "Age of the oldest acknowledged event not yet in storage",
                    writer.lag_seconds)
    cursors = buffer.cursors  # the writer and each processor: how far behind the buffer's end each one is
    telemetry.labelled_gauge("tea_consumer_lag_events", "Durable events a consumer of the buffer (the writer, each "
                             "processor) has not passed yet", "consumer",
                             lambda: {name: buffer.lag_events(c) for name, c in cursors.items()})
    telemetry.labelled_gauge("tea_consumer_lag_seconds", "Age of the oldest durable event a consumer of the buffer "
                             "has not passed yet", "consumer",
                             lambda: {name: buffer.lag_seconds(c) for name, c in cursors.items()})


def build_chain(settings: Settings, tokens: TokenService, state: SharedState) -> AuthChain:
    a = settings.auth
    jwks = JwksCache(a.jwks_url, a.jwks_file, a.jwks_timeout_s, a.jwks_refresh_min_s) \
        if a.jwks_url or a.jwks_file else None
    jwt_auth = JwtAuthenticator(
        secret=a.jwt_secret, jwks=jwks, issuer=a.issuer, audience=a.audience, leeway_s=a.leeway_s,
        tenant_claim=a.tenant_claim, default_scopes=frozenset(a.default_scopes.split()), default_tier=a.jwt_tier,
        algorithms=tuple(x.strip() for x in a.algorithms.split(",") if x.strip()), user_claim=a.user_claim,
        org_claim=a.org_claim, scope_claim=a.scope_claim)
    return AuthChain(tokens=tokens, state=state, jwt=jwt_auth, admin_token=settings.admin_token,
                     dev_mode=not settings.auth_validation, require_signature=a.require_signature,
                     allow_two_part=a.two_part_signatures, signature_window_s=a.signature_window_s,
                     nonce_ttl_s=a.nonce_ttl_s,
                     sessions=Sessions(lambda: tokens.box, settings.ui.session_hours * 3600) if settings.ui.enabled
                     else None)


def tier_limits(settings: Settings) -> dict[str, TierLimits]:
    return {name: TierLimits(quota.requests_per_minute, quota.events_per_minute, quota.events_per_month)
            for name, quota in settings.tier.items()}
