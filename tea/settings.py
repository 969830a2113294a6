"""TEA's settings, declared once; ``load()`` resolves flag > environment > tea.toml > default.

Each setting is a typed field below (``settings.buffer.max_bytes: int``) whose ``doc(...)`` annotation
carries its help, bounds, secrecy and the seeds' names; ``SETTINGS`` (the table ``tea config``, the
CLI's flags, docs/configuration.md and the error messages come from) is derived from these classes.
Keys are dotted (``buffer.max_bytes``); the environment name is ``TEA_`` + the key upper-cased with
``.`` → ``__`` (``TEA_BUFFER__MAX_BYTES``), the seed's own names (``TEA_STORAGE_BACKEND``,
``TEA_MAX_EVENTS``, ``TEA_RETENTION_HOURS``, ``TEA_AUTH_VALIDATION``) being the top-level keys.
In ``tea.toml`` a dotted key is a table: ``[buffer] max_bytes = "1GiB"``.
"""
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Mapping

import msgspec

from tea.errors import ConfigError
from tea.pii import DEFAULT_PII_KEYS
from tea.settings_schema import (MiB, Bounds, FilePath, HoursMap, Section, Setting, Size, Tables, build, doc, mask,
                                 replace, table)

__all__ = ["SETTINGS", "OTHER_ENV", "Setting", "Settings", "load", "mask", "unknown_env", "data_path", "read_toml"]

_UNLIMITED = "; 0 = unlimited"


class AuditSettings(Section, frozen=True):
    retention_hours: Annotated[int, doc("delete audit-log rows older than this (90 days); 0 keeps them forever",
                                        ge=0)] = 2160


class RecordsSettings(Section, frozen=True):
    retention_hours: Annotated[int, doc("delete alert history and the registry's transition and audit records "
                                        "older than this (90 days); 0 keeps them forever", ge=0)] = 2160


class AuthSettings(Section, frozen=True):
    jwt_secret: Annotated[str, doc("HS256 secret for JWT bearer tokens", secret=True)] | None = None
    jwks_url: Annotated[str, doc("JWKS URL of the OIDC issuer (RS256/ES256/EdDSA keys)")] | None = None
    jwks_file: Annotated[FilePath, doc("JWKS file with the issuer's public keys")] | None = None
    jwks_refresh_min_s: Annotated[float, doc("an unknown kid refetches the JWKS at most this often", ge=0)] = 10.0
    jwks_timeout_s: Annotated[float, doc("JWKS fetch timeout", ge=0.1)] = 5.0
    issuer: Annotated[str, doc("required JWT iss")] | None = None
    audience: Annotated[str, doc("required JWT aud")] | None = None
    leeway_s: Annotated[float, doc("clock leeway for JWT exp/nbf/iat", ge=0)] = 60.0
    tenant_claim: Annotated[str, doc("JWT claim naming the tenant (then tenant_id)")] = "tenant"
    user_claim: Annotated[str, doc("JWT claim naming the user")] = "sub"
    org_claim: Annotated[str, doc("JWT claim naming the organization")] = "org"
    scope_claim: Annotated[str, doc("JWT claim holding the scopes, space separated or a list (then scp, "
                                    "scopes)")] = "scope"
    algorithms: Annotated[str, doc("JWT algorithms allowed, comma separated (never none)")] = "HS256,RS256,ES256,EdDSA"
    default_scopes: Annotated[str, doc("scopes of a JWT that carries none")] = "events:read events:write"
    jwt_tier: Annotated[Literal["free", "pro", "business", "enterprise"],
                        doc("rate-limit tier of JWT principals without a tier claim")] = "enterprise"
    require_signature: Annotated[bool, doc("API-token requests must be HMAC-signed (X-Signature)")] = False
    two_part_signatures: Annotated[bool, doc("accept '{ts}:{body}' signatures when X-Nonce is absent "
                                             "(telemetry-kit v0.3.0 servers)")] = False
    signature_window_s: Annotated[float, doc("accepted X-Timestamp skew", ge=1)] = 600.0
    nonce_ttl_s: Annotated[int, doc("how long a nonce is remembered", ge=1)] = 600
    token_cache_s: Annotated[float, doc("how long a token lookup is cached (revocation delay between nodes)",
                                        ge=0)] = 30.0
    limits_on_state_error: Annotated[Literal["open", "closed"],
                                     doc("when Redis is unreachable: open lets requests through, closed answers "
                                         "503 (replay checks always fail closed)")] = "open"


class TierQuota(Section, frozen=True):
    """One tier's limits; the defaults differ per tier (``TierSettings``)."""
    requests_per_minute: Annotated[int, doc("requests per minute of one token (one tenant for JWTs)" + _UNLIMITED,
                                            ge=0)]
    events_per_minute: Annotated[int, doc("events per minute of one token (one tenant for JWTs)" + _UNLIMITED,
                                          ge=0)]
    events_per_month: Annotated[int, doc("events per calendar month of one token (one tenant for JWTs)"
                                         + _UNLIMITED, ge=0)]


class TierSettings(Section, frozen=True):
    free: TierQuota = TierQuota(requests_per_minute=10, events_per_minute=1000, events_per_month=10000)
    pro: TierQuota = TierQuota(requests_per_minute=100, events_per_minute=10000, events_per_month=100000)
    business: TierQuota = TierQuota(requests_per_minute=1000, events_per_minute=100000, events_per_month=1000000)
    enterprise: TierQuota = TierQuota(requests_per_minute=0, events_per_minute=0, events_per_month=0)

    def items(self) -> list[tuple[str, TierQuota]]:
        """(tier name, its limits), every tier."""
        return [(name, getattr(self, name)) for name in self.__struct_fields__]


class ValidationSettings(Section, frozen=True):
    source_ids: Annotated[str, doc("comma list of allowed sources; empty allows all")] = ""
    event_types: Annotated[str, doc("comma list of allowed event types; empty allows all")] = ""
    schema_dir: Annotated[FilePath, doc("directory of <event_type>.json JSON Schemas the attributes of that "
                                        "event type must match")] | None = None


class PiiSettings(Section, frozen=True):
    redact: Annotated[bool, doc("replace sensitive attribute values (pii.keys, and keys containing "
                                "password/token/key/secret) with [REDACTED] before storage")] = False
    keys: Annotated[str, doc("comma list of attribute keys to redact")] = ",".join(DEFAULT_PII_KEYS)
    hash_user_id: Annotated[bool, doc("store user_id as sha256(user_id)[:16] (unless it already is one)")] = False


class ProcessingSettings(Section, frozen=True):
    batch_size: Annotated[int, doc("events per processor batch", ge=1, telemetron="processor.batch_size")] = 100
    batch_timeout_ms: Annotated[float, doc("longest wait to fill a processor batch", ge=1,
                                           telemetron="processor.batch_timeout")] = 1000.0
    retry_attempts: Annotated[int, doc("tries of a failing processor in all before the DLQ, as Telemetron counts "
                                       "them (3 = the first and two retries; 0 and 1 both mean once)", ge=0,
                                       telemetron="processor.retry_attempts")] = 3
    retry_delay_ms: Annotated[float, doc("pause between processor retries", ge=0,
                                         telemetron="processor.retry_delay")] = 1000.0
    max_pending_events: Annotated[int, doc("most events a processor reads from the buffer and holds at a time (it "
                                           "never holds the writer back)", ge=1,
                                           telemetron="processor.channel_capacity")] = 100000


class OtlpSettings(Section, frozen=True):
    grpc_port: Annotated[int, doc("OTLP/gRPC port (0 disables)", ge=0, le=65535, flag=True)] = 4317
    http_port: Annotated[int, doc("a second port for OTLP/HTTP (0 disables; TEA's port serves /v1/traces, "
                                  "/v1/logs, /v1/metrics anyway)", ge=0, le=65535, flag=True)] = 4318
    max_message_bytes: Annotated[Size, doc("largest OTLP message, gRPC and HTTP (after decompression)",
                                           ge=1024)] = 4 * MiB
    analytics: Annotated[bool, doc("route OTLP spans into the seed's user_activity / endpoint_usage / "
                                   "feature_usage tables (processor otel_analytics)")] = True
    native: Annotated[bool, doc("map OTLP protobuf trace exports with the native mapper (tea._otlpfast, built by "
                                "pip install when a C compiler is present); anything it does not reproduce byte "
                                "for byte falls back to the Python mapper")] = True
    hash_ids: Annotated[bool, doc("store user.id / organization.id in those tables as sha256(id)[:16] unless they "
                                  "already are 16 hex characters")] = False
    grpc_max_connections: Annotated[int, doc(
        "most OTLP/gRPC connections (more are closed at once); default (or auto): a quarter of the open-file limit "
        "left after fd_reserve, at most 2500", ge=1)] | None = None
    grpc_max_concurrent_streams: Annotated[int, doc("most calls in flight on one OTLP/gRPC connection", ge=1)] = 100
    grpc_idle_timeout_s: Annotated[float, doc("an OTLP/gRPC connection without a call for this long is closed "
                                              "(GOAWAY: exporters reconnect when they next send)", ge=1)] = 300.0


class HttpSettings(Section, frozen=True):
    """The HTTP edge of both HTTP ports (tea/http/edge.py); the header bounds apply to OTLP/gRPC too."""
    max_header_bytes: Annotated[Size, doc(
        "largest request header section (request line and headers): 431 and the connection closed past it, "
        "never buffered whole; also the most metadata one OTLP/gRPC call may carry", ge=1024, le=16 * MiB)] = 65536
    header_timeout_s: Annotated[float, doc(
        "a request's header section must arrive within this of the connect (on a kept-alive connection: of the "
        "end of the previous response): 408 and closed past it (a connection that sent nothing is closed without "
        "an answer); also OTLP/gRPC's connection handshake deadline", ge=0.01)] = 10.0
    body_timeout_s: Annotated[float, doc("longest pause while a request body arrives: 408 and closed past it",
                                         ge=0.01)] = 30.0
    body_total_timeout_s: Annotated[float, doc("a request body must arrive in full within this from the end of "
                                               "its headers: 408 and closed past it", ge=0.01)] = 300.0
    max_connections: Annotated[int, doc(
        "most open HTTP connections, both HTTP ports together; past it the oldest connection that is idle or "
        "still sending its headers is closed for the newcomer, or, when every one is busy with a request, the "
        "newcomer is answered 503 with Retry-After; default (or auto): three quarters of the open-file limit left "
        "after fd_reserve, at most 10000", ge=1)] | None = None


class GenaiSettings(Section, frozen=True):
    price_table: Annotated[FilePath, doc(
        "TOML price table (per model, the price of 1 000 input and of 1 000 output tokens) an event's cost is "
        "computed from when it names a model and tokens but no cost; default: <data_dir>/prices.toml, written from "
        "the shipped table on first start")] | None = None


class PrometheusSettings(Section, frozen=True):
    duration_buckets_ms: Annotated[Bounds, doc(
        "upper bounds (ms) of the le buckets of tea_request_duration_ms_bucket in the Prometheus API, ascending "
        "(+Inf is added)")] = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
                               10000.0, 30000.0, 60000.0)


Signal = Literal["events", "spans", "metric_points", "log_records"]


class UsageSettings(Section, frozen=True):
    billable: Annotated[tuple[Signal, ...], doc(
        "the signals GET /v1/usage counts as billable: a comma list of events, spans, metric_points, "
        "log_records"), msgspec.Meta(extra={"kind": "words"})] = ("events", "spans")


class TelemetryKitSettings(Section, frozen=True):
    duplicates: Annotated[Literal["accept", "reject"],
                          doc("an all-duplicate (retried) batch: accept = 200, reject = upstream's 400")] = "accept"


class TelemetronSettings(Section, frozen=True):
    tenant: Annotated[str, doc("tenant of Telemetron requests that carry no credential (its clients send none); "
                               "unset: Telemetron routes need a credential too")] | None = None


class AlertsSettings(Section, frozen=True):
    enabled: Annotated[bool, doc("run the alert evaluator loop")] = True
    interval_s: Annotated[float, doc("how often alert rules are evaluated", ge=0.01)] = 30.0
    default_rules: Annotated[bool, doc("ship the seed's four rules (error rate > 5 %, no activity > 1 h, avg "
                                       "latency > 1000 ms, unhealthy > 10 min)")] = True
    rules: Annotated[Tables, doc("extra alert rules for every tenant: [[alerts.rules]] tables in tea.toml or a "
                                 "JSON array in the environment (the POST /v1/alerts/rules shape, with an id)")] = ()
    webhook_urls: Annotated[str, doc("comma list of URLs that receive alert notifications (JSON POST)")] = ""
    webhook_secret: Annotated[str, doc("HMAC-SHA256 key signing notifications (X-TEA-Signature); unset: unsigned",
                                       secret=True)] | None = None
    webhook_timeout_s: Annotated[float, doc("timeout of one webhook request", ge=0.1)] = 5.0
    webhook_retries: Annotated[int, doc("retries of a notification after a connection error, timeout, 5xx or 429",
                                        ge=0, le=10)] = 3
    webhook_backoff_s: Annotated[float, doc("pause before the first retry (doubles each retry, with jitter, at "
                                            "most 60 s)", ge=0)] = 1.0
    max_pending_notifications: Annotated[int, doc("bound of the notification queue (the oldest is dropped past it)",
                                                  ge=1)] = 1000


class UiSettings(Section, frozen=True):
    enabled: Annotated[bool, doc("serve the Control Center web UI at /ui")] = True
    session_hours: Annotated[float, doc("lifetime of a Control Center sign-in (its session cookie)", ge=0.01,
                                        le=24 * 30)] = 12.0


class StreamSettings(Section, frozen=True):
    window_bytes: Annotated[Size, doc("acknowledged events kept in memory for live-tail streams "
                                      "(GET /v1/events/stream): how far a stream may fall behind, and resume with "
                                      "Last-Event-ID, before it is dropped", ge=4096)] = 16 * MiB
    resume_s: Annotated[float, doc("how long the live-tail window keeps recording after the last stream closed, so "
                                   "that a client reconnecting within it resumes without a gap", ge=0)] = 300.0
    max_per_tenant: Annotated[int, doc("concurrent live-tail streams per tenant (429 past it; an admin's stream "
                                       "over every tenant counts as one tenant)", ge=1)] = 8
    max_events_per_s: Annotated[float, doc("most events per second one live-tail stream is sent; a stream that more "
                                           "match for longer than the window lasts is dropped (narrow its filters, "
                                           "or read in bulk from /v1/export)", ge=1)] = 2000.0
    heartbeat_s: Annotated[float, doc("a live-tail stream with nothing to send sends a comment this often (keeps "
                                      "proxies from closing it)", ge=0.1)] = 15.0
    stall_timeout_s: Annotated[float, doc("a live-tail stream whose client accepts no bytes for this long is closed",
                                          ge=0.1)] = 30.0


class BufferSettings(Section, frozen=True):
    max_bytes: Annotated[Size, doc("bound of the durable buffer's backlog not yet in storage or not yet read by a "
                                   "processor (the slowest consumer counts); ingestion answers 503 past it",
                                   ge=4096)] = 1024 * MiB
    segment_bytes: Annotated[Size, doc("size at which a buffer segment file is sealed", ge=4096)] = 64 * MiB
    ack: Annotated[Literal["durable", "memory"],
                   doc("durable: acknowledge after fsync; memory: before (a loss window)")] = "durable"
    fsync_interval_ms: Annotated[float, doc("with buffer.ack=memory: how often the buffer is fsynced", ge=1)] = 200.0
    recent_bytes: Annotated[Size, doc("the newest durable records are also kept in memory, so the writer and the "
                                      "processors need not read them back from disk while their backlog is within it "
                                      "(the default: buffer.max_bytes' default, the whole backlog); past it, and after "
                                      "a restart, they read and checksum the segment files, ~2 us more CPU a span "
                                      "(counted in tea_buffer_disk_read_records_total); 0 = always from disk",
                                      ge=0)] = 1024 * MiB


class WriterSettings(Section, frozen=True):
    batch_events: Annotated[int, doc("most events per storage write", ge=1)] = 200000
    flush_interval_ms: Annotated[float, doc("longest wait before a partial batch is written (a read-your-writes "
                                            "read has what it needs written at once): under light load an "
                                            "acknowledged event reaches storage within about this long; every "
                                            "storage write has a fixed cost, so shorter intervals cost ingestion "
                                            "throughput", ge=0)] = 1000.0
    max_backoff_s: Annotated[float, doc("longest pause between storage retries", ge=0.01)] = 30.0


class ReadsSettings(Section, frozen=True):
    consistency: Annotated[Literal["read_your_writes", "eventual"], doc(
        "read_your_writes: a read sees every event this node acknowledged before it arrived (what is not yet "
        "stored is written at once, and the read waits for it, at most reads.max_wait_ms); eventual: a read "
        "answers with what storage holds (up to writer.flush_interval_ms behind). A request overrides it with "
        "the header TEA-Consistency: read_your_writes | eventual")] = "read_your_writes"
    max_wait_ms: Annotated[float, doc("longest a read waits for acknowledged events to reach storage (and the "
                                      "processors, for derived data); past it the read answers with what is "
                                      "stored and the response header TEA-Consistency: stale", ge=0)] = 2000.0


class StorageSettings(Section, frozen=True):
    dedup_window_s: Annotated[float, doc("an event stamped on arrival (sent without a timestamp) is a duplicate when a "
                                         "stored event has its (tenant_id, event_id) and a timestamp within this "
                                         "window of its own (with storage.dedup_match=window: every event)",
                                         ge=0)] = 3600.0
    dedup_match: Annotated[Literal["same_time", "window"], doc(
        "same_time: an event sent with its own timestamp is a duplicate when a stored event has its (tenant_id, "
        "event_id) and that timestamp (a retry, a resend and a replay repeat an event as it was), and each write "
        "checks only the stored events of its own times; window: also when their timestamps are within "
        "storage.dedup_window_s, and each write checks every stored event of the window (its cost grows with "
        "the ingestion rate times the window: see docs/performance.md)")] = "same_time"
    read_timeout_s: Annotated[float, doc(
        "postgres and clickhouse backends: a read waits this long for a server that stopped answering (refused "
        "connections fail at once), then answers 503 with Retry-After; a slow query on a server that still answers "
        "the probe (storage.probe_timeout_s) is not cut short", ge=0.1)] = 2.0
    probe_timeout_s: Annotated[float, doc(
        "postgres and clickhouse backends: how long the probe (SELECT 1 on a connection of its own) that /health "
        "and waiting reads share may take before the server counts as not answering; at most half of "
        "storage.read_timeout_s", ge=0.05)] = 1.0

    @property
    def dedup_window_us(self) -> int:
        return int(self.dedup_window_s * 1e6)

    @property
    def dedup_same_time(self) -> bool:
        """``dedup_match = same_time`` (each backend's ``dedup_same_time``: tea.storage.dedup)."""
        return self.dedup_match == "same_time"


class DuckdbSettings(Section, frozen=True):
    path: Annotated[FilePath, doc("DuckDB file; default <data_dir>/tea.duckdb")] | None = None
    threads: Annotated[int, doc("DuckDB worker threads; default (or auto): all cores", ge=1)] | None = None
    memory_limit: Annotated[str, doc(
        "DuckDB memory limit (its cache of table blocks included), e.g. 2GB; default: an eighth of the memory TEA "
        "may use (RAM, or the container's limit), at least 256MiB and at most 1GiB (DuckDB's own default, 80 % of "
        "RAM, lets the cache grow with the data)")] | None = None
    cache_bytes: Annotated[Size, doc(
        "DuckDB's cache of table blocks is trimmed back to this after writes (every 2 s at most) and while an export "
        "runs: DuckDB keeps every block it reads or writes until its memory limit, so under a steady load the "
        "server's RSS would grow up to the limit", ge=0)] = 64 * MiB
    checkpoint_threshold: Annotated[str, doc(
        "WAL size at which DuckDB checkpoints into the file (DuckDB's own 16MB rewrites the tables' last row "
        "groups so often that writes cost about 1.5x more CPU at a few million rows; bench/OTLP.md)")] = "256MB"
    row_group_size: Annotated[int, doc(
        "rows per DuckDB row group: a write that fills whole row groups of a tenant partition goes straight into "
        "the file, compressed once, instead of through the WAL and a later checkpoint; smaller than DuckDB's own "
        "122880 (which restores DuckDB's behaviour) for faster OTLP writes at the price of a larger file; applies "
        "to rows written from then on", ge=2048, le=1048576, multiple_of=2048)] = 16384
    block_size: Annotated[int, doc(
        "bytes per block of a DuckDB file TEA creates (a file keeps the block size it was made with), a power of "
        "two: a row group's segment of a column of unique strings (ids) takes a block of its own, so 131072 makes "
        "the metrics data set's file 18 % smaller than DuckDB's own 262144, at the price of slower lookups by id, "
        "pages and span writes (docs/performance.md, \"Disk\")", ge=16384, le=262144)] = 262144


class PostgresSettings(Section, frozen=True):
    auto_migrate: Annotated[bool, doc("postgres backend: apply the schema migrations at start; false: refuse to "
                                      "start on an old schema (run `tea migrate` first)")] = True
    pool_max: Annotated[int, doc("postgres backend: most connections in the pool", ge=1)] = 10


class ClickhouseSettings(Section, frozen=True):
    final_reads: Annotated[bool, doc("clickhouse backend: read events with FINAL, exact even when two nodes wrote "
                                     "the same event at the same instant (costs some read speed)")] = False
    readers: Annotated[int, doc("clickhouse backend: reader threads (one connection each)", ge=1)] = 4
    timeout_s: Annotated[float, doc("clickhouse backend: send/receive timeout of a query", ge=0.1)] = 30.0
    insert_block_rows: Annotated[int, doc("clickhouse backend: rows per block an insert is sent in (the client's "
                                          "buffer for one block)", ge=1024)] = 65536


class Settings(Section, frozen=True):
    """The effective settings: ``settings.buffer.max_bytes``, ``settings.source("port")``."""

    _state_fields: ClassVar[tuple[str, ...]] = ("sources", "warnings")

    host: Annotated[str, doc("address to listen on", telemetron="http.host", flag=True)] = "127.0.0.1"
    port: Annotated[int, doc("HTTP port", ge=0, le=65535, telemetron="http.port", flag=True)] = 3001
    data_dir: Annotated[FilePath, doc("directory for the durable buffer and the DuckDB file", flag=True)] = \
        "./tea-data"
    config: Annotated[FilePath, doc("path of a tea.toml settings file", flag=True)] | None = None
    storage_backend: Annotated[str, doc("where events are stored: memory, duckdb, postgres, clickhouse, or a "
                                        "backend a plugin provides (checked at start)", flag=True)] = "duckdb"
    postgres_url: Annotated[str, doc(
        "postgres backend: a libpq URL, e.g. postgresql://tea:secret@db:5432/tea (or the seed's "
        "ANALYTICS_DB_USER/PASS/HOST/PORT/NAME)", secret=True, env=("ANALYTICS_DATABASE_URL",))] | None = None
    clickhouse_url: Annotated[str, doc("clickhouse backend: clickhouse://user:password@host:9000/database (the "
                                       "native protocol, the server's tcp_port)", secret=True)] | None = None
    max_events: Annotated[int, doc("memory backend: oldest events are evicted past this count", ge=1)] = 10000
    retention_hours: Annotated[int, doc("delete events older than this; 0 keeps forever; default 24 for memory, "
                                        "720 for persistent backends", ge=0)] | None = None
    retention_tenant_hours: Annotated[HoursMap, doc(
        "per-tenant retention overriding retention_hours (0 keeps forever): acme=48,beta=0 in the environment, "
        "a table in tea.toml; PUT /v1/retention/{tenant} overrides these")] = {}
    retention_interval_s: Annotated[float, doc("how often the retention job runs", ge=1)] = 300.0
    audit: AuditSettings = AuditSettings()
    records: RecordsSettings = RecordsSettings()
    auth_validation: Annotated[bool, doc("require credentials; false = development mode (no credentials needed, "
                                         "tenant from the body, a loud warning at start and hourly)")] = True
    default_tenant: Annotated[str, doc("dev mode and admins: tenant of events that name none")] = "default"
    admin_token: Annotated[str, doc("a bearer credential with the admin scope, to bootstrap a deployment",
                                    secret=True)] | None = None
    secret_key: Annotated[str, doc("at least 32 characters, the same on every node: derives the key that seals "
                                   "token signing secrets; default: a key file <data_dir>/secret.key made on first "
                                   "start", secret=True)] | None = None
    redis_url: Annotated[str, doc("Redis for replay nonces and rate limits shared between nodes; default: kept in "
                                  "this process", secret=True)] | None = None
    auth: AuthSettings = AuthSettings()
    tier: TierSettings = TierSettings()
    max_body_bytes: Annotated[Size, doc("largest request body, after decompression", ge=1024)] = 20 * MiB
    max_batch_events: Annotated[int, doc("most events in one request", ge=1, le=50000)] = 10000
    max_future_skew_s: Annotated[float, doc("reject events stamped further than this in the future; 0 disables "
                                            "the check", ge=0)] = 86400.0
    http: HttpSettings = HttpSettings()
    fd_reserve: Annotated[int, doc(
        "file descriptors kept out of the default connection bounds, for the buffer's segments, storage, the "
        "writer and outbound calls (tea serve raises its soft open-file limit to the hard limit, at most 65536, "
        "at start)", ge=16)] = 256
    validation: ValidationSettings = ValidationSettings()
    pii: PiiSettings = PiiSettings()
    processing: ProcessingSettings = ProcessingSettings()
    otlp: OtlpSettings = OtlpSettings()
    genai: GenaiSettings = GenaiSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    usage: UsageSettings = UsageSettings()
    telemetry_kit: TelemetryKitSettings = TelemetryKitSettings()
    telemetron: TelemetronSettings = TelemetronSettings()
    alerts: AlertsSettings = AlertsSettings()
    ui: UiSettings = UiSettings()
    stream: StreamSettings = StreamSettings()
    log_level: Annotated[Literal["debug", "info", "warning", "error"], doc("logging level", flag=True)] = "info"
    log_format: Annotated[Literal["text", "json"], doc("log line format: text (key=value) or json (one object "
                                                       "per line)")] = "text"
    access_log: Annotated[bool, doc("log every HTTP request")] = False
    shutdown_timeout_s: Annotated[float, doc("time budget to drain the buffer on shutdown (what is left is "
                                             "replayed at the next start)", ge=0)] = 30.0
    gc_threshold: Annotated[int, doc(
        "once started, the server freezes what start-up built out of the garbage collector's reach (gc.freeze) "
        "and collects generation 0 every this many allocations instead of Python's 700 (the collector took ~15 % "
        "of single-event ingestion's CPU at Python's defaults); 0 leaves Python's defaults", ge=0)] = 50000
    buffer: BufferSettings = BufferSettings()
    writer: WriterSettings = WriterSettings()
    reads: ReadsSettings = ReadsSettings()
    storage: StorageSettings = StorageSettings()
    duckdb: DuckdbSettings = DuckdbSettings()
    postgres: PostgresSettings = PostgresSettings()
    clickhouse: ClickhouseSettings = ClickhouseSettings()

    sources: dict[str, str] = {}  # key -> "flag --port", "env TEA_PORT", "file tea.toml"; absent: default
    warnings: list[str] = []  # e.g. Telemetron settings TEA does not take over

    def source(self, key: str) -> str:
        return self.sources.get(key, "default")

    def get(self, key: str) -> object:
        """One setting by its dotted key; code reads the typed attributes (``settings.buffer.max_bytes``)."""
        value: object = self
        for part in key.split("."):
            value = getattr(value, part)
        return value

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some settings changed: ``replace(buffer__max_bytes=1)`` (values not re-checked)."""
        out: Settings = replace(self, {key.replace("__", "."): value for key, value in changes.items()})
        return replace(out, {"warnings": list(self.warnings)})

    @property
    def retention_hours_effective(self) -> int:
        if self.retention_hours is not None:
            return self.retention_hours
        return 24 if self.storage_backend == "memory" else 720

    def effective(self, masked: bool = True) -> list[tuple[str, Any, str]]:
        """(key, value, source) rows, secrets masked."""
        rows = []
        for setting in SETTINGS:
            value = self.get(setting.key)
            if setting.key == "retention_hours" and value is None:
                value = self.retention_hours_effective
            if masked and setting.secret and value not in (None, ""):
                value = mask(value)
            rows.append((setting.key, value, self.source(setting.key)))
        return rows


SETTINGS: tuple[Setting, ...] = table(Settings)
_BY_KEY = {s.key: s for s in SETTINGS}

# TEA_* variables that are not settings of the server, so `tea serve` does not call them typos
OTHER_ENV: dict[str, str] = {
    "TEA_TOKEN": "the credential `tea usage` and `tea export` send (an API token or JWT with events:read); "
                 "the Python SDK (tea-client) sends it too",
    # the Python SDK's (tea-client, docs/sdk.md): set where an application and TEA share an environment
    "TEA_ENDPOINT": "Python SDK: the TEA URL clients and the drop-ins send to",
    "TEA_SECRET": "Python SDK: the token's signing secret; requests are HMAC-signed with it",
    "TEA_SPOOL_DIR": "Python SDK: the directory of the disk spool for batches TEA could not take",
    "TEA_ENABLED": "Python SDK's MCP middleware: the seed gateway's tea_enabled",
    "TEA_AUTH_REQUIRED": "Python SDK's MCP middleware: the seed gateway's tea_auth_required",
    "TEA_MCP_CONFIG": "Python SDK's MCP middleware: a TOML file with an [mcp_gateway] section",
    "TEA_REQUIRE_SERVICES": "test suite: 1 turns a test skipped for want of PostgreSQL, Redis or ClickHouse into "
                            "a failure",
}


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        key = prefix + name
        if isinstance(value, dict) and (key not in _BY_KEY or _BY_KEY[key].kind != "hours_map"):
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
            values, notes = compat_config.translate(raw, SETTINGS)
            if warnings is not None:
                warnings.extend(notes)
            return values
        return _flatten(raw)
    except FileNotFoundError:
        raise ConfigError(f"invalid config file {os.fspath(path)!r}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid config file {os.fspath(path)!r}: {exc}") from None


def load(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Resolve every setting: flag > environment > tea.toml > default. Raises ConfigError."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = _with_analytics_db_url(os.environ if env is None else env)
    from tea.compat_config import unsupported_env

    config_path = flags.get("config") or env.get("TEA_CONFIG")
    warnings: list[str] = []
    file_values = read_toml(config_path, warnings) if config_path else {}
    warnings.extend(unsupported_env(env, SETTINGS))
    for key in file_values:
        if key not in _BY_KEY:
            raise ConfigError(f"invalid config file {config_path!r}: unknown setting {key!r}")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, setting in _BY_KEY.items():
        if key in flags:
            values[key], sources[key] = setting.parse(flags[key], setting.flag_name), "flag " + setting.flag_name
            continue
        env_hit = next((n for n in setting.env_names if n in env), None)
        if env_hit is not None:
            values[key], sources[key] = setting.parse(env[env_hit], env_hit), "env " + env_hit
        elif key in file_values:
            values[key] = setting.parse(file_values[key], key, f" in {config_path}")
            sources[key] = "file " + str(config_path)
        else:
            values[key] = setting.default
    settings: Settings = build(Settings, values, sources=sources, warnings=warnings)
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


def unknown_env(env: Mapping[str, str] | None = None) -> list[str]:
    """TEA_* environment variables that name no setting (likely typos)."""
    env = os.environ if env is None else env
    known = set(OTHER_ENV)
    for setting in SETTINGS:
        known.update(setting.env_names)
    return sorted(n for n in env if n.startswith("TEA_") and n not in known)


def data_path(settings: Settings, *parts: str) -> Path:
    return Path(settings.data_dir).joinpath(*parts)
