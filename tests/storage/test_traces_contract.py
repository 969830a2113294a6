"""Trace summaries (``storage.traces``, behind GET /v1/traces): every backend against a brute-force reference,
with every condition (service, errors, minimum duration) and limits below and above the number of traces."""
from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.storage.test_aggregate_contract import BACKENDS, HOUR, T0, _server_backends, run  # noqa: F401 (fixture)
from tea.types import Event, EventFilter, TraceSummary

SERVICES = ("checkout", "cart", "db", "web")


def make_spans(rng: random.Random, n: int) -> list[Event]:
    """Spans of a few traces per tenant, some other events sharing their trace ids; every timestamp unique
    (the root span and the trace's start are then one answer on every backend)."""
    stamps = rng.sample(range(0, 6 * HOUR, 1000), n)
    events = []
    for i, ts in enumerate(stamps):
        trace = rng.randrange(8)
        events.append(Event(
            event_type=rng.choice(["span", "span", "span", "log"]), event_id=f"e{i}",
            tenant_id=rng.choice(["t1", "t2"]), timestamp=T0 + ts, received_at=T0,
            trace_id=rng.choice([f"{trace:032x}", None]) if i % 9 == 0 else f"{trace:032x}",
            span_id=f"{i:016x}", parent_span_id=rng.choice([None, f"{rng.randrange(n):016x}"]),
            method=rng.choice(["GET /a", "tools/call", None]), source=rng.choice([*SERVICES, None]),
            status=rng.choice(["ok", "error", None]), duration_ms=rng.choice([None, float(rng.randrange(0, 90_000))]),
            attributes=msgspec.Raw(b"{}")))
    return events


def reference(events: list[Event], f: EventFilter, service: str | None, min_duration_ms: float,
              errors: bool | None, limit: int) -> list[TraceSummary]:
    groups: dict[tuple[str, str], list[Event]] = {}
    for e in events:
        inside = (f.start_us is None or e.timestamp >= f.start_us) and (f.end_us is None or e.timestamp < f.end_us)
        if e.event_type == "span" and e.trace_id is not None and inside and \
                (f.tenant_ids is None or e.tenant_id in f.tenant_ids):
            groups.setdefault((e.tenant_id, e.trace_id), []).append(e)
    out = []
    for (tenant, trace_id), spans in groups.items():
        start = min(s.timestamp for s in spans)
        end = max(s.timestamp + int((s.duration_ms or 0) * 1000) for s in spans)
        failed = sum(s.status == "error" for s in spans)
        services = tuple(sorted({s.source for s in spans if s.source is not None}))
        roots = sorted((s for s in spans if s.parent_span_id is None), key=lambda s: s.timestamp)
        if end - start < min_duration_ms * 1000 or (service is not None and service not in services) or \
                (errors is not None and (failed > 0) != errors):
            continue
        out.append(TraceSummary(trace_id, tenant, start, end, len(spans), failed, roots[0].method if roots else None,
                                roots[0].source if roots else None, services))
    return sorted(out, key=lambda t: (-t.start_us, t.trace_id, t.tenant_id))[:limit]


def ordered(found: list[TraceSummary]) -> list[TraceSummary]:
    """(Two tenants may share a trace id and a start: the backends order only by start and trace id.)"""
    return sorted(found, key=lambda t: (-t.start_us, t.trace_id, t.tenant_id))


@pytest.mark.parametrize("kind", BACKENDS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), service=st.sampled_from([None, *SERVICES[:2]]),
       min_duration_ms=st.sampled_from([0.0, 1000.0, 60_000.0]), errors=st.sampled_from([None, True, False]),
       limit=st.sampled_from([1, 3, 100]), tenant=st.sampled_from([None, "t1"]),
       window=st.sampled_from([None, (1 * HOUR, 4 * HOUR)]))
def test_traces_match_brute_force(kind: str, tmp_path: Path, seed: int, service, min_duration_ms, errors, limit,
                                  tenant, window) -> None:
    rng = random.Random(seed)
    events = make_spans(rng, rng.randrange(0, 200))
    f = EventFilter(tenant_ids=(tenant,) if tenant else None, start_us=T0 + window[0] if window else None,
                    end_us=T0 + window[1] if window else None)
    found = run(kind, tmp_path / f"{seed}-{kind}", events, lambda s: s.traces(
        f, service=service, min_duration_ms=min_duration_ms, errors=errors, limit=limit))
    want = reference(events, f, service, min_duration_ms, errors, limit)
    assert ordered(found) == want
