"""bench.otlp's span shapes: 100 spans a request, unique ids, and the routing each shape is meant to exercise."""
from __future__ import annotations

from collections import Counter

import msgspec
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.otlp_shapes import SHAPES
from bench.otlp_spans import Bodies
from tea.receive.otlp_analytics import category
from tea.receive.otlp_map import pb_spans

_OURS = {"span.name", "span.kind", "resource", "scope", "span.events"}


def routed(shape: str, requests: int = 8, spread: int = 0,
           variants: int = 8) -> tuple[Counter, Counter, set[str], set[str]]:
    factory = Bodies(7, variants, shape=shape, tenants=spread)
    tables: Counter = Counter()
    protocols: Counter = Counter()
    tenants, ids = set(), set()
    for _ in range(requests):
        events = list(pb_spans(ExportTraceServiceRequest.FromString(factory.next()), True))
        assert len(events) == 100
        for event in events:
            raw = msgspec.json.decode(event.attributes)
            attrs = {**raw["resource"], **{k: v for k, v in raw.items() if k not in _OURS}}
            tables[category(attrs)] += 1
            protocols[event.protocol] += 1
            tenants.add(event.tenant_id)
            ids.add(event.event_id)
    assert len(ids) == 100 * requests  # a new id for every span of every request
    return tables, protocols, tenants, ids


def test_every_rhesis_span_routes_to_an_analytics_table() -> None:
    tables, protocols, _, _ = routed("rhesis")
    assert tables[None] == 0 and tables["endpoint_usage"] > tables["feature_usage"] > tables["user_activity"] > 0
    assert protocols["http"] == tables["endpoint_usage"]


@pytest.mark.parametrize("shape", ["semconv", "genai", "mcp"])
def test_semconv_genai_and_mcp_spans_route_nowhere(shape: str) -> None:
    tables, protocols, _, _ = routed(shape)
    assert set(tables) == {None}
    assert protocols["mcp"] > 0 if shape in ("genai", "mcp") else protocols["http"] == 800


def test_mixed_holds_every_kind_across_tenants() -> None:
    tables, protocols, tenants, _ = routed("mixed")
    assert {"endpoint_usage", "feature_usage", None} <= set(tables)
    assert {"http", "mcp", None} <= set(protocols)
    assert len(tenants) >= 10 and set(SHAPES) == {"semconv", "rhesis", "genai", "mcp", "mixed"}


@pytest.mark.parametrize(("shape", "spread"), [("semconv", 12), ("rhesis", 12), ("mixed", 4), ("mixed", 1)])
def test_tenants_spreads_any_shape_over_that_many_tenants(shape: str, spread: int) -> None:
    """bench.otlp --tenants: the same spans, their resources over exactly ``spread`` tenants."""
    tables, _, tenants, _ = routed(shape, requests=max(8, spread), spread=spread)
    assert tenants == {f"tenant-{n}" for n in range(spread)}
    assert tables == routed(shape, requests=max(8, spread), variants=max(8, spread))[0]  # the same spans
