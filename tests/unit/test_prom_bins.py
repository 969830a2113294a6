"""A latency histogram counted in bins (DuckDB's ``aggregate_bins``, summed by ``tea.prom.cells.dense_bins``)
answers exactly what the per-bound filtered counts answer: the same series, the same floats."""
from __future__ import annotations

import asyncio
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from tea.auth.principal import ADMIN, READ, Principal
from tea.prom import cells
from tea.prom.engine import Engine
from tea.prom.events import EventSource, catalogue
from tea.prom.plan import parse
from tea.query.scope import ScopedStorage
from tea.storage.duckdb import DuckDBStorage
from tea.types import Agg, Batch
from tests.storage.test_aggregate_contract import HOUR, T0, make_events

QUERIES = (
    "histogram_quantile(0.95, sum by (le, method) (rate(tea_request_duration_ms_bucket[5m])))",
    "sum by (le, status, source) (increase(tea_request_duration_ms_bucket{method!=\"m2\"}[1h]))",
    "tea_request_duration_ms_bucket{tenant_id=\"t1\"}",
    "rate(tea_request_duration_ms_bucket[15m])",
    "sum(rate({__name__=~\"tea_request_duration_ms_(bucket|count)\"}[10m])) by (le)",
)


def test_what_bins_can_answer() -> None:
    les = [Agg("count_le", "duration_ms", le=b) for b in (5.0, 1.0, float("inf"))]
    assert cells.histogram_of((Agg("count"), *les, Agg("errors"), Agg("sum", "tokens_used"))) == ("duration_ms", (1.0, 5.0))
    assert cells.histogram_of((Agg("count"), *les, Agg("sum", "duration_ms"))) is None  # (a float sum: left alone)
    assert cells.histogram_of((*les,)) is None                                          # (no event count)
    assert cells.histogram_of((Agg("count"), les[0])) is None                           # (one bound: nothing to gain)
    assert cells.histogram_of((Agg("count"), *les, Agg("count_le", "cost", le=1.0))) is None


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), step_s=st.sampled_from([60, 300, 3600, 7]), query=st.sampled_from(QUERIES),
       tenant=st.sampled_from([None, "t2"]))
@example(seed=139, step_s=60, query=QUERIES[2], tenant=None)  # no events at all: no series, not an IndexError
def test_binned_histogram_answers_what_filtered_counts_answer(tmp_path: Path, seed: int, step_s: int, query: str,
                                                              tenant: str | None) -> None:
    rng = random.Random(seed)
    events = make_events(rng, rng.randrange(0, 400), 6 * HOUR)

    async def main() -> None:
        storage = DuckDBStorage(str(tmp_path / f"{seed}.duckdb"))
        await storage.open()
        try:
            if events:
                whole = Batch.from_events(events)
                await storage.write_batch(Batch([whole.ndjson()], whole.count, whole.min_ts, whole.max_ts))
            scopes = frozenset({ADMIN, READ}) if tenant is None else frozenset({READ})
            reader = ScopedStorage(storage, Principal(tenant, scopes=scopes, method="token"))
            assert hasattr(reader, "aggregate_bins")
            start = T0 // 1_000_000 + rng.randrange(3600)
            steps = np.arange(start, start + (3 * 3600 if step_s > 7 else 600) + 1, step_s, dtype=np.int64) * 1_000_000
            binned = (await Engine(EventSource(reader, catalogue()), steps).run(parse(query))).series
            del reader.aggregate_bins  # (the per-bound filtered counts)
            plain = (await Engine(EventSource(reader, catalogue()), steps).run(parse(query))).series
            assert list(binned) == list(plain)
            for labels, values in plain.items():
                assert np.array_equal(binned[labels], values, equal_nan=True), labels
        finally:
            await storage.close()
    asyncio.run(main())


@pytest.mark.parametrize("bounds", [(1.0, float("inf")), (5.0, 1.0), (1.0, 1.0)])
def test_bins_need_finite_ascending_bounds(bounds: tuple[float, ...]) -> None:
    from tea.storage.duckdb.bins import bin_expr
    with pytest.raises(ValueError):
        bin_expr("duration_ms", bounds)
    with pytest.raises(ValueError):
        bin_expr("method", (1.0,))
