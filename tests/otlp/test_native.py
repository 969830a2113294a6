"""The native OTLP trace mapper (tea/_otlpfast.c) against the Python path it replaces.

Differential: for generated ExportTraceServiceRequests the NDJSON the native mapper hands the buffer
(and its count, timestamp range and refusals) must be byte-identical to what ``pb_spans`` + the
``Normaliser`` + ``encode_lines`` produce — or the native mapper declines (None) and the receiver
falls back. Fuzz: random and mutated bodies never crash it. End to end: the OTel SDK over HTTP with
``otlp.native`` on. Without the extension these tests fail under TEA_REQUIRE_SERVICES=1 (CI builds it
with ``pip install -e '.[test]'``) and are skipped otherwise.
"""
from __future__ import annotations

import os
import random
import re
import struct

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from google.protobuf.message import DecodeError

from tea.auth.principal import SCOPES, WRITE, Principal
from tea.pipeline.normalise import Normaliser
from tea.pricing import PriceTable
from tea.receive import otlp
from tea.receive.otlp_map import pb_spans
from tea.types import Batch, encode_lines

try:
    from tea import _otlpfast
except ImportError:  # pragma: no cover
    _otlpfast = None

if _otlpfast is None or not otlp.NATIVE_AVAILABLE:
    REASON = ("tea._otlpfast is not built (pip install -e . compiles tea/_otlpfast.c; needs a C compiler and "
              "Python headers)" if _otlpfast is None else
              "the installed opentelemetry-proto's trace messages differ from the layout tea/_otlpfast.c reads")
    if os.environ.get("TEA_REQUIRE_SERVICES") == "1":
        pytest.fail(REASON + " but TEA_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(REASON, allow_module_level=True)

NOW = 1_763_800_000_000_000  # µs
ADMIN = Principal(tenant_id=None, scopes=frozenset(SCOPES))
TENANT = Principal(tenant_id="acme", scopes=frozenset({WRITE}))
DEV = Principal(tenant_id=None, scopes=frozenset(SCOPES), method="dev")


PRICES = PriceTable({"gpt-4o": (0.0025, 0.01), "gpt-4o-mini": (0.00015, 0.0006), "x": (0.1, 3.3), "GET": (1e-300, 7.0)})


def normaliser(skew_s: float = 86400.0, default_tenant: str = "default") -> Normaliser:
    return Normaliser(default_tenant=default_tenant, max_future_skew_s=skew_s, clock=lambda: NOW, prices=PRICES)


def python_path(n: Normaliser, body: bytes, principal: Principal):  # type: ignore[no-untyped-def]
    """What the receiver stores without the native mapper: the same calls as otlp.ingest + Ingestor.submit."""
    events = list(pb_spans(ExportTraceServiceRequest.FromString(body), principal.is_admin))
    only = principal.tenant_id if not principal.is_admin else None
    accepted, errors, low, high = n(events, None, "otlp", None, only, True)
    return (encode_lines(accepted) if accepted else b"", len(accepted), len(events), low, high,
            [(e.index, e.error, e.message, e.event_id, e.field) for e in errors])


def native_path(n: Normaliser, body: bytes, principal: Principal):  # type: ignore[no-untyped-def]
    mapped = otlp.map_native(n, body, principal)
    if mapped is None:
        return None
    return (mapped.ndjson, mapped.accepted, mapped.total, mapped.low, mapped.high,
            [(e.index, e.error, e.message, e.event_id, e.field) for e in mapped.errors])


def check(body: bytes, principal: Principal = ADMIN, n: Normaliser | None = None) -> bool:
    """Native equals Python, or declines. Returns whether the native mapper handled it."""
    n = n or normaliser()
    native = native_path(n, body, principal)
    if native is None:
        return False
    expected = python_path(n, body, principal)
    if native[0] != expected[0]:  # the readable diff first
        assert native[0].decode("utf-8", "replace").splitlines() == expected[0].decode("utf-8", "replace").splitlines()
    assert native == expected
    # every line is a canonical Event, each column in its type's range (what storage's columns hold)
    Batch([native[0]], native[0].count(b"\n"), 0, 0).events()
    return True


# ------------------------------------------------------------------ generated requests
SEMCONV = ["http.request.method", "http.method", "http.route", "url.path", "http.target", "http.response.status_code",
           "http.status_code", "rpc.grpc.status_code", "rpc.system", "mcp.method.name", "gen_ai.tool.name",
           "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "enduser.id", "user.id", "mcp.session.id",
           "session.id", "error.type", "gen_ai.request.model", "event.category", "feature.name", "resource",
           "gen_ai.response.model", "rpc.jsonrpc.error_code", "rpc.response.status_code"]
RESERVED = ["span.name", "span.kind", "scope", "span.events", "name", "time_unix_nano"]
text = st.one_of(st.text(max_size=12), st.sampled_from(["", "GET", "grpc", "/orders/{id}", "_x", "tools/call",
                                                        "é\u2028\U0001F600", "a\"b\\c\n\x00\x1f\x7f", "x" * 1100,
                                                        "-32602", "-0", "-", "32602", "-1234567890", "-12a", "gpt-4o",
                                                        "gpt-4o-mini-2024-07-18", "x" * 1030, "-٣"]))
keys = st.integers(0, 19).flatmap(lambda i: st.sampled_from(RESERVED) if i == 0 else st.text(max_size=8) if i < 8
                                  else st.sampled_from(SEMCONV))
doubles = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0.0, -0.0, 1e-5, 1.5e-5, 9.99e-5, 1e-6, 1e16, 123.456, 1e300]))
ints = st.one_of(st.integers(-2**63, 2**63 - 1), st.sampled_from([0, 1, 200, 404, 500, -1, 2**63 - 1, -2**63]))


def _scalar() -> st.SearchStrategy:
    return st.one_of(
        st.builds(lambda s: common_pb2.AnyValue(string_value=s), text),
        st.builds(lambda i: common_pb2.AnyValue(int_value=i), ints),
        st.builds(lambda b: common_pb2.AnyValue(bool_value=b), st.booleans()),
        st.builds(lambda d: common_pb2.AnyValue(double_value=d), doubles),
        st.builds(lambda b: common_pb2.AnyValue(bytes_value=b), st.binary(max_size=10)),
        st.just(common_pb2.AnyValue()))


def _array(children):  # type: ignore[no-untyped-def]
    return st.builds(lambda vs: common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=vs)),
                     st.lists(children, max_size=3))


def _kvlist(children):  # type: ignore[no-untyped-def]
    return st.builds(lambda kvs: common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(
        values=[common_pb2.KeyValue(key=k, value=v) for k, v in kvs])), st.lists(st.tuples(keys, children), max_size=3))


any_value = st.recursive(_scalar(), lambda children: st.one_of(_array(children), _kvlist(children)), max_leaves=8)


def key_values(max_size: int = 8) -> st.SearchStrategy:
    return st.lists(st.tuples(keys, any_value), max_size=max_size).map(
        lambda kvs: [common_pb2.KeyValue(key=k, value=v) for k, v in kvs])


def unique_key_values(max_size: int = 8) -> st.SearchStrategy:
    return st.lists(st.tuples(st.sampled_from(SEMCONV) | st.text(max_size=8), any_value), max_size=max_size,
                    unique_by=lambda kv: kv[0]).map(lambda kvs: [common_pb2.KeyValue(key=k, value=v) for k, v in kvs])


# mostly present (a span without trace or span id is left to Python: its event id would be a random UUIDv7)
PLAIN_SCALAR = st.one_of(text, ints, st.booleans(), st.binary(max_size=6), st.none())


TOKEN_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")
# token counts whose sum (tokens_used) fits 64 bits: the native mapper leaves a span whose sum overflows to Python
PLAIN_TOKENS = st.one_of(text, st.integers(-2**62, 2**62), st.booleans(), st.binary(max_size=6), st.none())


def plain_key_values(max_size: int = 8) -> st.SearchStrategy:
    """What real exporters send: unique keys, scalar values (no double for a key TEA stringifies)."""
    pair = (st.sampled_from(SEMCONV) | st.text(max_size=8)).flatmap(
        lambda k: st.tuples(st.just(k), PLAIN_TOKENS if k in TOKEN_KEYS else PLAIN_SCALAR))
    return st.lists(pair, max_size=max_size, unique_by=lambda kv: kv[0]).map(
        lambda kvs: [common_pb2.KeyValue(key=k, value=_any(v)) for k, v in kvs])


def test_a_token_sum_past_64_bits_is_left_to_python() -> None:
    """input + output tokens that overflow a 64-bit tokens_used: the native mapper declines the request."""
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="chat", start_time_unix_nano=NOW * 1000,
        end_time_unix_nano=NOW * 1000 + 10**6)
    for key, value in ((TOKEN_KEYS[0], 1), (TOKEN_KEYS[1], 2**63 - 1)):
        span.attributes.add(key=key, value=common_pb2.AnyValue(int_value=value))
    assert not check(request.SerializeToString())
    span.attributes[0].value.int_value = 0  # (the sum fits: handled natively, as Python maps it)
    assert check(request.SerializeToString())


ids = st.integers(0, 19).flatmap(lambda i: st.just(b"") if i == 0 else st.sampled_from(
    [bytes(16), bytes(8), b"\x01" * 16]) if i == 1 else st.binary(min_size=1, max_size=17))
times = st.one_of(st.integers(0, 2**64 - 1), st.integers(NOW * 1000 - 10**12, NOW * 1000 + 3 * 86400 * 10**9))


@st.composite
def spans(draw, attrs=key_values, ids=ids) -> trace_pb2.Span:  # type: ignore[no-untyped-def]
    span = trace_pb2.Span(trace_id=draw(ids), span_id=draw(ids), parent_span_id=draw(ids), name=draw(text),
                          kind=draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, -1, 2**31 - 1])),
                          start_time_unix_nano=draw(times), end_time_unix_nano=draw(times),
                          trace_state=draw(text), flags=draw(st.integers(0, 2**32 - 1)))
    span.attributes.extend(draw(attrs()))
    for _ in range(draw(st.integers(0, 2))):
        span.events.add(name=draw(text), time_unix_nano=draw(times)).attributes.extend(draw(attrs(3)))
    for _ in range(draw(st.integers(0, 1))):
        span.links.add(trace_id=draw(ids), span_id=draw(ids)).attributes.extend(draw(attrs(2)))
    if draw(st.booleans()):
        span.status.code = draw(st.sampled_from([0, 1, 2, 3]))
        span.status.message = draw(text)
    return span


@st.composite
def requests(draw, attrs=key_values, ids=ids) -> bytes:  # type: ignore[no-untyped-def]
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs = request.resource_spans.add()
        if draw(st.booleans()):
            rs.resource.attributes.extend(draw(attrs(4)))
        for key, value in draw(st.lists(st.tuples(st.sampled_from(["service.name", "tenant.id"]),
                                                  PLAIN_SCALAR.map(_any) if attrs is plain_key_values
                                                  else any_value),
                                        max_size=2, unique_by=lambda kv: kv[0])):
            if key not in {kv.key for kv in rs.resource.attributes}:
                rs.resource.attributes.add(key=key, value=value)
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add()
            if draw(st.booleans()):
                ss.scope.name = draw(text)
                ss.scope.version = draw(text)
            ss.spans.extend(draw(st.lists(spans(attrs, ids), max_size=4)))
    return request.SerializeToString()


PRINCIPALS = st.sampled_from([ADMIN, TENANT, DEV, Principal(tenant_id="_x", scopes=frozenset({WRITE}))])
SLOW = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.data_too_large])


@SLOW
@given(body=requests(), principal=PRINCIPALS, skew=st.sampled_from([86400.0, 0.0, 1.0]))
def test_generated_requests_are_byte_identical_or_declined(body: bytes, principal: Principal, skew: float) -> None:
    check(body, principal, normaliser(skew))


@SLOW
@given(body=requests(plain_key_values, st.binary(min_size=1, max_size=17)), principal=PRINCIPALS,
       skew=st.sampled_from([86400.0, 1.0]))
def test_plain_requests_are_always_handled_natively(body: bytes, principal: Principal, skew: float) -> None:
    assert check(body, principal, normaliser(skew))


@SLOW
@given(body=requests(unique_key_values), principal=PRINCIPALS)
def test_ordinary_requests_are_handled_natively(body: bytes, principal: Principal) -> None:
    """Unique keys, no reserved keys: the native mapper declines only for the documented cases."""
    message = ExportTraceServiceRequest.FromString(body)
    spans_ = [s for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans]
    declinable = any(not s.trace_id or not s.span_id for s in spans_) or any(
        kv.value.WhichOneof("value") in ("double_value", "array_value", "kvlist_value")
        and kv.key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "enduser.id", "user.id",
                       "mcp.session.id", "session.id", "error.type", "mcp.method.name", "gen_ai.tool.name",
                       "http.request.method", "http.method", "http.route", "url.path", "http.target",
                       "service.name", "tenant.id")
        for rs in message.resource_spans for kv in rs.resource.attributes) or any(
        kv.value.WhichOneof("value") in ("double_value", "array_value", "kvlist_value")
        and kv.key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "enduser.id", "user.id",
                       "mcp.session.id", "session.id", "error.type", "mcp.method.name", "gen_ai.tool.name",
                       "http.request.method", "http.method", "http.route", "url.path", "http.target",
                       "gen_ai.request.model", "gen_ai.response.model")
        for s in spans_ for kv in s.attributes) or any(
        len({kv.key for kv in e.attributes}) < len(e.attributes) or
        {kv.key for kv in e.attributes} & {"name", "time_unix_nano"} for s in spans_ for e in s.events) or _nested_dups(
        message)
    handled = check(body, principal)
    assert handled or declinable


def _nested_dups(message: ExportTraceServiceRequest) -> bool:
    def walk(value: common_pb2.AnyValue, depth: int) -> bool:
        kind = value.WhichOneof("value")
        if kind == "array_value":
            return depth >= 15 or any(walk(v, depth + 1) for v in value.array_value.values)
        if kind == "kvlist_value":
            ks = [kv.key for kv in value.kvlist_value.values]
            return depth >= 15 or len(set(ks)) < len(ks) or any(walk(kv.value, depth + 1)
                                                                 for kv in value.kvlist_value.values)
        return False
    for rs in message.resource_spans:
        for kv in rs.resource.attributes:
            if walk(kv.value, 0):
                return True
        for ss in rs.scope_spans:
            for s in ss.spans:
                for kv in list(s.attributes) + [a for e in s.events for a in e.attributes]:
                    if walk(kv.value, 0):
                        return True
    return False


def _request(*span_attrs: dict, resource: dict | None = None, scope: str = "tests", **span_fields) -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    for k, v in (resource or {"service.name": "svc"}).items():
        rs.resource.attributes.add(key=k, value=_any(v))
    ss = rs.scope_spans.add()
    ss.scope.name = scope
    for i, attrs in enumerate(span_attrs):
        fields = {"trace_id": bytes([i + 1]) * 16, "span_id": bytes([i + 1]) * 8, "name": f"span {i}",
                  "start_time_unix_nano": NOW * 1000 - 5_000_000, "end_time_unix_nano": NOW * 1000, **span_fields}
        span = ss.spans.add(**fields)
        for k, v in attrs.items():
            span.attributes.add(key=k, value=_any(v))
    return request.SerializeToString()


def _any(v) -> common_pb2.AnyValue:  # type: ignore[no-untyped-def]
    if isinstance(v, bool):
        return common_pb2.AnyValue(bool_value=v)
    if isinstance(v, int):
        return common_pb2.AnyValue(int_value=v)
    if isinstance(v, float):
        return common_pb2.AnyValue(double_value=v)
    if isinstance(v, bytes):
        return common_pb2.AnyValue(bytes_value=v)
    if isinstance(v, list):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[_any(x) for x in v]))
    if isinstance(v, dict):
        return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(
            values=[common_pb2.KeyValue(key=k, value=_any(x)) for k, x in v.items()]))
    if v is None:
        return common_pb2.AnyValue()
    return common_pb2.AnyValue(string_value=v)


@pytest.mark.parametrize("attrs", [
    {"http.request.method": "GET", "http.route": "/orders/{id}", "http.response.status_code": 200},
    {"http.method": "POST", "url.path": "/x", "http.status_code": 503, "error.type": "500"},
    {"http.method": 7, "http.target": True, "http.status_code": True},
    {"http.request.method": "GET", "http.route": "", "url.path": 0, "http.target": "/t"},
    {"mcp.method.name": "tools/call", "gen_ai.tool.name": "search", "mcp.session.id": "s1",
     "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30},
    {"gen_ai.tool.name": "search", "gen_ai.usage.input_tokens": "12", "gen_ai.usage.output_tokens": None},
    {"gen_ai.usage.input_tokens": True, "gen_ai.usage.output_tokens": 2**62},
    {"rpc.system": "grpc", "rpc.grpc.status_code": 14},
    {"enduser.id": "", "user.id": "u1", "session.id": b"\x00\x01"},
    {"enduser.id": 0, "user.id": "", "error.type": ""},
    {"k": [1, "two", 3.5, None, [True], {"n": b"xyz"}], "d": 1e-5, "e": float("nan"), "f": -0.0},
    {"resource": "mine", "é\u2028": "\U0001F600", "ctl": "\x00\x1f\x7f\"\\"},
    {},
    {"mcp.method.name": "tools/call", "gen_ai.tool.name": "search", "gen_ai.request.model": "gpt-4o-mini-2024-07-18",
     "gen_ai.usage.input_tokens": 1234, "gen_ai.usage.output_tokens": 56, "rpc.response.status_code": "-32602"},
    {"gen_ai.request.model": "", "gen_ai.response.model": "gpt-4o", "gen_ai.usage.output_tokens": 10**15,
     "rpc.jsonrpc.error_code": -32601, "http.response.status_code": 200},
    {"gen_ai.request.model": "unpriced", "gen_ai.usage.input_tokens": -5, "gen_ai.usage.output_tokens": False,
     "error.type": "-32000", "rpc.jsonrpc.error_code": 2**40},
    {"gen_ai.request.model": 42, "gen_ai.tool.name": True, "error.type": "tool_error", "gen_ai.usage.input_tokens": 3},
    {"gen_ai.request.model": "x" * 1500, "gen_ai.usage.input_tokens": 7, "rpc.response.status_code": -32602},
    {"http.status_code": 2**31 - 1}, {"http.status_code": -(2**31)}, {"http.status_code": 2**40},
    {"http.response.status_code": -(2**31) - 1, "rpc.jsonrpc.error_code": -32601},
])
def test_semantic_conventions_are_native_and_identical(attrs: dict) -> None:
    assert check(_request(attrs, {"http.request.method": "GET"}))


@pytest.mark.parametrize(("code", "column"), [(2**31 - 1, 2**31 - 1), (-(2**31), -(2**31)), (2**31, None),
                                              (2**40, None), (-(2**63), None), (True, None)])
def test_a_status_code_the_column_cannot_hold_stays_an_attribute(code: int, column: int | None) -> None:
    """status_code is an INTEGER (Int32) column: a larger HTTP status code (or a boolean) is not lifted into it
    (storage would refuse the span's whole batch); the span keeps it in its attributes."""
    body = _request({"http.status_code": code}, {})
    assert check(body)
    event = msgspec.json.decode(otlp.map_native(normaliser(), body, ADMIN).ndjson.splitlines()[0])  # type: ignore[union-attr]
    assert event.get("status_code") == column and event["attributes"]["http.status_code"] == code


@pytest.mark.parametrize(("tokens", "used"), [((5, -3), 5), ((True, 7), 7), ((-1, None), 0), ((2**62, 2**62), 2**63 - 1),
                                              ((2**63 - 1, 1), 2**63 - 1)])
def test_tokens_used_sums_only_counts_within_the_column(tokens: tuple, used: int) -> None:
    """tokens_used (a count: 0 to 2**63 - 1) adds the token counts; what is no count adds 0, the sum stops at the
    column's largest value — the same from either mapper (past int64 the native one leaves the span to Python)."""
    attrs = {k: v for k, v in zip(("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"), tokens) if v is not None}
    body = _request(attrs, {})
    check(body)
    event = msgspec.json.decode(python_path(normaliser(), body, ADMIN)[0].splitlines()[0])
    assert event["tokens_used"] == used


def test_mcp_and_genai_columns() -> None:
    """A tool call over MCP: the method and the tool in their own columns, the model, each token count, the
    cost from the price table, the JSON-RPC error as status_code and error — the same from either mapper."""
    body = _request({"mcp.method.name": "tools/call", "gen_ai.tool.name": "search", "mcp.session.id": "s-1",
                     "gen_ai.request.model": "gpt-4o-mini-2024-07-18", "gen_ai.usage.input_tokens": 2000,
                     "gen_ai.usage.output_tokens": 500, "rpc.response.status_code": "-32602"})
    assert check(body)
    mapped = otlp.map_native(normaliser(), body, ADMIN)
    event = msgspec.json.decode(mapped.ndjson.splitlines()[0])  # type: ignore[union-attr]
    assert {k: event.get(k) for k in ("method", "tool", "model", "session_id", "input_tokens", "output_tokens",
                                      "tokens_used", "status", "status_code", "protocol")} == {
        "method": "tools/call", "tool": "search", "model": "gpt-4o-mini-2024-07-18", "session_id": "s-1",
        "input_tokens": 2000, "output_tokens": 500, "tokens_used": 2500, "status": "error", "status_code": -32602,
        "protocol": "mcp"}
    assert event["cost"] == 2000 * 0.00015 / 1000 + 500 * 0.0006 / 1000


@pytest.mark.parametrize("resource", [{"service.name": "svc", "tenant.id": "t9"}, {"tenant.id": "_internal"},
                                      {"tenant.id": ""}, {"tenant.id": 42}, {"service.name": 5},
                                      {"tenant.id": "é" * 300, "service.name": "s" * 2000}, {}])
@pytest.mark.parametrize("principal", [ADMIN, TENANT, DEV])
def test_tenants_and_sources_from_the_resource(resource: dict, principal: Principal) -> None:
    assert check(_request({"k": "v"}, resource=resource), principal)


def test_refusals_match_the_normaliser() -> None:
    body = _request({"a": 1}, {"a": 2}, {"a": 3})
    far = ExportTraceServiceRequest.FromString(body)
    far.resource_spans[0].scope_spans[0].spans[1].start_time_unix_nano = (NOW + 3 * 86400 * 10**6) * 1000
    mapped = otlp.map_native(normaliser(), far.SerializeToString(), ADMIN)
    assert mapped is not None and mapped.accepted == 2 and [e.index for e in mapped.errors] == [1]
    assert check(far.SerializeToString())
    assert check(_request({"a": 1}, resource={"tenant.id": "_tea"}), ADMIN)


def test_declined_cases() -> None:
    n = normaliser()
    assert otlp.map_native(n, _request({"span.name": "x"}), ADMIN) is None  # overwritten in place by Python
    assert otlp.map_native(n, _request({}, trace_id=b""), ADMIN) is None  # the event id would be random
    assert otlp.map_native(n, _request({"gen_ai.usage.input_tokens": 1.5}), ADMIN) is None
    deep: object = "leaf"
    for _ in range(40):
        deep = [deep]
    assert otlp.map_native(n, _request({"deep": deep}), ADMIN) is None
    assert python_path(n, _request({"deep": deep}), ADMIN)[1] == 1  # (Python maps it: the receiver falls back)
    dup = ExportTraceServiceRequest.FromString(_request({"a": 1}))
    dup.resource_spans[0].scope_spans[0].spans[0].attributes.add(key="a", value=_any(2))
    assert otlp.map_native(n, dup.SerializeToString(), ADMIN) is None
    staged = Normaliser(clock=lambda: NOW, stages=(lambda e: e,))
    assert otlp.map_native(staged, _request({"a": 1}), ADMIN) is None


@pytest.mark.parametrize("shape", ["semconv", "rhesis", "genai", "mcp", "mixed"])
def test_the_benchmark_bodies(shape: str) -> None:
    from bench.otlp_spans import Bodies
    factory = Bodies(3, shape=shape)
    for _ in range(20):
        assert check(factory.next())


@settings(max_examples=2000, deadline=None)
@given(x=st.floats(allow_nan=True, allow_infinity=True) | st.integers(0, 2**64 - 1).map(
    lambda bits: struct.unpack("<d", struct.pack("<Q", bits))[0]))
def test_doubles_are_written_like_msgspec(x: float) -> None:
    import msgspec
    assert _otlpfast.format_double(x) == msgspec.json.encode(x)


# ------------------------------------------------------------------ fuzz
def _fuzz_one(body: bytes, principal: Principal = ADMIN) -> None:
    n = normaliser()
    native = native_path(n, body, principal)  # must never crash, whatever the bytes
    if native is None:
        return
    # the receiver does not parse a request the native mapper handles: upb must accept whatever it does
    ExportTraceServiceRequest.FromString(body)
    assert native == python_path(n, body, principal)


@settings(max_examples=1000, deadline=None)
@given(body=st.binary(max_size=400))
def test_fuzz_random_bytes(body: bytes) -> None:
    _fuzz_one(body)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=requests(), data=st.data())
def test_fuzz_mutated_requests(body: bytes, data: st.DataObject) -> None:
    assume(body)
    mutated = bytearray(body)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "dup"]))
        i = data.draw(st.integers(0, max(0, len(mutated) - 1)))
        if op == "flip" and mutated:
            mutated[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and mutated:
            mutated[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del mutated[i:i + data.draw(st.integers(1, 8))]
        elif op == "insert":
            mutated[i:i] = data.draw(st.binary(min_size=1, max_size=6))
        else:
            mutated += mutated[i:i + data.draw(st.integers(1, 40))]
    _fuzz_one(bytes(mutated))


def test_fuzz_mutated_benchmark_bodies() -> None:
    from bench.otlp_spans import Bodies
    rng = random.Random(7)
    factory = Bodies(5)
    for _ in range(300):
        body = bytearray(factory.next())
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(body))
            if rng.random() < 0.7:
                body[i] = rng.randrange(256)
            else:
                del body[i:i + rng.randint(1, 30)]
        _fuzz_one(bytes(body), rng.choice([ADMIN, TENANT]))


# ------------------------------------------------------------------ what upb refuses, the native mapper declines
MARK = "QQQQ"
BAD = b"\xff\xfeQQ"  # invalid UTF-8 of the marker's length: the serialized lengths stay right


def _bad_utf8_requests() -> dict[str, bytes]:
    """One request per string field the output never shows, with invalid UTF-8 in it."""
    def request(where: str, skew: bool = False) -> bytes:
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.add(key="service.name", value=common_pb2.AnyValue(string_value="svc"))
        ss = rs.scope_spans.add()
        ss.scope.name = "lib"
        span = ss.spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="op",
                            start_time_unix_nano=(NOW + (10 * 86400 * 10**6 if skew else 0)) * 1000,
                            end_time_unix_nano=(NOW + 1) * 1000)
        nested = common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[
            common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=[
                common_pb2.KeyValue(key="k", value=common_pb2.AnyValue(string_value=MARK))]))]))
        if where == "resource_spans.schema_url":
            rs.schema_url = MARK
        elif where == "scope_spans.schema_url":
            ss.schema_url = MARK
        elif where == "scope.version":
            ss.scope.version = MARK
        elif where == "scope.attributes key":
            ss.scope.attributes.add(key=MARK, value=common_pb2.AnyValue(int_value=1))
        elif where == "scope.attributes nested value":
            ss.scope.attributes.add(key="x", value=nested)
        elif where == "resource.entity_refs":
            rs.resource.entity_refs.add(type="host", id_keys=["host.name", MARK])
        elif where.startswith("span.trace_state"):
            span.trace_state = MARK
        elif where.startswith("link.trace_state"):
            span.links.add(trace_id=b"\x03" * 16, span_id=b"\x04" * 8, trace_state=MARK)
        elif where.startswith("link.attributes"):
            span.links.add(trace_id=b"\x03" * 16, span_id=b"\x04" * 8).attributes.add(key="x", value=nested)
        elif where.startswith("event.name"):
            span.events.add(name=MARK)
        elif where.startswith("event.attributes"):
            span.events.add(name="e").attributes.add(key="x", value=nested)
        elif where.startswith("span.attributes nested value"):
            span.attributes.add(key="x", value=nested)
        body = req.SerializeToString()
        assert body.count(MARK.encode()) == 1
        return body.replace(MARK.encode(), BAD)
    cases = ["resource_spans.schema_url", "scope_spans.schema_url", "scope.version", "scope.attributes key",
             "scope.attributes nested value", "resource.entity_refs", "span.trace_state", "link.trace_state",
             "link.attributes", "event.name", "event.attributes", "span.attributes nested value"]
    out = {case: request(case) for case in cases}
    # a span refused for clock skew is never written out: its unwritten parts are checked all the same
    out.update({f"{case} (refused span)": request(case, skew=True) for case in
                ("span.trace_state", "link.attributes", "event.name", "event.attributes",
                 "span.attributes nested value")})
    return out


BAD_UTF8 = _bad_utf8_requests()


@pytest.mark.parametrize("case", sorted(BAD_UTF8))
def test_invalid_utf8_anywhere_is_declined_as_upb_refuses_it(case: str) -> None:
    body = BAD_UTF8[case]
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(body)
    assert native_path(normaliser(), body, ADMIN) is None, case


def test_the_same_requests_with_valid_text_are_handled() -> None:
    for case, body in BAD_UTF8.items():
        fixed = body.replace(BAD, "éé".encode())  # valid UTF-8, same length
        assert check(fixed, ADMIN, normaliser(skew_s=86400.0)), case


# ------------------------------------------------------------------ end to end
def test_sdk_exporter_over_http_with_native_on(secure) -> None:  # type: ignore[no-untyped-def]
    from tests.auth.conftest import admin_headers, bearer, create_token
    from tests.otlp.test_otlp import emit_trace, exporters
    live = secure(storage_backend="duckdb", otlp__grpc_port=0)
    assert live.app.settings.otlp.native
    token = create_token(live.url, "acme", "enterprise")["token"]
    trace_id = emit_trace(exporters(live, "http", token))
    live.wait_stored(3)
    spans = httpx.get(live.url + "/v1/events", params={"trace_id": trace_id}, headers=bearer(token)).json()["events"]
    assert {e["method"] for e in spans} == {"POST /orders", "tools/call", "db"}
    mcp = next(e for e in spans if e["method"] == "tools/call")
    assert mcp["tokens_used"] == 150 and mcp["tenant_id"] == "acme" and mcp["source"] == "checkout"
    scrape = httpx.get(live.url + "/metrics", headers=admin_headers()).text  # (the counters as scraped)
    assert re.search(r'^tea_otlp_trace_requests_total\{mapper="native"\} [1-9]', scrape, re.M), scrape[:2000]
    assert 'mapper="fallback"' not in scrape
