"""One settings table; ``load()`` resolves flag > environment > tea.toml > default.

Keys are dotted (``buffer.max_bytes``). The environment name is ``TEA_`` + the key upper-cased
with ``.`` → ``__`` (``TEA_BUFFER__MAX_BYTES``); the seed's own names (``TEA_STORAGE_BACKEND``,
``TEA_MAX_EVENTS``, ``TEA_RETENTION_HOURS``, ``TEA_AUTH_VALIDATION``) are the top-level keys.
In ``tea.toml`` a dotted key is a table: ``[buffer] max_bytes = "1GiB"``.
"""
from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from tea.errors import ConfigError
from tea.pipeline.stages import DEFAULT_PII_KEYS

_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
               "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise ValueError


def _parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    return float(value)


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError


def _parse_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE_RE.match(str(value))
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def _parse_hours_map(value: Any) -> dict[str, int]:
    """``{"acme": 48}`` from tea.toml, or ``acme=48,beta=0`` from the environment or a flag."""
    if isinstance(value, str):
        pairs = [part.split("=", 1) for part in value.split(",") if part.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, dict):
        raise ValueError
    out = {str(k): _parse_int(v) for k, v in value.items()}
    if any(v < 0 or not k for k, v in out.items()):
        raise ValueError
    return out


def _parse_json_list(value: Any) -> tuple[dict[str, Any], ...]:
    """A list of tables: ``[[alerts.rules]]`` in tea.toml, or a JSON array of objects in the environment."""
    if isinstance(value, str):
        import json
        value = json.loads(value) if value.strip() else []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, dict) for v in value):
        raise ValueError
    return tuple(dict(v) for v in value)


def _parse_bounds(value: Any) -> tuple[float, ...]:
    """Histogram bounds, ascending and finite: ``1,2.5,5`` or a TOML array."""
    items = [part for part in value.split(",") if part.strip()] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError
    bounds = tuple(_parse_float(v) for v in items)
    if any(not math.isfinite(b) for b in bounds) or list(bounds) != sorted(set(bounds)):
        raise ValueError
    return bounds


def _parse_str(value: Any) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError
    return str(value)


_KINDS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "int": (_parse_int, "a whole number"),
    "float": (_parse_float, "a number"),
    "bool": (_parse_bool, "true or false"),
    "size": (_parse_size, "a size in bytes, e.g. 1048576, 20MiB, 1GiB"),
    "str": (_parse_str, "a string"),
    "path": (_parse_str, "a path"),
    "hours_map": (_parse_hours_map, "tenant=hours pairs, e.g. acme=48,beta=0 (or a TOML table)"),
    "json_list": (_parse_json_list, "a list of tables ([[...]] in tea.toml) or a JSON array of objects"),
    "bounds": (_parse_bounds, "ascending numbers, e.g. 5,10,25 (or a TOML array)"),
}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Setting:
    key: str
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    secret: bool = False
    nullable: bool = False
    aliases: tuple[str, ...] = ()  # extra environment names
    multiple_of: int | None = None  # "int" settings: the value must be a multiple of this

    @property
    def env(self) -> str:
        return "TEA_" + self.key.upper().replace(".", "__")

    def accepted(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        text = _KINDS[self.kind][1]
        if self.minimum is not None and self.maximum is not None:
            text += f" from {_number(self.minimum)} to {_number(self.maximum)}"
        elif self.minimum is not None:
            text += f" >= {_number(self.minimum)}"
        if self.multiple_of is not None:
            text += f", a multiple of {self.multiple_of}"
        return text

    def parse(self, value: Any, where: str) -> Any:
        if self.nullable and (value is None or isinstance(value, str) and value.strip().lower() in ("", "auto")):
            return None
        try:
            parsed = _KINDS[self.kind][0](value)
        except (ValueError, TypeError, OverflowError):
            raise ConfigError(f"invalid {where}={value!r}: expected {self.accepted()}") from None
        if self.choices and parsed not in self.choices:
            raise ConfigError(f"invalid {where}={value!r}: expected {self.accepted()}")
        if self.kind != "hours_map" and (self.minimum is not None and parsed < self.minimum
                                         or self.maximum is not None and parsed > self.maximum
                                         or self.multiple_of is not None and parsed % self.multiple_of):
            raise ConfigError(f"invalid {where}={value!r}: expected {self.accepted()}")
        return parsed


MiB = 1024 * 1024

SETTINGS: tuple[Setting, ...] = (
    Setting("host", "str", "127.0.0.1", "address to listen on"),
    Setting("port", "int", 3001, "HTTP port", minimum=0, maximum=65535),
    Setting("data_dir", "path", "./tea-data", "directory for the durable buffer and the DuckDB file"),
    Setting("config", "path", None, "path of a tea.toml settings file", nullable=True),
    Setting("storage_backend", "str", "duckdb", "where events are stored: memory, duckdb, postgres, clickhouse, "
            "or a backend a plugin provides (checked at start)"),
    Setting("postgres_url", "str", None, "postgres backend: libpq URL, e.g. postgresql://tea:secret@db:5432/tea "
            "(also the seed's ANALYTICS_DATABASE_URL, or ANALYTICS_DB_USER/PASS/HOST/PORT/NAME)", secret=True,
            nullable=True, aliases=("ANALYTICS_DATABASE_URL",)),
    Setting("clickhouse_url", "str", None, "clickhouse backend: clickhouse://user:password@host:9000/database "
            "(the native protocol, the server's tcp_port)", secret=True, nullable=True),
    Setting("max_events", "int", 10000, "memory backend: oldest events are evicted past this count", minimum=1),
    Setting("retention_hours", "int", None,
            "delete events older than this; 0 keeps forever; default 24 for memory, 720 for persistent backends",
            minimum=0, nullable=True),
    Setting("retention_tenant_hours", "hours_map", {},
            "per-tenant retention overriding retention_hours (0 keeps forever); the admin API can override "
            "these too"),
    Setting("retention_interval_s", "float", 300.0, "how often the retention job runs", minimum=1),
    Setting("audit.retention_hours", "int", 2160, "delete audit-log rows older than this (90 days); 0 keeps them "
            "forever", minimum=0),
    Setting("records.retention_hours", "int", 2160, "delete alert history and the registry's transition and "
            "audit records older than this (90 days); 0 keeps them forever", minimum=0),
    Setting("auth_validation", "bool", True, "require credentials; false = development mode (no credentials "
            "needed, tenant from the body)"),
    Setting("default_tenant", "str", "default", "dev mode and admins: tenant of events that name none"),
    Setting("admin_token", "str", None, "a bearer credential with the admin scope, to bootstrap a deployment",
            nullable=True, secret=True),
    Setting("secret_key", "str", None, "at least 32 characters, the same on every node: derives the key that seals "
            "token signing secrets; default: a key file <data_dir>/secret.key made on first start",
            nullable=True, secret=True),
    Setting("redis_url", "str", None, "Redis for replay nonces and rate limits shared between nodes; "
            "default: kept in this process", nullable=True, secret=True),
    Setting("auth.jwt_secret", "str", None, "HS256 secret for JWT bearer tokens", nullable=True, secret=True),
    Setting("auth.jwks_url", "str", None, "JWKS URL of the OIDC issuer (RS256/ES256/EdDSA keys)", nullable=True),
    Setting("auth.jwks_file", "path", None, "JWKS file with the issuer's public keys", nullable=True),
    Setting("auth.jwks_refresh_min_s", "float", 10.0, "an unknown kid refetches the JWKS at most this often",
            minimum=0),
    Setting("auth.jwks_timeout_s", "float", 5.0, "JWKS fetch timeout", minimum=0.1),
    Setting("auth.issuer", "str", None, "required JWT iss", nullable=True),
    Setting("auth.audience", "str", None, "required JWT aud", nullable=True),
    Setting("auth.leeway_s", "float", 60.0, "clock leeway for JWT exp/nbf/iat", minimum=0),
    Setting("auth.tenant_claim", "str", "tenant", "JWT claim naming the tenant (then tenant_id)"),
    Setting("auth.user_claim", "str", "sub", "JWT claim naming the user"),
    Setting("auth.org_claim", "str", "org", "JWT claim naming the organization"),
    Setting("auth.scope_claim", "str", "scope", "JWT claim holding the scopes, space separated or a list (then scp, "
            "scopes)"),
    Setting("auth.algorithms", "str", "HS256,RS256,ES256,EdDSA", "JWT algorithms allowed (never none)"),
    Setting("auth.default_scopes", "str", "events:read events:write", "scopes of a JWT that carries none"),
    Setting("auth.jwt_tier", "str", "enterprise", "rate-limit tier of JWT principals without a tier claim",
            choices=("free", "pro", "business", "enterprise")),
    Setting("auth.require_signature", "bool", False, "API-token requests must be HMAC-signed (X-Signature)"),
    Setting("auth.two_part_signatures", "bool", False,
            "accept '{ts}:{body}' signatures when X-Nonce is absent (telemetry-kit v0.3.0 servers)"),
    Setting("auth.signature_window_s", "float", 600.0, "accepted X-Timestamp skew", minimum=1),
    Setting("auth.nonce_ttl_s", "int", 600, "how long a nonce is remembered", minimum=1),
    Setting("auth.token_cache_s", "float", 30.0, "how long a token lookup is cached (revocation delay between "
            "nodes)", minimum=0),
    Setting("auth.limits_on_state_error", "str", "open", "when Redis is unreachable: open lets requests through, "
            "closed answers 503 (replay checks always fail closed)", choices=("open", "closed")),
    Setting("tier.free.requests_per_minute", "int", 10, "0 = unlimited", minimum=0),
    Setting("tier.free.events_per_minute", "int", 1000, "0 = unlimited", minimum=0),
    Setting("tier.free.events_per_month", "int", 10000, "0 = unlimited", minimum=0),
    Setting("tier.pro.requests_per_minute", "int", 100, "0 = unlimited", minimum=0),
    Setting("tier.pro.events_per_minute", "int", 10000, "0 = unlimited", minimum=0),
    Setting("tier.pro.events_per_month", "int", 100000, "0 = unlimited", minimum=0),
    Setting("tier.business.requests_per_minute", "int", 1000, "0 = unlimited", minimum=0),
    Setting("tier.business.events_per_minute", "int", 100000, "0 = unlimited", minimum=0),
    Setting("tier.business.events_per_month", "int", 1000000, "0 = unlimited", minimum=0),
    Setting("tier.enterprise.requests_per_minute", "int", 0, "0 = unlimited", minimum=0),
    Setting("tier.enterprise.events_per_minute", "int", 0, "0 = unlimited", minimum=0),
    Setting("tier.enterprise.events_per_month", "int", 0, "0 = unlimited", minimum=0),
    Setting("max_body_bytes", "size", 20 * MiB, "largest request body, after decompression", minimum=1024),
    Setting("max_batch_events", "int", 10000, "most events in one request", minimum=1, maximum=50000),
    Setting("max_future_skew_s", "float", 86400.0,
            "reject events stamped further than this in the future; 0 disables the check", minimum=0),
    Setting("validation.source_ids", "str", "", "comma list of allowed sources; empty allows all"),
    Setting("validation.event_types", "str", "", "comma list of allowed event types; empty allows all"),
    Setting("validation.schema_dir", "path", None, "directory of <event_type>.json JSON Schemas the attributes "
            "of that event type must match", nullable=True),
    Setting("pii.redact", "bool", False, "replace sensitive attribute values (pii.keys, and keys containing "
            "password/token/key/secret) with [REDACTED] before storage"),
    Setting("pii.keys", "str", ",".join(DEFAULT_PII_KEYS), "comma list of attribute keys to redact"),
    Setting("pii.hash_user_id", "bool", False, "store user_id as sha256(user_id)[:16] (unless it already is one)"),
    Setting("processing.batch_size", "int", 100, "events per processor batch", minimum=1),
    Setting("processing.batch_timeout_ms", "float", 1000.0, "longest wait to fill a processor batch", minimum=1),
    Setting("processing.retry_attempts", "int", 3, "tries of a failing processor in all before the DLQ, as "
            "Telemetron counts them (3 = the first and two retries; 0 and 1 both mean once)", minimum=0),
    Setting("processing.retry_delay_ms", "float", 1000.0, "pause between processor retries", minimum=0),
    Setting("processing.max_pending_events", "int", 100000, "bound of the processor queue (the writer waits "
            "past it)", minimum=1),
    Setting("otlp.grpc_port", "int", 4317, "OTLP/gRPC port (0 disables)", minimum=0, maximum=65535),
    Setting("otlp.http_port", "int", 4318, "a second port for OTLP/HTTP (0 disables; TEA's port serves "
            "/v1/traces, /v1/logs, /v1/metrics anyway)", minimum=0, maximum=65535),
    Setting("otlp.max_message_bytes", "size", 4 * MiB, "largest OTLP message (gRPC and HTTP)", minimum=1024),
    Setting("otlp.analytics", "bool", True, "route OTLP spans into the seed's user_activity / endpoint_usage / "
            "feature_usage tables (processor otel_analytics)"),
    Setting("otlp.native", "bool", True, "map protobuf trace exports with the native mapper (tea._otlpfast) when "
            "it is built; anything it does not reproduce exactly falls back to the Python mapper"),
    Setting("otlp.hash_ids", "bool", False, "hash user.id / organization.id (sha256[:16]) in those tables unless "
            "they already are such a hash"),
    Setting("genai.price_table", "path", None, "TOML price table (per model, input and output price of 1 000 "
            "tokens) an event's cost is computed from when it names a model and tokens but no cost; default: "
            "<data_dir>/prices.toml, written from the shipped table on first start", nullable=True),
    Setting("telemetry_kit.duplicates", "str", "accept", "an all-duplicate (retried) batch: accept = 200, "
            "reject = upstream's 400", choices=("accept", "reject")),
    Setting("telemetron.tenant", "str", None, "tenant of Telemetron requests that carry no credential (its "
            "clients send none); unset: Telemetron routes need a credential too", nullable=True),
    Setting("alerts.enabled", "bool", True, "run the alert evaluator loop"),
    Setting("alerts.interval_s", "float", 30.0, "how often alert rules are evaluated", minimum=0.01),
    Setting("alerts.default_rules", "bool", True, "ship the seed's four rules (error rate > 5 %, no activity > 1 h, "
            "avg latency > 1000 ms, unhealthy > 10 min)"),
    Setting("alerts.rules", "json_list", (), "extra alert rules for every tenant: [[alerts.rules]] tables in "
            "tea.toml or a JSON array in the environment (same shape as POST /v1/alerts/rules, with an id)"),
    Setting("alerts.webhook_urls", "str", "", "comma list of URLs that receive alert notifications (JSON POST)"),
    Setting("alerts.webhook_secret", "str", None, "HMAC-SHA256 key signing notifications (X-TEA-Signature); "
            "unset: unsigned", nullable=True, secret=True),
    Setting("alerts.webhook_timeout_s", "float", 5.0, "timeout of one webhook request", minimum=0.1),
    Setting("alerts.webhook_retries", "int", 3, "retries of a notification after a connection error, 5xx or 429",
            minimum=0, maximum=10),
    Setting("alerts.webhook_backoff_s", "float", 1.0, "pause before the first retry (doubles each retry, "
            "with jitter, at most 60 s)", minimum=0),
    Setting("alerts.max_pending_notifications", "int", 1000, "bound of the notification queue (oldest dropped "
            "past it)", minimum=1),
    Setting("ui.enabled", "bool", True, "serve the Control Center web UI at /ui"),
    Setting("ui.session_hours", "float", 12.0, "lifetime of a Control Center sign-in (its session cookie)",
            minimum=0.01, maximum=24 * 30),
    Setting("stream.window_bytes", "size", 16 * MiB, "acknowledged events kept in memory for live-tail streams "
            "(GET /v1/events/stream): how far a stream may fall behind, and resume with Last-Event-ID, before it "
            "is dropped", minimum=4096),
    Setting("stream.resume_s", "float", 300.0, "how long the live-tail window keeps recording after the last "
            "stream closed, so that a client reconnecting within it resumes without a gap", minimum=0),
    Setting("stream.max_per_tenant", "int", 8, "concurrent live-tail streams per tenant (429 past it; an admin's "
            "stream over every tenant counts as one tenant)", minimum=1),
    Setting("stream.max_events_per_s", "float", 2000.0, "most events per second one live-tail stream is sent; "
            "a stream that more match for longer than the window lasts is dropped (narrow its filters, or read "
            "in bulk from /v1/export)", minimum=1),
    Setting("stream.heartbeat_s", "float", 15.0, "a live-tail stream with nothing to send sends a comment this "
            "often (keeps proxies from closing it)", minimum=0.1),
    Setting("stream.stall_timeout_s", "float", 30.0, "a live-tail stream whose client accepts no bytes for this "
            "long is closed", minimum=0.1),
    Setting("prometheus.duration_buckets_ms", "bounds", (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000,
                                                         10000, 30000, 60000),
            "upper bounds (ms) of the le buckets of tea_request_duration_ms_bucket in the Prometheus API "
            "(+Inf is added)"),
    Setting("log_level", "str", "info", "logging level", choices=("debug", "info", "warning", "error")),
    Setting("log_format", "str", "text", "log line format", choices=("text", "json")),
    Setting("access_log", "bool", False, "log every HTTP request"),
    Setting("shutdown_timeout_s", "float", 30.0, "time budget to drain the buffer on shutdown", minimum=0),
    Setting("gc_threshold", "int", 50000, "Python's generation-0 garbage-collection threshold the server sets "
            "once started, freezing what start-up built (gc.freeze); 0 leaves Python's defaults (700)", minimum=0),
    Setting("buffer.max_bytes", "size", 1024 * MiB,
            "bound of the durable buffer backlog; ingestion answers 503 past it", minimum=4096),
    Setting("buffer.segment_bytes", "size", 64 * MiB, "size at which a buffer segment file is sealed",
            minimum=4096),
    Setting("buffer.ack", "str", "durable", "durable: acknowledge after fsync; memory: before (loss window)",
            choices=("durable", "memory")),
    Setting("buffer.fsync_interval_ms", "float", 200.0, "buffer.ack=memory: how often the buffer is fsynced",
            minimum=1),
    Setting("buffer.recent_bytes", "size", 256 * MiB, "durable records also kept in memory for the writer "
            "(read back from disk past it); 0 = always read from disk", minimum=0),
    Setting("writer.batch_events", "int", 200000, "most events per storage write", minimum=1),
    Setting("writer.flush_interval_ms", "float", 1000.0, "longest wait before a partial batch is written "
            "(how long a just-acknowledged event may take to become queryable under light load)",
            minimum=0),
    Setting("writer.max_backoff_s", "float", 30.0, "longest pause between storage retries", minimum=0.01),
    Setting("storage.dedup_window_s", "float", 3600.0,
            "an event is a duplicate when a stored event has its (tenant_id, event_id) and a timestamp "
            "within this window", minimum=0),
    Setting("duckdb.path", "path", None, "DuckDB file; default <data_dir>/tea.duckdb", nullable=True),
    Setting("duckdb.threads", "int", None, "DuckDB worker threads; default: all cores", minimum=1, nullable=True),
    Setting("duckdb.memory_limit", "str", None, "DuckDB memory limit, e.g. 2GB; default: DuckDB's", nullable=True),
    Setting("duckdb.checkpoint_threshold", "str", "256MB",
            "WAL size at which DuckDB checkpoints into the file (DuckDB's own default, 16MB, rewrites the "
            "tables' last row groups so often that writes cost 1.5x more CPU at a few million rows)"),
    Setting("duckdb.row_group_size", "int", 16384,
            "rows per DuckDB row group: a write that fills whole row groups of a partition goes straight into "
            "the file, compressed once, instead of through the WAL and a later checkpoint (122880 = DuckDB's own)",
            minimum=2048, maximum=1048576, multiple_of=2048),
    Setting("postgres.auto_migrate", "bool", True, "postgres backend: apply the schema migrations at start; "
            "false: refuse to start on an old schema (run `tea migrate` first)"),
    Setting("postgres.pool_max", "int", 10, "postgres backend: most connections in the pool", minimum=1),
    Setting("clickhouse.final_reads", "bool", False, "clickhouse backend: read events with FINAL, exact even when "
            "two nodes wrote the same event at the same instant (costs some read speed)"),
    Setting("clickhouse.readers", "int", 4, "clickhouse backend: reader threads (one connection each)", minimum=1),
    Setting("clickhouse.timeout_s", "float", 30.0, "clickhouse backend: send/receive timeout of a query", minimum=0.1),
)

_BY_KEY = {s.key: s for s in SETTINGS}
_MASK = "********"


class Section:
    """Attribute access to the settings under one dotted prefix."""

    def __init__(self, values: Mapping[str, Any], prefix: str) -> None:
        self._values = values
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        key = self._prefix + name
        if key in self._values:
            return self._values[key]
        if any(k.startswith(key + ".") for k in self._values):
            section = Section(self._values, key + ".")
            object.__setattr__(self, name, section)  # found once: later reads are plain attribute hits
            return section
        raise AttributeError(f"no setting {key!r}")


class Settings(Section):
    """The effective settings: ``settings.buffer.max_bytes``, ``settings.source("port")``."""

    def __init__(self, values: Mapping[str, Any], sources: Mapping[str, str],
                 table: Iterable[Setting] = SETTINGS) -> None:
        super().__init__(dict(values), "")
        self.warnings: list[str] = []  # e.g. Telemetron settings TEA does not take over
        self._sources = dict(sources)
        self._table = {s.key: s for s in table}

    def get(self, key: str) -> Any:
        return self._values[key]

    def source(self, key: str) -> str:
        return self._sources.get(key, "default")

    def replace(self, **changes: Any) -> "Settings":
        values = dict(self._values)
        for key, value in changes.items():
            values[key.replace("__", ".")] = value
        out = Settings(values, self._sources, self._table.values())
        out.warnings = list(self.warnings)
        return out

    @property
    def retention_hours_effective(self) -> int:
        if self._values["retention_hours"] is not None:
            return self._values["retention_hours"]
        return 24 if self._values["storage_backend"] == "memory" else 720

    def effective(self, masked: bool = True) -> list[tuple[str, Any, str]]:
        """(key, value, source) rows, secrets masked."""
        rows = []
        for key, setting in self._table.items():
            value = self._values.get(key)
            if key == "retention_hours" and value is None:
                value = self.retention_hours_effective
            if masked and value not in (None, "") and (setting.secret or _looks_secret(key)):
                value = mask(value)
            rows.append((key, value, self.source(key)))
        return rows


def _looks_secret(key: str) -> bool:
    last = key.rsplit(".", 1)[-1]
    return any(last == word or last.endswith("_" + word) for word in ("secret", "password", "token", "key"))


def mask(value: Any) -> str:
    """Mask a secret; for URLs only the password is hidden so the target stays visible."""
    text = str(value)
    match = re.match(r"^([a-z][a-z0-9+.-]*://[^:/@]*:)([^@]*)(@.*)$", text)
    if match:
        return match.group(1) + _MASK + match.group(3)
    return _MASK


_MAP_KEYS = {s.key for s in SETTINGS if s.kind == "hours_map"}


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in table.items():
        key = prefix + name
        if isinstance(value, dict) and key not in _MAP_KEYS:
            out.update(_flatten(value, key + "."))
        else:
            out[key] = value
    return out


def read_toml(path: str | os.PathLike[str], warnings: list[str] | None = None) -> dict[str, Any]:
    """The file's settings, flattened; a Telemetron config.toml is translated (see compat_config)."""
    from tea import compat_config

    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        if compat_config.is_telemetron(raw):
            values, notes = compat_config.translate(raw)
            if warnings is not None:
                warnings.extend(notes)
            return values
        return _flatten(raw)
    except FileNotFoundError:
        raise ConfigError(f"invalid config file {os.fspath(path)!r}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid config file {os.fspath(path)!r}: {exc}") from None


def load(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
         table: Iterable[Setting] = SETTINGS) -> Settings:
    """Resolve every setting: flag > environment > tea.toml > default. Raises ConfigError."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = os.environ if env is None else env
    env = _with_analytics_db_url(env)
    by_key = {s.key: s for s in table}
    env_names: dict[str, Setting] = {}
    for setting in by_key.values():
        for name in (setting.env, *setting.aliases):
            env_names[name] = setting

    from tea.compat_config import translate_env

    config_path = flags.get("config") or env.get("TEA_CONFIG")
    warnings: list[str] = []
    file_values = read_toml(config_path, warnings) if config_path else {}
    env_values, env_notes = translate_env(env)
    file_values.update(env_values)  # TELEMETRON_* overrides: above the file, below TEA_*
    warnings.extend(env_notes)
    for key in file_values:
        if key not in by_key:
            raise ConfigError(f"invalid config file {config_path!r}: unknown setting {key!r}")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, setting in by_key.items():
        if key in flags:
            flag = "--" + key.replace("_", "-").replace(".", "-")
            values[key], sources[key] = setting.parse(flags[key], flag), "flag " + flag
            continue
        env_hit = next((n for n in (setting.env, *setting.aliases) if n in env), None)
        if env_hit is not None:
            values[key], sources[key] = setting.parse(env[env_hit], env_hit), "env " + env_hit
        elif key in file_values:
            values[key], sources[key] = setting.parse(file_values[key], key), "file " + str(config_path)
        else:
            values[key] = setting.default
    settings = Settings(values, sources, by_key.values())
    settings.warnings = warnings
    return settings


def _with_analytics_db_url(env: Mapping[str, str]) -> Mapping[str, str]:
    """The seed's ANALYTICS_DB_{USER,PASS,HOST,PORT,NAME} (with its defaults) as ANALYTICS_DATABASE_URL,
    when some of them are set and no URL is."""
    parts = ("ANALYTICS_DB_USER", "ANALYTICS_DB_PASS", "ANALYTICS_DB_HOST", "ANALYTICS_DB_PORT", "ANALYTICS_DB_NAME")
    if not any(name in env for name in parts) or "ANALYTICS_DATABASE_URL" in env or "TEA_POSTGRES_URL" in env:
        return env
    from urllib.parse import quote
    user = quote(env.get("ANALYTICS_DB_USER", "analytics-user"), safe="")
    password = quote(env.get("ANALYTICS_DB_PASS", "analytics-password"), safe="")
    url = (f"postgresql://{user}:{password}@{env.get('ANALYTICS_DB_HOST', 'postgres-analytics')}:"
           f"{env.get('ANALYTICS_DB_PORT', '5432')}/{env.get('ANALYTICS_DB_NAME', 'rhesis-analytics')}")
    return {**env, "ANALYTICS_DATABASE_URL": url}


def unknown_env(env: Mapping[str, str] | None = None, table: Iterable[Setting] = SETTINGS) -> list[str]:
    """TEA_* environment variables that name no setting (likely typos)."""
    env = os.environ if env is None else env
    known = {"TEA_CONFIG", "TEA_REQUIRE_SERVICES"}
    for setting in table:
        known.update((setting.env, *setting.aliases))
    return sorted(n for n in env if n.startswith("TEA_") and n not in known)


def data_path(settings: Settings, *parts: str) -> Path:
    return Path(settings.data_dir).joinpath(*parts)

