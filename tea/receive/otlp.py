"""OTLP receivers: HTTP (``POST /v1/traces|logs|metrics``, protobuf or JSON, gzip) on TEA's port
(and ``otlp.http_port``), and gRPC (``TraceService``/``LogsService``/``MetricsService`` ``Export``)
on ``otlp.grpc_port``. Both authenticate like every TEA route (``authorization: Bearer`` or the
seed's ``x-api-key``), go through the one ingestion path, and answer in OTLP's terms: refused items
in ``partial_success``, errors as ``google.rpc.Status``, only 429/503 retryable (with Retry-After),
gRPC ``UNAUTHENTICATED`` / ``RESOURCE_EXHAUSTED`` / ``UNAVAILABLE``.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import grpc
import msgspec
import uvloop
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_svc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_svc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_svc

from tea.auth.chain import AuthChain
from tea.auth.gate import Gate
from tea.auth.limits import Limiter
from tea.auth.principal import WRITE, Principal
from tea.errors import (BadRequest, ClientError, Forbidden, RateLimited, TooLarge, Unauthorized,
                        UnsupportedMediaType)
from tea.http import Request, Response, Route
from tea.pipeline.ingest import Ingestor
from tea.pipeline.normalise import Normaliser
from tea.receive import otlp_map, otlp_signals
from tea.settings import Settings
from tea.telemetry import Telemetry
from tea.timeutil import MAX_US, format_us
from tea.types import Decoded, Event, ItemError

try:  # the optional C extension (setup.py); without it every request takes the Python mapper
    from tea import _otlpfast
except ImportError:  # pragma: no cover - depends on the build
    _otlpfast = None  # type: ignore[assignment]


log = logging.getLogger(__name__)
PROTOBUF = "application/x-protobuf"
_json = msgspec.json.Decoder()


@dataclass(frozen=True)
class Otlp:
    """What OTLP ingestion needs from the composition root (``tea.services.provide(Otlp, services)``)."""

    settings: Settings
    ingestor: Ingestor
    telemetry: Telemetry
    auth: AuthChain
    gate: Gate
    limiter: Limiter


@dataclass(frozen=True)
class Signal:
    name: str                    # traces, logs, metrics
    request: Any                 # the protobuf Export*ServiceRequest class
    response: Any
    partial: Any                 # the Export*PartialSuccess class
    rejected_field: str          # rejected_spans, rejected_log_records, rejected_data_points
    from_pb: Callable[[Any, bool], Iterator[Event]]
    from_json: Callable[[dict[str, Any], bool], Iterator[Event]]


SIGNALS = {
    "traces": Signal("traces", trace_svc.ExportTraceServiceRequest, trace_svc.ExportTraceServiceResponse,
                     trace_svc.ExportTracePartialSuccess, "rejected_spans", otlp_map.pb_spans, otlp_map.json_spans),
    "logs": Signal("logs", logs_svc.ExportLogsServiceRequest, logs_svc.ExportLogsServiceResponse,
                   logs_svc.ExportLogsPartialSuccess, "rejected_log_records", otlp_signals.pb_logs,
                   otlp_signals.json_logs),
    "metrics": Signal("metrics", metrics_svc.ExportMetricsServiceRequest, metrics_svc.ExportMetricsServiceResponse,
                      metrics_svc.ExportMetricsPartialSuccess, "rejected_data_points", otlp_signals.pb_metrics,
                      otlp_signals.json_metrics),
}
BINARY = {"type": "string", "format": "binary"}


class RpcStatus(msgspec.Struct):
    """``google.rpc.Status`` in OTLP/JSON: a gRPC code (3 INVALID_ARGUMENT, 7 PERMISSION_DENIED, 8
    RESOURCE_EXHAUSTED, 14 UNAVAILABLE, 16 UNAUTHENTICATED) and a message."""

    code: int
    message: str


class ExportResponse(msgspec.Struct, omit_defaults=True):
    """``Export*ServiceResponse`` in OTLP/JSON: ``{}``, or the refused items' count and the first reason."""

    partialSuccess: dict[str, str] | None = None


# every OTLP/HTTP error is a google.rpc.Status, protobuf when the request was, else JSON
RPC_STATUS = {PROTOBUF: BINARY, "application/json": RpcStatus}
_JSON_REJECTED = {"rejected_spans": "rejectedSpans", "rejected_log_records": "rejectedLogRecords",
                  "rejected_data_points": "rejectedDataPoints"}


async def ingest(rx: Otlp, signal: Signal, events: list[Event], principal: Principal) -> tuple[int, str]:
    """Store the events; returns (rejected count, message) for partial_success."""
    if not events:
        return 0, ""
    outcome = await rx.ingestor.submit(Decoded(events, None, [], len(events)), "otlp", principal,
                                       timestamps_us=True)
    return _refused(signal, outcome.errors)


def _refused(signal: Signal, errors: list[ItemError]) -> tuple[int, str]:
    if not errors:
        return 0, ""
    first = errors[0]
    return len(errors), f"{len(errors)} {signal.name} refused; first: {first.error}: {first.message}"


# ------------------------------------------------------------------ the native trace mapper
# The message layouts tea/_otlpfast.c reads: (message, field name, number, protobuf type). If the
# installed opentelemetry-proto differs in any of them, the native mapper is not used.
_NATIVE_LAYOUT = {
    "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest": (("resource_spans", 1, 11),),
    "opentelemetry.proto.trace.v1.ResourceSpans": (("resource", 1, 11), ("scope_spans", 2, 11),
                                                   ("schema_url", 3, 9)),
    "opentelemetry.proto.resource.v1.Resource": (("attributes", 1, 11), ("dropped_attributes_count", 2, 13),
                                                 ("entity_refs", 3, 11)),
    "opentelemetry.proto.trace.v1.ScopeSpans": (("scope", 1, 11), ("spans", 2, 11), ("schema_url", 3, 9)),
    "opentelemetry.proto.common.v1.InstrumentationScope": (("name", 1, 9), ("version", 2, 9), ("attributes", 3, 11),
                                                           ("dropped_attributes_count", 4, 13)),
    "opentelemetry.proto.trace.v1.Span": (
        ("trace_id", 1, 12), ("span_id", 2, 12), ("trace_state", 3, 9), ("parent_span_id", 4, 12), ("flags", 16, 7),
        ("name", 5, 9), ("kind", 6, 14), ("start_time_unix_nano", 7, 6), ("end_time_unix_nano", 8, 6),
        ("attributes", 9, 11), ("dropped_attributes_count", 10, 13), ("events", 11, 11),
        ("dropped_events_count", 12, 13), ("links", 13, 11), ("dropped_links_count", 14, 13), ("status", 15, 11)),
    "opentelemetry.proto.trace.v1.Span.Event": (("time_unix_nano", 1, 6), ("name", 2, 9), ("attributes", 3, 11),
                                                ("dropped_attributes_count", 4, 13)),
    "opentelemetry.proto.trace.v1.Status": (("message", 2, 9), ("code", 3, 14)),
    "opentelemetry.proto.common.v1.KeyValue": (("key", 1, 9), ("value", 2, 11), ("key_strindex", 3, 5)),
    "opentelemetry.proto.common.v1.AnyValue": (
        ("string_value", 1, 9), ("bool_value", 2, 8), ("int_value", 3, 3), ("double_value", 4, 1),
        ("array_value", 5, 11), ("kvlist_value", 6, 11), ("bytes_value", 7, 12), ("string_value_strindex", 8, 5)),
    "opentelemetry.proto.common.v1.ArrayValue": (("values", 1, 11),),
    "opentelemetry.proto.common.v1.KeyValueList": (("values", 1, 11),),
}


_METRICS_LAYOUT = {
    "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest": (("resource_metrics", 1, 11),),
    "opentelemetry.proto.metrics.v1.ResourceMetrics": (("resource", 1, 11), ("scope_metrics", 2, 11),
                                                       ("schema_url", 3, 9)),
    "opentelemetry.proto.metrics.v1.ScopeMetrics": (("scope", 1, 11), ("metrics", 2, 11), ("schema_url", 3, 9)),
    "opentelemetry.proto.metrics.v1.Metric": (("name", 1, 9), ("description", 2, 9), ("unit", 3, 9), ("gauge", 5, 11),
                                              ("sum", 7, 11), ("histogram", 9, 11), ("exponential_histogram", 10, 11),
                                              ("summary", 11, 11), ("metadata", 12, 11)),
    "opentelemetry.proto.metrics.v1.Sum": (("data_points", 1, 11), ("aggregation_temporality", 2, 14),
                                           ("is_monotonic", 3, 8)),
    "opentelemetry.proto.metrics.v1.Histogram": (("data_points", 1, 11), ("aggregation_temporality", 2, 14)),
    "opentelemetry.proto.metrics.v1.NumberDataPoint": (
        ("attributes", 7, 11), ("start_time_unix_nano", 2, 6), ("time_unix_nano", 3, 6), ("as_double", 4, 1),
        ("as_int", 6, 16), ("exemplars", 5, 11), ("flags", 8, 13)),
    "opentelemetry.proto.metrics.v1.HistogramDataPoint": (
        ("attributes", 9, 11), ("start_time_unix_nano", 2, 6), ("time_unix_nano", 3, 6), ("count", 4, 6),
        ("sum", 5, 1), ("bucket_counts", 6, 6), ("explicit_bounds", 7, 1), ("exemplars", 8, 11), ("flags", 10, 13),
        ("min", 11, 1), ("max", 12, 1)),
    "opentelemetry.proto.metrics.v1.ExponentialHistogramDataPoint": (
        ("attributes", 1, 11), ("start_time_unix_nano", 2, 6), ("time_unix_nano", 3, 6), ("count", 4, 6),
        ("sum", 5, 1), ("scale", 6, 17), ("zero_count", 7, 6), ("positive", 8, 11), ("negative", 9, 11),
        ("flags", 10, 13), ("exemplars", 11, 11), ("min", 12, 1), ("max", 13, 1), ("zero_threshold", 14, 1)),
    "opentelemetry.proto.metrics.v1.ExponentialHistogramDataPoint.Buckets": (("offset", 1, 17),
                                                                             ("bucket_counts", 2, 4)),
    "opentelemetry.proto.metrics.v1.SummaryDataPoint": (
        ("attributes", 7, 11), ("start_time_unix_nano", 2, 6), ("time_unix_nano", 3, 6), ("count", 4, 6),
        ("sum", 5, 1), ("quantile_values", 6, 11), ("flags", 8, 13)),
    "opentelemetry.proto.metrics.v1.SummaryDataPoint.ValueAtQuantile": (("quantile", 1, 1), ("value", 2, 1)),
}


def _layout_matches(layout: dict[str, tuple[tuple[str, int, int], ...]]) -> bool:
    pool = trace_svc.ExportTraceServiceRequest.DESCRIPTOR.file.pool
    try:
        return all(tuple((f.name, f.number, f.type) for f in pool.FindMessageTypeByName(name).fields) == fields
                   for name, fields in layout.items())
    except KeyError:
        return False


NATIVE_AVAILABLE = _otlpfast is not None and _layout_matches(_NATIVE_LAYOUT)
# the native metrics mapper reads the trace layout's resource, scope and attributes too
NATIVE_METRICS = NATIVE_AVAILABLE and hasattr(_otlpfast, "map_metrics") and _layout_matches(_METRICS_LAYOUT)


@dataclass
class Mapped:
    """What the native mapper made of one ExportTraceServiceRequest: the buffer's NDJSON of the accepted
    spans, their count and timestamp range, and the refused spans as the Normaliser reports them."""

    ndjson: bytes
    accepted: int
    total: int
    low: int
    high: int
    errors: list[ItemError]


def map_native(normaliser: Normaliser, body: bytes, principal: Principal | None,
               source_protocol: str = "otlp", signal: str = "traces") -> Mapped | None:
    """The spans of ``body`` (a serialized ExportTraceServiceRequest as received) — or with ``signal``
    "metrics" the data points of an ExportMetricsServiceRequest — normalised and encoded exactly as
    ``pb_spans`` (``pb_metrics``) + ``Normaliser`` + ``encode_lines`` would; None when the native mapper is
    unavailable or leaves this request to the protobuf runtime — which refuses what is malformed (the native
    mapper handles nothing the runtime would refuse, unstored fields included) — and the Python path."""
    if not (NATIVE_METRICS if signal == "metrics" else NATIVE_AVAILABLE) or normaliser.stages:
        return None
    admin = principal is not None and principal.is_admin
    only = principal.tenant_id if principal is not None and not principal.is_admin else None
    now = normaliser.clock()
    max_future = normaliser.max_future_us
    latest = min(now + max_future if max_future is not None else MAX_US, 2**64 - 1)
    if not 0 <= now < 2**64 or latest < 0:
        return None
    mapper = _otlpfast.map_metrics if signal == "metrics" else _otlpfast.map_traces
    result = mapper(body, admin, only or normaliser.default_tenant, only, now, latest, MAX_US, source_protocol,
                    normaliser.prices.lookup, otlp_signals.point_id)
    if result is None:
        return None
    ndjson, accepted, total, low, high, rejections = result
    errors = []
    for index, code, event_id, detail in rejections:
        if code == "forbidden_tenant":
            message, field = f"this credential cannot write to tenant {detail!r}", "tenant_id"
        elif code == "clock_skew":
            message, field = (f"timestamp {format_us(detail)} is more than {max_future // 1_000_000} s in the future "
                              f"(server time {format_us(now)})", "timestamp")  # type: ignore[operator]
        else:
            message, field = "timestamp in epoch milliseconds is out of range", "timestamp"
        errors.append(ItemError(index, code, message, event_id, field))
    return Mapped(ndjson, accepted, total, low, high, errors)


async def ingest_mapped(rx: Otlp, signal: Signal, mapped: Mapped, principal: Principal) -> tuple[int, str]:
    """Spans the native mapper already normalised and encoded, into the one durable path."""
    if not mapped.total:
        return 0, ""
    await rx.ingestor.submit_encoded(mapped.ndjson, mapped.accepted, mapped.total, mapped.errors, mapped.low,
                                     mapped.high, "otlp", principal, MAPPED_KINDS[signal.name])
    return _refused(signal, mapped.errors)


def _mapper_counter(rx: Otlp, signal: Signal, path: str):  # type: ignore[no-untyped-def]
    counter = rx.telemetry.otlp_metric_requests if signal.name == "metrics" else rx.telemetry.otlp_trace_requests
    return rx.telemetry.child(counter, path)


NATIVE_SIGNALS = ("traces", "metrics")
MAPPED_KINDS = {"traces": frozenset(["span"]), "metrics": frozenset(["metric"])}  # the lines each native mapper writes


async def ingest_pb(rx: Otlp, signal: Signal, message: Any, body: bytes | None,
                    principal: Principal) -> tuple[int, str]:
    """A protobuf ExportTraceServiceRequest or ExportMetricsServiceRequest, as its bytes (``body``) or parsed
    (``message``): the native mapper when it is on and handles the request — then it is never parsed into
    Python objects (0.8 µs per span) — else parsed by the protobuf runtime (a malformed request is refused
    here) and mapped in Python."""
    path = "python"
    native = NATIVE_METRICS if signal.name == "metrics" else NATIVE_AVAILABLE
    if native and rx.settings.otlp.native and not rx.ingestor.normaliser.stages:
        mapped = map_native(rx.ingestor.normaliser, body if body is not None else message.SerializeToString(),
                            principal, signal=signal.name)
        if mapped is not None:
            _mapper_counter(rx, signal, "native").inc()
            return await ingest_mapped(rx, signal, mapped, principal)
        path = "fallback"
    if message is None:
        message = parse_pb(signal, body)  # type: ignore[arg-type]
    _mapper_counter(rx, signal, path).inc()
    return await ingest(rx, signal, list(signal.from_pb(message, principal.is_admin)), principal)


def parse_pb(signal: Signal, body: bytes) -> Any:
    try:
        return signal.request.FromString(body)
    except DecodeError as exc:
        raise BadRequest(f"invalid OTLP protobuf: {exc}", code="invalid_protobuf") from None


def events_from(signal: Signal, body: bytes, media_type: str, principal: Principal) -> list[Event]:
    from_resource = principal.is_admin  # only admins (and dev mode) may name the tenant in the resource
    if media_type == PROTOBUF:
        return list(signal.from_pb(parse_pb(signal, body), from_resource))
    try:
        document = _json.decode(body)
        if not isinstance(document, dict):
            raise BadRequest("an OTLP/JSON body is an object", code="invalid_json")
        return list(signal.from_json(document, from_resource))
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BadRequest(f"invalid OTLP JSON: {exc}", code="invalid_json") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadRequest(f"invalid OTLP JSON structure: {exc}", code="invalid_json") from None


# ------------------------------------------------------------------ OTLP/HTTP
_GRPC_CODE = {400: code_pb2.INVALID_ARGUMENT, 401: code_pb2.UNAUTHENTICATED, 403: code_pb2.PERMISSION_DENIED,
              413: code_pb2.INVALID_ARGUMENT, 415: code_pb2.INVALID_ARGUMENT, 429: code_pb2.RESOURCE_EXHAUSTED,
              503: code_pb2.UNAVAILABLE}


def _status_response(exc: ClientError, media_type: str) -> Response:
    code = _GRPC_CODE.get(exc.status, code_pb2.INTERNAL)
    headers = {k: v for k, v in exc.headers.items() if exc.status in (429, 503) or k != "retry-after"}
    if media_type == PROTOBUF:
        body = status_pb2.Status(code=code, message=exc.message).SerializeToString()
        return Response(body, exc.status, PROTOBUF.encode(), headers)
    return Response(msgspec.json.encode({"code": code, "message": exc.message}), exc.status, b"application/json",
                    headers)


def _ok_response(signal: Signal, rejected: int, message: str, media_type: str) -> Response:
    if media_type == PROTOBUF:
        response = signal.response()
        if rejected:
            partial = getattr(response, "partial_success")
            setattr(partial, signal.rejected_field, rejected)
            partial.error_message = message
        return Response(response.SerializeToString(), 200, PROTOBUF.encode())
    body = {"partialSuccess": {_JSON_REJECTED[signal.rejected_field]: str(rejected), "errorMessage": message}} \
        if rejected else {}
    return Response(msgspec.json.encode(body), 200, b"application/json")


def routes(settings: Settings, ingestor: Ingestor, telemetry: Telemetry, auth: AuthChain, gate: Gate,
           limiter: Limiter) -> list[Route]:
    """OTLP/HTTP: ``POST /v1/traces``, ``/v1/logs``, ``/v1/metrics``."""
    rx = Otlp(settings, ingestor, telemetry, auth, gate, limiter)

    def handler(signal: Signal):  # type: ignore[no-untyped-def]
        async def export(request: Request) -> Response:
            media_type = PROTOBUF if request.media_type == PROTOBUF else "application/json"
            try:
                if request.media_type not in (PROTOBUF, "application/json"):
                    raise UnsupportedMediaType("OTLP/HTTP takes application/x-protobuf or application/json")
                await rx.gate.admit(request, WRITE)
                body = await request.body(rx.settings.otlp.max_message_bytes)
                if signal.name in NATIVE_SIGNALS and media_type == PROTOBUF:
                    rejected, message = await ingest_pb(rx, signal, None, body, request.state["principal"])
                else:
                    events = events_from(signal, body, media_type, request.state["principal"])
                    rejected, message = await ingest(rx, signal, events, request.state["principal"])
            except ClientError as exc:
                return _status_response(exc, media_type)
            return _ok_response(signal, rejected, message, media_type)
        return export

    return [Route("POST", f"/v1/{name}", handler(signal), f"OTLP/HTTP export of {name} (protobuf or JSON, gzip)",
                  tags=("otlp",), request_body={PROTOBUF: BINARY, "application/json": {"type": "object"}},
                  responses={200: (f"Export{name.capitalize()}ServiceResponse (partial_success when items were "
                                   "refused), in the request's encoding",
                                   {PROTOBUF: BINARY, "application/json": ExportResponse})},
                  scope=WRITE, admits_itself=True, errors=RPC_STATUS)
            for name, signal in SIGNALS.items()]


# ------------------------------------------------------------------ OTLP/gRPC
class _MetadataRequest:
    """Enough of a Request for the authenticator chain: gRPC metadata as headers."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self.headers = {k.lower(): v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        self.state: dict[str, Any] = {}
        self.path = "grpc"
        peer = context.peer() or ""
        self.client = peer.split(":")[1] if peer.startswith("ipv4:") else peer

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def param(self, name: str) -> None:
        return None


_GRPC_STATUS = {401: grpc.StatusCode.UNAUTHENTICATED, 403: grpc.StatusCode.PERMISSION_DENIED,
                429: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.UNAVAILABLE}


def _export(rx: Otlp, signal: Signal, main: asyncio.AbstractEventLoop):  # type: ignore[no-untyped-def]
    """The Export handler of one signal, on the gRPC thread's loop. It takes the request's bytes (no
    deserializer registered) and hands the work to TEA's event loop (``main``): there the protobuf runtime
    checks them — a malformed message is INVALID_ARGUMENT with the parser's reason — and the native span
    mapper reads the same bytes, so nothing is serialized back."""
    async def export(body: bytes, context: grpc.aio.ServicerContext) -> Any:
        meta = _MetadataRequest(context)
        try:
            rejected, message = await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(_export_work(rx, signal, body, meta), main))
        except Unauthorized as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
        except (RateLimited, TooLarge) as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message)
        except ClientError as exc:
            await context.abort(_GRPC_STATUS.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT), exc.message)
        response = signal.response()
        if rejected:
            setattr(response.partial_success, signal.rejected_field, rejected)
            response.partial_success.error_message = message
        return response
    return export


async def _export_work(rx: Otlp, signal: Signal, body: bytes, meta: _MetadataRequest) -> tuple[int, str]:
    """One Export call's work, on TEA's event loop: authenticate, check, map, make durable."""
    try:
        principal = await rx.auth.authenticate(meta)  # type: ignore[arg-type]
        if meta.state.get("verify_body") is not None:
            # a signature covers the raw HTTP body; gRPC has none to check it against, so a signed (or,
            # with auth.require_signature, any API-token) request is refused rather than let through
            raise Unauthorized("request signatures cannot be verified over OTLP/gRPC; send them to "
                               "OTLP/HTTP", code="signature_unsupported")
    except Unauthorized as exc:
        rx.gate.failed(meta, exc)
        raise
    if not principal.can(WRITE):
        raise Forbidden("this needs the events:write scope")
    await rx.limiter.request(principal)
    if signal.name in NATIVE_SIGNALS:
        return await ingest_pb(rx, signal, None, body, principal)
    request = parse_pb(signal, body)
    return await ingest(rx, signal, list(signal.from_pb(request, principal.is_admin)), principal)


_SERVICES = {"traces": trace_svc, "logs": logs_svc, "metrics": metrics_svc}


def _handlers(rx: Otlp, main: asyncio.AbstractEventLoop) -> list[grpc.GenericRpcHandler]:
    """TraceService, LogsService and MetricsService, each with its one Export method, taking raw bytes."""
    handlers = []
    for name, module in _SERVICES.items():
        [service] = module.DESCRIPTOR.services_by_name.values()
        method = grpc.unary_unary_rpc_method_handler(_export(rx, SIGNALS[name], main), request_deserializer=None,
                                                     response_serializer=_serialize)
        handlers.append(grpc.method_handlers_generic_handler(service.full_name, {"Export": method}))
    return handlers


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()


class GrpcServer:
    """The OTLP/gRPC server, on an event loop of its own in a thread (``tea-grpc``). grpc.aio accepts each
    call through a turn of the loop that serves it: on TEA's event loop, busy with mapping and HTTP, calls
    queued there (~700 calls/s, client p50 21 ms against a handler p50 of 4–8 ms). Here they are accepted at
    once and each call's work runs on TEA's loop (``_export_work``), answered back through a future."""

    def __init__(self, rx: Otlp, host: str, port: int, max_message_bytes: int) -> None:
        self.rx, self.host, self.port, self.max_message_bytes = rx, host, port, max_message_bytes
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: grpc.aio.Server | None = None
        self.bound = 0
        self._thread: threading.Thread | None = None
        self._done: asyncio.Event | None = None

    async def start(self) -> None:
        """Listen, or raise OSError (port taken or not available)."""
        main = asyncio.get_running_loop()
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(main, ready), name="tea-grpc", daemon=True)
        self._thread.start()
        self.bound = await asyncio.wrap_future(ready)
        log.info("OTLP/gRPC listening on %s:%d", self.host, self.bound)

    def _run(self, main: asyncio.AbstractEventLoop, ready: "concurrent.futures.Future[int]") -> None:
        loop = uvloop.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._serve(main, ready))
        except BaseException as exc:  # start-up failed: the caller gets it through `ready`
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.exception("the OTLP/gRPC server stopped unexpectedly")
        finally:
            loop.close()

    async def _serve(self, main: asyncio.AbstractEventLoop, ready: "concurrent.futures.Future[int]") -> None:
        self._done = asyncio.Event()
        from tea.http.limits import grpc_options, open_files_limit
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", self.max_message_bytes),
                                          ("grpc.max_send_message_length", self.max_message_bytes),
                                          # a taken port is an error, never a silent share with another process
                                          ("grpc.so_reuseport", 0),
                                          *grpc_options(self.rx.settings, open_files_limit())])
        server.add_generic_rpc_handlers(_handlers(self.rx, main))
        address = f"{self.host}:{self.port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpcio raises this when the bind fails (older releases return 0)
            raise OSError(f"cannot listen for OTLP/gRPC on {address}: address in use or not available") from exc
        if bound == 0:
            raise OSError(f"cannot listen for OTLP/gRPC on {address}")
        await server.start()
        self.server = server
        ready.set_result(bound)
        await self._done.wait()

    async def stop(self, grace: float) -> None:
        """Stop accepting, let calls in flight finish within ``grace`` seconds, end the thread."""
        loop, server, thread = self.loop, self.server, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return

        async def stop_there() -> None:
            if server is not None:
                await server.stop(grace)
            assert self._done is not None
            self._done.set()
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(stop_there(), loop))
        await asyncio.to_thread(thread.join)


async def start_grpc(rx: Otlp, host: str, port: int, max_message_bytes: int) -> GrpcServer:
    server = GrpcServer(rx, host, port, max_message_bytes)
    await server.start()
    return server
