"""TEA's own plugins: storage backends, routes and validator stages, through the public hooks."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from tea.hookspecs import hookimpl
from tea.pipeline.stages import AllowList, JsonSchemas, PiiRedactor

if TYPE_CHECKING:
    from tea.services import Services
    from tea.settings import Settings

log = logging.getLogger(__name__)


@hookimpl
def register_storage(settings: "Settings") -> Any:
    backend = settings.storage_backend
    if backend == "memory":
        from tea.storage.memory import MemoryStorage
        return MemoryStorage(max_events=settings.max_events,
                             dedup_window_us=settings.storage.dedup_window_us,
                             dedup_same_time=settings.storage.dedup_same_time)
    if backend == "duckdb":
        from tea.storage.duckdb import DuckDBStorage
        path = settings.duckdb.path or os.path.join(settings.data_dir, "tea.duckdb")
        return DuckDBStorage(path, dedup_window_us=settings.storage.dedup_window_us,
                             dedup_same_time=settings.storage.dedup_same_time,
                             threads=settings.duckdb.threads, memory_limit=settings.duckdb.memory_limit,
                             checkpoint_threshold=settings.duckdb.checkpoint_threshold,
                             row_group_size=settings.duckdb.row_group_size, cache_bytes=settings.duckdb.cache_bytes,
                             block_size=settings.duckdb.block_size,
                             max_object_bytes=settings.max_body_bytes)
    if backend == "postgres":
        from tea.storage.postgres import PostgresStorage
        return PostgresStorage.from_settings(settings)
    if backend == "clickhouse":
        from tea.storage.clickhouse import ClickHouseStorage
        return ClickHouseStorage.from_settings(settings)
    return None


@hookimpl
def storage_backends() -> list[str]:
    return ["memory", "duckdb", "postgres", "clickhouse"]


@hookimpl(tryfirst=True)
def register_routes(services: "Services") -> list[Any]:
    """TEA's own routes: each module's ``routes(...)`` called with the services it names."""
    from tea.alerts import routes as alerts
    from tea.comms import n8n, postgrest, registry_routes, routes as comms
    from tea.ops import admin, dlq, routes as ops, tokens
    from tea.prom import routes as prom
    from tea.query import analytics, export, logs, otel_analytics, otel_metrics, routes as events, traces, usage
    from tea.receive import native, otlp, tea_compat, telemetron, telemetry_kit
    from tea.services import provide
    from tea.ui import routes as ui, stream
    modules = (native, tea_compat, telemetry_kit, telemetron, otlp, events, analytics, export, traces, otel_analytics,
               otel_metrics, logs, usage, prom, stream, comms, registry_routes, n8n, postgrest, alerts, ops, admin, tokens, dlq, ui)
    return [route for module in modules for route in provide(module.routes, services)]


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _allow_list(text: str, key: str, source: str, field: str, message: str, code: str) -> list[Any]:
    allowed = _split(text)
    if allowed:
        return [AllowList(field, allowed, message, code)]
    if source != "default":  # configured (e.g. Telemetron's `allowed = []`), yet empty
        log.warning("%s is set but empty (%s): that allow list allows all", key, source)
    return []


@hookimpl
def register_validators(settings: "Settings") -> list[Any]:
    stages: list[Any] = []
    stages += _allow_list(settings.validation.source_ids, "validation.source_ids",
                          settings.source("validation.source_ids"), "source", "Disallowed source_id: {}",
                          "disallowed_source")
    stages += _allow_list(settings.validation.event_types, "validation.event_types",
                          settings.source("validation.event_types"), "event_type", "Disallowed event type: {}",
                          "disallowed_event_type")
    if settings.validation.schema_dir:
        stages.append(JsonSchemas(settings.validation.schema_dir))
    if settings.pii.redact or settings.pii.hash_user_id:
        keys = _split(settings.pii.keys) if settings.pii.redact else []
        stages.append(PiiRedactor(keys, contains=None if settings.pii.redact else [],
                                  hash_user_id=settings.pii.hash_user_id))
    return stages


@hookimpl
def register_processors(settings: "Settings", storage: Any) -> list[Any]:
    from tea.comms.activity import CommunicationActivity
    from tea.comms.registry import Registry
    processors: list[Any] = [("communication_activity", CommunicationActivity(Registry(storage)))]
    if settings.otlp.analytics:
        from tea.receive.otlp_analytics import OtelAnalytics
        processors.append(("otel_analytics", OtelAnalytics(storage, settings.otlp.hash_ids)))
    return processors
