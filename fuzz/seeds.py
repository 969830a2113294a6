"""The fuzzer's seed corpus: real OTLP trace requests, as the OpenTelemetry SDK's exporters and TEA's
benchmark send them, pinned to the fuzz clock so that every seed is deterministic.

- SDK exports (``encode_spans``, what OTLPSpanExporter sends over HTTP and gRPC): several resources
  (``tenant.id``, ``service.name`` of each value kind), several scopes (versions, schema URLs, scope
  attributes), spans of every kind with attributes of every value kind (str, bool, int, float, bytes,
  homogeneous and mixed arrays, maps), events, links with trace state, statuses; GenAI, MCP, HTTP, gRPC
  and database semantic-convention shapes; clock-skewed and out-of-range timestamps.
- The benchmark's requests (bench/otlp_spans.py: 100 HTTP server spans per request).
- Protobuf the SDK never writes: nested arrays and maps, empty AnyValues, duplicate and reserved keys,
  resource entity refs, unknown fields, a span without ids.

Each body is written with a few configuration bytes in front (fuzz/oracle.py). ``python -m fuzz.seeds DIR``.
"""
from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from fuzz.oracle import NOW_US

NOW_NS = NOW_US * 1000
MAX_SEED_BYTES = 16383  # the fuzzer's -max_len, less the configuration byte
CONFIG_BYTES = (0x00, 0x01, 0x02, 0x07, 0x2C)  # admin; tenant acme; dev; refused tenant + 1 s skew; dev, no limit


class _Ids(IdGenerator):
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def generate_span_id(self) -> int:
        return self.rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self.rng.getrandbits(128) or 1


class _Collect(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans):  # type: ignore[no-untyped-def]
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


GENAI = {"gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o",
         "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.usage.input_tokens": 1200,
         "gen_ai.usage.output_tokens": 300, "gen_ai.request.temperature": 0.2,
         "gen_ai.response.finish_reasons": ["stop"], "enduser.id": "user-7"}
MCP = {"mcp.method.name": "tools/call", "gen_ai.tool.name": "search", "mcp.session.id": "sess-1",
       "jsonrpc.request.id": "42", "mcp.protocol.version": "2025-06-18", "network.transport": "tcp",
       "gen_ai.usage.input_tokens": 12, "session.id": "s-9"}
HTTP_SERVER = {"http.request.method": "GET", "http.route": "/orders/{id}", "url.path": "/orders/17",
               "http.response.status_code": 200, "url.scheme": "https", "server.address": "api.example.com",
               "user.id": "u1", "client.address": "10.0.0.7", "user_agent.original": "Mozilla/5.0"}
HTTP_CLIENT = {"http.method": "POST", "http.target": "/v1/pay?x=1", "http.status_code": 503,
               "error.type": "503", "net.peer.name": "payments"}
GRPC = {"rpc.system": "grpc", "rpc.service": "orders.Orders", "rpc.method": "Get", "rpc.grpc.status_code": 14}
DB = {"db.system": "postgresql", "db.statement": "SELECT * FROM t WHERE id = $1", "db.rows": 3}
KINDS_OF_VALUES = {"s": "text \u00e9\u2028\U0001F600 \"q\" \\ \n\x01", "b": True, "i": -(2**63), "f": 1e-5,
                   "nan": float("nan"), "inf": float("-inf"), "by": b"\x00\xff", "sa": ["a", "b"],
                   "ia": [1, 2, 3], "fa": [0.5, 1e300], "ba": [True, False], "m": {"k": 1, "n": {"x": "y"}},
                   "mixed": ["a", 1, None, {"z": [1]}], "empty": "", "long": "x" * 1100}


def sdk_exports() -> Iterator[bytes]:
    """Requests as the SDK's OTLP exporters encode them."""
    yield _sdk(1, [({"service.name": "checkout", "tenant.id": "acme"}, "tests", [_web])])
    yield _sdk(2, [({"service.name": "agent", "deployment.environment.name": "prod"}, "openai.instrumentation",
                    [_genai, _mcp]),
                   ({"service.name": "gateway", "tenant.id": "t9"}, "mcp.gateway", [_mcp, _grpc])])
    yield _sdk(3, [({"service.name": 5, "tenant.id": 42}, "lib", [_values]),
                   ({"tenant.id": "_internal"}, "lib", [_web]), ({}, "", [_db])])
    yield _sdk(4, [({"service.name": "clock"}, "skew", [_future, _epoch, _many_events])])


def _sdk(seed: int, providers: list) -> bytes:  # type: ignore[type-arg]
    spans: list[ReadableSpan] = []
    for i, (resource, scope, makers) in enumerate(providers):
        collect = _Collect()
        detected = Resource.create(resource).attributes  # the SDK's own attributes, less its random instance id
        provider = TracerProvider(resource=Resource({k: v for k, v in detected.items() if k != "service.instance.id"}),
                                  id_generator=_Ids(seed * 100 + i))
        provider.add_span_processor(SimpleSpanProcessor(collect))
        tracers = [provider.get_tracer(scope, "1.2.3", schema_url="https://opentelemetry.io/schemas/1.27.0"),
                   provider.get_tracer(scope + ".extra", None, attributes={"scope.attr": "v", "n": 1})]
        for j, make in enumerate(makers):
            make(tracers[j % 2], NOW_NS - 10_000_000_000 + j * 1_000_000)
        provider.shutdown()
        spans.extend(collect.spans)
    return encode_spans(spans).SerializeToString()


def _web(tracer, t0: int) -> None:  # type: ignore[no-untyped-def]
    root = tracer.start_span("GET /orders/{id}", kind=SpanKind.SERVER, attributes=HTTP_SERVER, start_time=t0)
    from opentelemetry import trace
    ctx = trace.set_span_in_context(root)
    child = tracer.start_span("POST", context=ctx, kind=SpanKind.CLIENT, attributes=HTTP_CLIENT, start_time=t0 + 1000)
    child.add_event("retry", {"attempt": 2, "delay_ms": 1.5}, timestamp=t0 + 2000)
    child.set_status(Status(StatusCode.ERROR, "upstream \u00e9 unavailable"))
    child.end(end_time=t0 + 5_000_000)
    root.set_status(Status(StatusCode.OK))
    root.end(end_time=t0 + 9_000_000)


def _genai(tracer, t0: int) -> None:  # type: ignore[no-untyped-def]
    span = tracer.start_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes=GENAI, start_time=t0)
    span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": "hello"}, timestamp=t0 + 10)
    span.add_event("gen_ai.content.completion", {"gen_ai.completion": "hi", "index": 0}, timestamp=t0 + 20)
    span.end(end_time=t0 + 700_000_000)


def _mcp(tracer, t0: int) -> None:  # type: ignore[no-untyped-def]
    other = tracer.start_span("upstream", start_time=t0)
    other.end(end_time=t0 + 1)
    span = tracer.start_span("tools/call search", kind=SpanKind.SERVER, attributes=MCP, start_time=t0,
                             links=[Link(other.get_span_context(), {"link.kind": "follows", "n": [1, 2]})])
    span.end(end_time=t0 + 3_000_000)


def _grpc(tracer, t0: int) -> None:  # type: ignore[no-untyped-def]
    for kind in (SpanKind.SERVER, SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL):
        span = tracer.start_span("orders.Orders/Get", kind=kind, attributes=GRPC, start_time=t0)
        span.end(end_time=t0 - 5)  # ends before it starts: duration 0


def _values(tracer, t0: int) -> None:  # type: ignore[no-untyped-def]
    span = tracer.start_span("values", attributes=KINDS_OF_VALUES, start_time=t0)
    span.add_event("with values", KINDS_OF_VALUES, timestamp=t0)
    span.end(end_time=t0 + 1)


def _db(tracer, t0: int) -> None:  # type: ignore[no-untyped-def]
    span = tracer.start_span("SELECT t", kind=SpanKind.CLIENT, attributes=DB, start_time=t0)
    span.record_exception(ValueError("boom"), timestamp=t0 + 5)
    span.end(end_time=t0 + 100)


def _future(tracer, t0: int) -> None:  # type: ignore[no-untyped-def]
    for ahead_s in (2, 7200, 2 * 86400):
        span = tracer.start_span(f"ahead {ahead_s}", start_time=NOW_NS + ahead_s * 10**9)
        span.end(end_time=NOW_NS + ahead_s * 10**9 + 1)


def _epoch(tracer, t0: int) -> None:  # type: ignore[no-untyped-def]
    span = tracer.start_span("epoch", start_time=1)
    span.end(end_time=2)


def _many_events(tracer, t0: int) -> None:  # type: ignore[no-untyped-def]
    span = tracer.start_span("agent loop", start_time=t0)
    for i in range(40):  # past the native mapper's 16 events on the stack
        span.add_event(f"step {i}", {"i": i}, timestamp=t0 + i)
    span.end(end_time=t0 + 100)


def bench_bodies() -> Iterator[bytes]:
    """The benchmark's request template, its times pinned to the fuzz clock."""
    from bench.otlp_spans import template
    for variant in (0, 3):
        body, _ = template(b"fuzz\x00\x01", variant, seed=variant)
        request = ExportTraceServiceRequest.FromString(body)
        spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
        shift = NOW_NS - 2_000_000_000 - min(s.start_time_unix_nano for s in spans)
        for s in spans:
            s.start_time_unix_nano += shift
            s.end_time_unix_nano += shift
        yield request.SerializeToString()
        del request.resource_spans[0].scope_spans[0].spans[4:]  # a short one: mutations reach more of it
        yield request.SerializeToString()


def _kv(key: str, value: common_pb2.AnyValue) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=value)


def protobuf_shapes() -> Iterator[bytes]:
    """What the SDK never sends, but a client may."""
    deep = common_pb2.AnyValue(string_value="leaf")
    for i in range(17):  # one past the native mapper's MAX_DEPTH
        deep = (common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[deep])) if i % 2 else
                common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=[_kv("k", deep)])))
    attrs = {
        "nested": [_kv("n", common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[
            common_pb2.AnyValue(), common_pb2.AnyValue(bytes_value=b"\x01\x02\x03"),
            common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=[_kv("", common_pb2.AnyValue())]))])))],
        "deep": [_kv("d", deep)],
        "duplicates": [_kv("a", common_pb2.AnyValue(int_value=1)), _kv("a", common_pb2.AnyValue(int_value=2))],
        "reserved": [_kv("span.name", common_pb2.AnyValue(string_value="x"))],
        "tokens as float": [_kv("gen_ai.usage.input_tokens", common_pb2.AnyValue(double_value=1.5))],
        "tokens as text": [_kv("gen_ai.usage.output_tokens", common_pb2.AnyValue(string_value="12"))],
        "method as bytes": [_kv("mcp.method.name", common_pb2.AnyValue(bytes_value=b"\xfftools"))],
        "status as bool": [_kv("http.status_code", common_pb2.AnyValue(bool_value=True)),
                           _kv("http.method", common_pb2.AnyValue(int_value=7))],
        "none": [],
    }
    for n, (name, kvs) in enumerate(attrs.items()):
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add(schema_url="https://example.com/r")
        rs.resource.attributes.add(key="service.name", value=common_pb2.AnyValue(string_value="shapes"))
        rs.resource.entity_refs.add(type="host", id_keys=["host.name"], description_keys=["os"])
        ss = rs.scope_spans.add(schema_url="https://example.com/s")
        ss.scope.name, ss.scope.version = "shapes", "0"
        ss.scope.attributes.add(key="k", value=deep if n == 1 else common_pb2.AnyValue(bool_value=False))
        span = ss.spans.add(trace_id=bytes([n + 1]) * 16, span_id=bytes([n + 1]) * 8, parent_span_id=b"\x09" * 8,
                            name=name, kind=n % 8, start_time_unix_nano=NOW_NS - 10**9, end_time_unix_nano=NOW_NS,
                            trace_state="k=v", flags=0x301, dropped_attributes_count=1)
        span.attributes.extend(kvs)
        span.events.add(time_unix_nano=NOW_NS, name="e").attributes.extend(kvs)
        span.links.add(trace_id=b"\x07" * 16, span_id=b"\x08" * 8, trace_state="a=b").attributes.extend(kvs)
        span.status.code, span.status.message = 2, "failed"
        yield request.SerializeToString()
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(name="no ids", start_time_unix_nano=NOW_NS)
    yield request.SerializeToString()
    # unknown fields of every wire type, where the native mapper skips them
    yield request.SerializeToString() + b"\x78\x01\x81\x01" + bytes(8) + b"\x8a\x01\x02ab\x95\x01" + bytes(4)


def bodies() -> Iterator[bytes]:
    yield b""
    yield from sdk_exports()
    yield from bench_bodies()
    yield from protobuf_shapes()


def write(directory: Path) -> int:
    return write_bodies(directory, bodies(), ExportTraceServiceRequest)


def write_bodies(directory: Path, requests: Iterable[bytes], request_type: Any) -> int:
    """Writes the seeds (named by content) into ``directory``, removes any other file there; returns how many.
    (Fuzzing processes started together all write the same files.)"""
    directory.mkdir(parents=True, exist_ok=True)
    names = set()
    for body in requests:
        request_type.FromString(body)  # every seed is a valid request
        if len(body) >= MAX_SEED_BYTES:
            continue  # (the benchmark's 100-span requests: tests/otlp/test_fuzz.py replays them)
        for config in CONFIG_BYTES:
            data = bytes([config]) + body
            names.add(hashlib.sha1(data).hexdigest())
            (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
    for stale in set(p.name for p in directory.iterdir()) - names:
        (directory / stale).unlink(missing_ok=True)
    return len(names)


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "build/fuzz/seeds/map_traces")), "seeds")
