"""The kinds of spans ``bench.otlp --shape`` sends: 100 spans per request, each shape as its producers emit it.

* ``semconv`` — HTTP server spans with current semantic conventions (``http.request.method``,
  ``http.route``, ``http.response.status_code``, ``url.path``, ...): 25 traces of 4.
* ``rhesis`` — the seed Telemetry Processor's producers (CONTRACTS.md 1.4): the backend middleware's
  ``http.<METHOD>.<path>`` spans (``event.category=endpoint_usage``, ``http.method``, ``http.route``,
  ``http.url``, ``http.status_code``, ``duration_ms``, hashed ``user.id``/``organization.id``), the
  instrumentation's ``feature.<name>`` spans (``feature_usage``, ``feature.name``/``feature.action``,
  ``metadata.*``) and ``user.activity`` spans (``event.type=login|logout``, ``session.id``), under the
  resource ``service.name=rhesis-backend``, ``service.namespace=rhesis``, ``deployment.type``; the frontend's
  page views (``feature.name=page_view``, ``page.path``). Every span routes to an analytics table.
* ``genai`` — GenAI semantic conventions: an agent invocation with two ``chat`` calls and a tool execution
  (``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.usage.*_tokens``,
  ``gen_ai.response.finish_reasons``, ...).
* ``mcp`` — MCP semantic conventions, client and server side (``mcp.method.name`` ``tools/call`` and others,
  ``gen_ai.tool.name``, ``mcp.session.id``, ``jsonrpc.request.id``, ``mcp.protocol.version``, ...).
* ``mixed`` — one resource of each: the seed's producers (endpoint, feature, login/logout), current HTTP
  semconv, old HTTP semconv (``http.method``, ``http.target``, ``http.status_code``: routed to
  ``endpoint_usage`` like the seed's collector does), GenAI and MCP, each resource a different tenant.

A shape is a function ``(rng, variant, ids, now_ns) -> [(resource, scope, spans)]``; ``ids.trace()`` hands
out the trace ids whose counter ``otlp_spans.Bodies`` rewrites per request.
"""
from __future__ import annotations

import hashlib
import random
from typing import Callable

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

SHAPES = ("semconv", "rhesis", "genai", "mcp", "mixed")
PARENT = (None, 0, 0, 1)  # index of each span's parent within a semconv trace of 4
ROUTES = (("GET", "/orders/{id}", "/orders/{}"), ("GET", "/inventory/{sku}", "/inventory/SKU-{}"),
          ("GET", "/users/{id}", "/users/u{}"), ("POST", "/payments", "/payments"),
          ("GET", "/orders", "/orders"), ("PUT", "/carts/{id}", "/carts/{}"))
SERVICES = ("orders-api", "checkout-api", "catalog-api", "accounts-api")
RHESIS_ROUTES = (("GET", "/api/tests"), ("GET", "/api/test_sets"), ("POST", "/api/test_runs"), ("GET", "/api/projects"),
                 ("GET", "/api/test_results"), ("PUT", "/api/prompts/7"), ("GET", "/api/metrics"), ("DELETE", "/api/tests/42"))
FEATURES = (("test_run", "created"), ("test_set", "updated"), ("prompt", "viewed"), ("metric", "created"),
            ("page_view", "viewed"))
MODELS = (("openai", "gpt-4o", "gpt-4o-2024-08-06", "api.openai.com"),
          ("anthropic", "claude-sonnet-4", "claude-sonnet-4-20250514", "api.anthropic.com"),
          ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "api.openai.com"))
TOOLS = ("get_weather", "search_docs", "create_issue", "query_database", "read_file")
MCP_METHODS = ("tools/call", "tools/call", "tools/call", "resources/read", "prompts/get", "tools/list")
Group = tuple[list[KeyValue], tuple[str, str], list[Span]]


class TraceIds:
    """Trace ids ``nonce(6) | counter(4) | trace index(1) | 5 random``, in the order handed out."""

    def __init__(self, nonce: bytes, rng: random.Random) -> None:
        self.nonce, self.rng, self.issued = nonce, rng, []  # type: ignore[var-annotated]

    def trace(self) -> bytes:
        trace_id = self.nonce + bytes(4) + bytes([len(self.issued)]) + self.rng.randbytes(5)
        self.issued.append(trace_id)
        return trace_id


def kv(key: str, value: str | int | float | bool | list[str]) -> KeyValue:
    if isinstance(value, list):
        return KeyValue(key=key, value=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=v) for v in value])))
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _kvs(attrs: dict) -> list[KeyValue]:
    return [kv(k, v) for k, v in attrs.items()]


def _span(trace_id: bytes, span_id: bytes, parent: bytes, name: str, kind: int, start_ns: int, duration_ns: int,
          attrs: dict, error: bool = False) -> Span:
    return Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name, kind=kind,
                start_time_unix_nano=start_ns, end_time_unix_nano=start_ns + duration_ns, attributes=_kvs(attrs),
                status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_UNSET))


def _hash16(value: str) -> str:  # the producers' ID hashing: sha256 hex, first 16
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def _resource(service: str, variant: int, tenant: str, **extra: str) -> list[KeyValue]:
    return _kvs({"service.name": service, "service.version": "2.14.1", "deployment.environment.name": "production",
                 "host.name": f"web-{variant % 7:02d}", "telemetry.sdk.name": "opentelemetry",
                 "telemetry.sdk.language": "python", "telemetry.sdk.version": "1.45.2", "tenant.id": tenant, **extra})


# ------------------------------------------------------------------ semconv (current and old HTTP)
def _http_attrs(rng: random.Random, old: bool) -> tuple[str, dict, int]:
    method, route, path = rng.choice(ROUTES)
    status = 200 if rng.random() < 0.95 else rng.choice((404, 500, 503))
    url_path = path.format(rng.randrange(100_000))
    if old:  # the HTTP conventions before 1.21, still emitted by older instrumentations
        attrs = {"http.method": method, "http.route": route, "http.target": url_path, "http.status_code": status,
                 "http.scheme": "https", "http.url": f"https://api.example.com{url_path}", "net.host.name": "api.example.com",
                 "enduser.id": f"user-{rng.randrange(5000)}", "net.peer.ip": f"10.0.{rng.randrange(256)}.7",
                 "http.user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0"}
    else:
        attrs = {"http.request.method": method, "http.route": route, "http.response.status_code": status,
                 "url.path": url_path, "url.scheme": "https", "server.address": "api.example.com",
                 "user.id": f"user-{rng.randrange(5000)}", "client.address": f"10.0.{rng.randrange(256)}.7",
                 "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0"}
    if status >= 500:
        attrs["error.type"] = str(status)
    return f"{method} {route}", attrs, status


def _http_traces(rng: random.Random, ids: TraceIds, now_ns: int, traces: int, old: bool = False) -> list[Span]:
    spans = []
    for _ in range(traces):
        trace_id = ids.trace()
        span_ids = [rng.randbytes(8) for _ in range(4)]
        start = now_ns - rng.randrange(1_000_000_000)
        for i, parent in enumerate(PARENT):
            name, attrs, status = _http_attrs(rng, old)
            duration = rng.randrange(500_000, 4_000_000) if parent is not None else rng.randrange(5_000_000, 25_000_000)
            spans.append(_span(trace_id, span_ids[i], b"" if parent is None else span_ids[parent], name,
                               Span.SPAN_KIND_SERVER, start + i * 100_000, duration, attrs, status >= 500))
    return spans


def semconv(rng: random.Random, variant: int, ids: TraceIds, now_ns: int) -> list[Group]:
    resource = _resource(SERVICES[variant % len(SERVICES)], variant, f"tenant-{variant % 4}")
    return [(resource, ("opentelemetry.instrumentation.asgi", "0.52b1"), _http_traces(rng, ids, now_ns, 25))]


# ------------------------------------------------------------------ the seed's producers
def _rhesis_ids(rng: random.Random) -> dict:
    return {"user.id": _hash16(f"user-{rng.randrange(2000)}"), "organization.id": _hash16(f"org-{rng.randrange(40)}")}


def _endpoint(rng: random.Random, trace_id: bytes, start: int) -> Span:
    method, path = rng.choice(RHESIS_ROUTES)
    status = 200 if rng.random() < 0.93 else rng.choice((400, 401, 404, 422, 500))
    duration_ms = round(rng.uniform(2.0, 180.0), 3)
    attrs = {"_rhesis.telemetry_enabled": True, "event.category": "endpoint_usage", "http.method": method,
             "http.route": path, "http.url": f"https://app.rhesis.ai{path}", "http.status_code": status,
             "duration_ms": duration_ms, **_rhesis_ids(rng)}
    return _span(trace_id, rng.randbytes(8), b"", f"http.{method}.{path}", Span.SPAN_KIND_SERVER, start,
                 int(duration_ms * 1e6), attrs, status >= 500)


def _feature(rng: random.Random, trace_id: bytes, parent: bytes, start: int) -> Span:
    name, action = rng.choice(FEATURES)
    attrs = {"event.category": "feature_usage", "feature.name": name, "feature.action": action,
             "deployment.type": "cloud", **_rhesis_ids(rng)}
    if name == "page_view":  # the frontend's page views
        attrs["page.path"] = rng.choice(("/", "/tests", "/test-sets", "/projects/3", "/metrics"))
    else:
        attrs.update({"metadata.count": str(rng.randrange(1, 50)), "metadata.source": rng.choice(("ui", "sdk", "api"))})
    return _span(trace_id, rng.randbytes(8), parent, f"feature.{name}", Span.SPAN_KIND_INTERNAL, start,
                 rng.randrange(100_000, 2_000_000), attrs)


def _activity(rng: random.Random, trace_id: bytes, parent: bytes, start: int) -> Span:
    event = rng.choice(("login", "login", "logout"))
    attrs = {"event.category": "user_activity", "event.type": event, "session.id": f"sess-{rng.getrandbits(64):016x}",
             "deployment.type": "cloud", "metadata.auth_method": rng.choice(("password", "google", "github")),
             "metadata.ip_country": rng.choice(("DE", "US", "FR", "IN")), **_rhesis_ids(rng)}
    return _span(trace_id, rng.randbytes(8), parent, "user.activity", Span.SPAN_KIND_INTERNAL, start,
                 rng.randrange(100_000, 1_000_000), attrs)


def _rhesis_spans(rng: random.Random, ids: TraceIds, now_ns: int, spans_wanted: int) -> list[Span]:
    """Request traces: an endpoint span, and in about a third of them a feature span or a login/logout inside."""
    spans: list[Span] = []
    while len(spans) < spans_wanted:
        trace_id, start = ids.trace(), now_ns - rng.randrange(1_000_000_000)
        root = _endpoint(rng, trace_id, start)
        spans.append(root)
        if len(spans) < spans_wanted and rng.random() < 0.35:
            child = _activity if rng.random() < 0.3 else _feature
            spans.append(child(rng, trace_id, root.span_id, start + 50_000))
    return spans


def rhesis(rng: random.Random, variant: int, ids: TraceIds, now_ns: int) -> list[Group]:
    resource = _kvs({"service.name": "rhesis-backend", "service.namespace": "rhesis", "service.version": "0.4.2",
                     "deployment.type": "cloud", "tenant.id": f"tenant-{variant % 4}"})
    return [(resource, ("rhesis.telemetry", "1.0"), _rhesis_spans(rng, ids, now_ns, 100))]


# ------------------------------------------------------------------ GenAI and MCP
def _chat(rng: random.Random, trace_id: bytes, parent: bytes, start: int) -> Span:
    provider, model, response_model, host = rng.choice(MODELS)
    inputs, outputs = rng.randrange(200, 6000), rng.randrange(20, 1200)
    error = rng.random() < 0.02
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": model,
             "gen_ai.response.model": response_model, "gen_ai.request.temperature": 0.2,
             "gen_ai.request.max_tokens": 1024, "gen_ai.usage.input_tokens": inputs,
             "gen_ai.usage.output_tokens": outputs, "gen_ai.response.finish_reasons": ["tool_calls" if rng.random() < 0.4 else "stop"],
             "gen_ai.response.id": f"chatcmpl-{rng.getrandbits(96):024x}", "server.address": host, "server.port": 443}
    if error:
        attrs["error.type"] = rng.choice(("rate_limit_exceeded", "timeout"))
    return _span(trace_id, rng.randbytes(8), parent, f"chat {model}", Span.SPAN_KIND_CLIENT, start,
                 rng.randrange(300_000_000, 4_000_000_000) // 10, attrs, error)


def _tool(rng: random.Random, trace_id: bytes, parent: bytes, start: int) -> Span:
    tool = rng.choice(TOOLS)
    attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool, "gen_ai.tool.type": "function",
             "gen_ai.tool.call.id": f"call_{rng.getrandbits(64):016x}"}
    return _span(trace_id, rng.randbytes(8), parent, f"execute_tool {tool}", Span.SPAN_KIND_INTERNAL, start,
                 rng.randrange(1_000_000, 90_000_000), attrs)


def _genai_spans(rng: random.Random, ids: TraceIds, now_ns: int, traces: int) -> list[Span]:
    spans = []
    for _ in range(traces):
        trace_id, start = ids.trace(), now_ns - rng.randrange(1_000_000_000)
        agent = rng.choice(("support-agent", "research-agent", "triage-agent"))
        root = _span(trace_id, rng.randbytes(8), b"", f"invoke_agent {agent}", Span.SPAN_KIND_INTERNAL, start,
                     rng.randrange(500_000_000, 6_000_000_000) // 10,
                     {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent,
                      "gen_ai.agent.id": f"asst_{_hash16(agent)}", "gen_ai.provider.name": "openai",
                      "gen_ai.conversation.id": f"conv_{rng.getrandbits(64):016x}"})
        spans += [root, _chat(rng, trace_id, root.span_id, start + 1_000_000),
                  _tool(rng, trace_id, root.span_id, start + 2_000_000),
                  _chat(rng, trace_id, root.span_id, start + 3_000_000)]
    return spans


def _mcp_span(rng: random.Random, trace_id: bytes, parent: bytes, start: int, kind: int, session: str,
              method: str, request_id: int) -> Span:
    attrs = {"mcp.method.name": method, "mcp.session.id": session, "mcp.protocol.version": "2025-06-18",
             "jsonrpc.request.id": str(request_id), "network.transport": "tcp", "network.protocol.name": "http",
             "network.protocol.version": "1.1"}
    name = method
    if method == "tools/call":
        tool = rng.choice(TOOLS)
        attrs.update({"gen_ai.tool.name": tool, "gen_ai.operation.name": "execute_tool"})
        name = f"tools/call {tool}"
    elif method == "resources/read":
        attrs["mcp.resource.uri"] = f"file:///srv/docs/{rng.randrange(500)}.md"
    elif method == "prompts/get":
        attrs["gen_ai.prompt.name"] = rng.choice(("summarize", "review_code", "triage"))
    error = rng.random() < 0.03
    if error:
        attrs.update({"error.type": "tool_error" if method == "tools/call" else "-32602", "rpc.jsonrpc.error_code": -32602})
    if kind == Span.SPAN_KIND_SERVER:
        attrs.update({"client.address": f"10.1.{rng.randrange(256)}.9", "client.port": rng.randrange(30000, 60000)})
    else:
        attrs.update({"server.address": "mcp.internal", "server.port": 8931})
    return _span(trace_id, rng.randbytes(8), parent, name, kind, start, rng.randrange(500_000, 40_000_000), attrs, error)


def _mcp_spans(rng: random.Random, ids: TraceIds, now_ns: int, traces: int) -> list[Span]:
    """Per trace: two calls, each as the client sent it and as the server handled it."""
    spans = []
    for _ in range(traces):
        trace_id, start = ids.trace(), now_ns - rng.randrange(1_000_000_000)
        session = f"{rng.getrandbits(128):032x}"
        for call in range(2):
            method, request_id = rng.choice(MCP_METHODS), rng.randrange(1, 10_000)
            client = _mcp_span(rng, trace_id, b"", start + call * 5_000_000, Span.SPAN_KIND_CLIENT, session, method,
                               request_id)
            spans += [client, _mcp_span(rng, trace_id, client.span_id, start + call * 5_000_000 + 200_000,
                                        Span.SPAN_KIND_SERVER, session, method, request_id)]
    return spans


def genai(rng: random.Random, variant: int, ids: TraceIds, now_ns: int) -> list[Group]:
    resource = _resource(("support-bot", "research-assistant")[variant % 2], variant, f"tenant-{variant % 4}")
    return [(resource, ("opentelemetry.instrumentation.openai_v2", "2.1b0"), _genai_spans(rng, ids, now_ns, 25))]


def mcp(rng: random.Random, variant: int, ids: TraceIds, now_ns: int) -> list[Group]:
    resource = _resource(("mcp-gateway", "docs-mcp-server")[variant % 2], variant, f"tenant-{variant % 4}")
    return [(resource, ("opentelemetry.instrumentation.mcp", "0.1b0"), _mcp_spans(rng, ids, now_ns, 25))]


def mixed(rng: random.Random, variant: int, ids: TraceIds, now_ns: int) -> list[Group]:
    """28 spans of the seed's producers, 20 + 20 HTTP (current, old conventions), 16 GenAI, 16 MCP: one resource
    of each kind, each a different tenant (12 in all over the variants)."""
    def tenant(k: int) -> str:
        return f"tenant-{(variant * 5 + k) % 12}"
    rhesis_resource = _kvs({"service.name": "rhesis-backend", "service.namespace": "rhesis", "service.version": "0.4.2",
                            "deployment.type": "self-hosted", "tenant.id": tenant(0)})
    return [
        (rhesis_resource, ("rhesis.telemetry", "1.0"), _rhesis_spans(rng, ids, now_ns, 28)),
        (_resource("orders-api", variant, tenant(1)), ("opentelemetry.instrumentation.asgi", "0.52b1"),
         _http_traces(rng, ids, now_ns, 5)),
        (_resource("legacy-billing", variant, tenant(2)), ("opentelemetry.instrumentation.flask", "0.40b0"),
         _http_traces(rng, ids, now_ns, 5, old=True)),
        (_resource("support-bot", variant, tenant(3)), ("opentelemetry.instrumentation.openai_v2", "2.1b0"),
         _genai_spans(rng, ids, now_ns, 4)),
        (_resource("mcp-gateway", variant, tenant(4)), ("opentelemetry.instrumentation.mcp", "0.1b0"),
         _mcp_spans(rng, ids, now_ns, 4)),
    ]


BUILDERS: dict[str, Callable[[random.Random, int, TraceIds, int], list[Group]]] = {
    "semconv": semconv, "rhesis": rhesis, "genai": genai, "mcp": mcp, "mixed": mixed}
