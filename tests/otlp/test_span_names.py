"""``GET /v1/traces/{id}``: each span keeps its own name, with the method TEA derived from it beside it —
through the native protobuf mapper (the SDK's OTLP/HTTP exporter) and the Python one (OTLP/JSON)."""
from __future__ import annotations

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.conftest import wait_for

TRACE_ID = "5b8efff798038103d269b633813fc60c"


def sdk_trace(url: str) -> str:
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url + "/v1/traces")))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("checkout", attributes={"http.request.method": "POST",
                                                              "http.route": "/orders"}) as root:
        with tracer.start_as_current_span("search the catalogue", attributes={"mcp.method.name": "tools/call"}):
            pass
        with tracer.start_as_current_span("db"):
            pass
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id


def json_trace(url: str) -> str:
    def span(span_id: str, name: str, parent: str | None, attributes: dict[str, str]) -> dict:
        return {"traceId": TRACE_ID, "spanId": span_id, "name": name, "kind": 2,
                "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000500000000",
                **({"parentSpanId": parent} if parent else {}),
                "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attributes.items()]}
    body = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
                               "scopeSpans": [{"spans": [
                                   span("eee19b7ec3c1b174", "checkout", None,
                                        {"http.request.method": "POST", "http.route": "/orders"}),
                                   span("eee19b7ec3c1b175", "search the catalogue", "eee19b7ec3c1b174",
                                        {"mcp.method.name": "tools/call"}),
                                   span("eee19b7ec3c1b176", "db", "eee19b7ec3c1b174", {})]}]}]}
    assert httpx.post(url + "/v1/traces", json=body).status_code == 200
    return TRACE_ID


@pytest.mark.parametrize("send", [sdk_trace, json_trace], ids=["protobuf", "json"])
def test_a_span_keeps_its_name_beside_the_derived_method(serve, send) -> None:  # type: ignore[no-untyped-def]
    live = serve(storage_backend="duckdb")
    trace_id = send(live.url)
    tree = wait_for(lambda: httpx.get(f"{live.url}/v1/traces/{trace_id}"),
                    lambda r: r.status_code == 200 and r.json()["span_count"] == 3).json()
    [root] = tree["spans"]
    assert (root["name"], root["method"]) == ("checkout", "POST /orders")
    children = sorted((c["name"], c["method"]) for c in root["children"])
    assert children == [("db", "db"), ("search the catalogue", "tools/call")]
    assert root["attributes"]["span.name"] == "checkout"
