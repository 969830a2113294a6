"""MCP and GenAI conventions as columns, over real HTTP: OTel SDK spans (gRPC, HTTP with the native mapper
and with the Python one), native events, the seed TEA's README shape and the FTL gateway carrying the same
keys; grouping by tool and model with cost summed, in /v1/metrics and the Prometheus API; the price table."""
from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tea.errors import ConfigError
from tea.pricing import PriceTable, default_path
from tests.conftest import free_port

CALL = {"mcp.method.name": "tools/call", "gen_ai.tool.name": "search", "mcp.session.id": "sess-9",
        "gen_ai.request.model": "gpt-4o-mini-2024-07-18", "gen_ai.usage.input_tokens": 2000,
        "gen_ai.usage.output_tokens": 500}
FAILED = {**CALL, "gen_ai.tool.name": "fetch", "gen_ai.request.model": "claude-sonnet-4-20250514",
          "rpc.response.status_code": "-32602"}
# list prices from the shipped table: gpt-4o-mini 0.00015 / 0.0006, claude-sonnet-4 0.003 / 0.015 per 1 000
CALL_COST = 2000 * 0.00015 / 1000 + 500 * 0.0006 / 1000
FAILED_COST = 2000 * 0.003 / 1000 + 500 * 0.015 / 1000
COLUMNS = ("method", "tool", "model", "session_id", "input_tokens", "output_tokens", "tokens_used", "status",
           "status_code", "protocol")


def export_spans(monkeypatch: pytest.MonkeyPatch, live, transport: str) -> None:  # type: ignore[no-untyped-def]
    """Two MCP tool-call spans from the OTel SDK, its exporter configured only through OTEL_* variables."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", transport)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{live.grpc_port}" if transport == "grpc"
                       else live.url)
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    provider = TracerProvider(resource=Resource.create({"service.name": "gateway"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    tracer = provider.get_tracer("tests")
    for name, attributes in (("tools/call search", CALL), ("tools/call fetch", FAILED)):
        with tracer.start_as_current_span(name, attributes=attributes):
            pass
    provider.shutdown()


def columns(events: list[dict], tool: str) -> dict:
    [event] = [e for e in events if e["tool"] == tool]
    return {c: event[c] for c in COLUMNS} | {"cost": event["cost"]}


@pytest.mark.parametrize("transport, native", [("grpc", True), ("http/protobuf", True), ("http/protobuf", False)])
def test_sdk_spans_get_the_columns_and_their_cost(serve, monkeypatch, transport: str, native: bool) -> None:
    port = free_port()
    live = serve(storage_backend="duckdb", otlp__grpc_port=port, otlp__native=native)
    live.grpc_port = port
    export_spans(monkeypatch, live, transport)
    live.wait_stored(2)
    events = httpx.get(live.url + "/v1/events", params={"source": "gateway"}).json()["events"]
    assert columns(events, "search") == {
        "method": "tools/call", "tool": "search", "model": "gpt-4o-mini-2024-07-18", "session_id": "sess-9",
        "input_tokens": 2000, "output_tokens": 500, "tokens_used": 2500, "status": None, "status_code": None,
        "protocol": "mcp", "cost": CALL_COST}
    failed = columns(events, "fetch")
    assert (failed["status"], failed["status_code"], failed["cost"]) == ("error", -32602, FAILED_COST)
    mapper = "native" if native else "python"
    assert f'tea_otlp_trace_requests_total{{mapper="{mapper}"}} 2.0' in httpx.get(live.url + "/metrics").text


def test_native_readme_and_gateway_events_carry_the_same_keys(serve) -> None:
    live = serve(storage_backend="duckdb", socket=False)
    client = live.client
    r = client.post("/v1/events", json=[{"event_type": "mcp_request", "source": "native", "attributes": CALL},
                                        {"event_type": "mcp_request", "source": "native", "attributes": FAILED},
                                        {"event_type": "mcp_request", "source": "native", "tool": "own",
                                         "model": "gpt-4o", "input_tokens": 1000, "cost": 9.0,
                                         "attributes": CALL}])
    assert r.status_code == 200, r.text
    r = client.post("/events", json={"event_type": "mcp_request", "metadata": {**CALL, "source": "readme"}})
    assert r.status_code == 200, r.text
    r = client.post("/events", json={"event": {"timestamp": int(time.time() * 1000), "tool_name": "search",
                                               "component_name": "web", "duration_ms": 12.5, "success": False,
                                               "metadata": {"gen_ai.request.model": "gpt-4o",
                                                            "gen_ai.usage.input_tokens": "3",
                                                            "rpc.response.status_code": "-32603"}}})
    assert r.status_code == 200, r.text
    live.wait_stored(5)
    native = client.get("/v1/events", params={"source": "native"}).json()["events"]
    readme = client.get("/v1/events", params={"source": "readme"}).json()["events"]
    gateway = client.get("/v1/events", params={"source": "mcp-gateway"}).json()["events"]
    by_tool = {e["tool"]: e for e in native}
    assert {c: by_tool["search"][c] for c in ("method", "model", "input_tokens", "output_tokens", "tokens_used",
                                              "cost", "session_id")} == {
        "method": "tools/call", "model": "gpt-4o-mini-2024-07-18", "input_tokens": 2000, "output_tokens": 500,
        "tokens_used": 2500, "cost": CALL_COST, "session_id": "sess-9"}
    assert (by_tool["fetch"]["status"], by_tool["fetch"]["status_code"]) == ("error", -32602)
    own = by_tool["own"]  # columns the event sets itself win over its attributes, and so does its own cost
    assert (own["model"], own["input_tokens"], own["output_tokens"], own["cost"]) == ("gpt-4o", 1000, 500, 9.0)
    assert (readme[0]["tool"], readme[0]["cost"]) == ("search", CALL_COST)
    [gate] = gateway
    # the gateway's metadata are strings: a token count as text is not a count; its JSON-RPC code is the status code
    assert (gate["tool"], gate["method"], gate["model"], gate["input_tokens"], gate["status"], gate["status_code"]) \
        == ("search", "search", "gpt-4o", None, "error", -32603)


def test_group_by_tool_and_model_with_cost_in_metrics_and_prometheus(serve) -> None:
    live = serve(storage_backend="duckdb", socket=False)
    now_ms = int(time.time() * 1000)
    events = [{"event_type": "span", "timestamp": now_ms - 1000 * i, "attributes": attrs}
              for i, attrs in enumerate([CALL, CALL, FAILED])]
    client = live.client
    assert client.post("/v1/events", json=events).status_code == 200
    live.wait_stored(3)
    params = {"start_time": now_ms - 3_600_000, "end_time": now_ms + 1000, "granularity": "hour",
              "metrics": "requests,cost,input_tokens,output_tokens,errors"}

    def totals(group: str) -> dict:
        body = client.get("/v1/metrics", params={**params, "group_by": group}).json()
        return {s["group"][group]: {k: sum(p[k] for p in s["points"]) for k in ("requests", "cost", "input_tokens",
                                                                               "output_tokens", "errors")}
                for s in body["series"]}
    by_tool = totals("tool")
    assert by_tool["search"] == pytest.approx({"requests": 2, "cost": 2 * CALL_COST, "input_tokens": 4000,
                                               "output_tokens": 1000, "errors": 0})
    assert by_tool["fetch"]["errors"] == 1
    assert set(totals("model")) == {"gpt-4o-mini-2024-07-18", "claude-sonnet-4-20250514"}
    data = client.get("/api/v1/query", params={"query": "sum by (model) (increase(tea_cost_total[2h]))",
                                               "time": now_ms / 1000 + 1}).json()["data"]["result"]
    assert {s["metric"]["model"]: float(s["value"][1]) for s in data} == pytest.approx(
        {"gpt-4o-mini-2024-07-18": 2 * CALL_COST, "claude-sonnet-4-20250514": FAILED_COST})
    data = client.get("/api/v1/query", params={"query": 'sum by (tool) (tea_requests_total{method="tools/call"})',
                                               "time": now_ms / 1000 + 1}).json()["data"]["result"]
    assert {s["metric"]["tool"]: s["value"][1] for s in data} == {"search": "2", "fetch": "1"}


def test_the_price_table_file(tmp_path: Path, serve) -> None:
    live = serve(storage_backend="memory", socket=False)
    written = Path(live.app.settings.data_dir) / "prices.toml"
    assert written.read_text() == Path(default_path()).read_text()  # a file to edit, written on first start
    table = PriceTable.load(None, str(tmp_path / "fresh"))
    assert table.lookup("gpt-4o-2024-08-06") == (0.0025, 0.01) and table.lookup("gpt-4o-mini-x") == (0.00015, 0.0006)
    assert table.lookup("unknown-model") is None and table.cost("gpt-4o", None, None) is None
    own = tmp_path / "mine.toml"
    own.write_text('[models]\n"house-llm" = { input = 1, output = 2.5 }\n')
    assert PriceTable.load(str(own), str(tmp_path)).cost("house-llm-v2", 1000, 2000) == 1 + 5.0
    for text, message in (('[models]\n"m" = { input = -1, output = 1 }\n', "models.'m'.input must be a number >= 0"),
                          ('[models]\n"m" = { input = 1 }\n', "models.'m'.output"), ("[models\n", "invalid price table"),
                          ('models = 3\n', "[models] must be a table")):
        own.write_text(text)
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            PriceTable.load(str(own), str(tmp_path))
    with pytest.raises(ConfigError, match="genai.price_table"):
        PriceTable.load(str(tmp_path / "missing.toml"), str(tmp_path))
