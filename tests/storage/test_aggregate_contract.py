"""Aggregation, export iteration and retention overrides: every backend against a brute-force reference."""
from __future__ import annotations

import asyncio
import math
import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tea.storage.duckdb import DuckDBStorage
from tea.storage.memory import MemoryStorage
from tea.types import Agg, AggregateSpec, Batch, Event, EventFilter

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z (a Thursday)
HOUR = 3_600_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
BACKENDS = ("memory", "duckdb", "postgres", "clickhouse")
_FRESH: dict[str, Any] = {}  # backend -> a function giving a fresh database URL on the session's server


@pytest.fixture(autouse=True)
def _server_backends(request: pytest.FixtureRequest) -> None:
    kind = getattr(getattr(request.node, "callspec", None), "params", {}).get("kind")
    if kind in ("postgres", "clickhouse"):
        _FRESH[kind] = request.getfixturevalue(f"{kind}_server").fresh_url


def open_storage(kind: str, path: Path):
    if kind == "postgres":
        from tea.storage.postgres import PostgresStorage
        return PostgresStorage(_FRESH[kind]())
    if kind == "clickhouse":
        from tea.storage.clickhouse import ClickHouseStorage
        return ClickHouseStorage(_FRESH[kind]())
    return MemoryStorage(max_events=10**7) if kind == "memory" else DuckDBStorage(str(path / "agg.duckdb"))


def run(kind: str, path: Path, events: list[Event], body):
    async def main():
        storage = open_storage(kind, path)
        await storage.open()
        try:
            if events:
                whole = Batch.from_events(events)
                await storage.write_batch(Batch([whole.ndjson()], whole.count, whole.min_ts, whole.max_ts))
            return await body(storage)
        finally:
            await storage.close()
    return asyncio.run(main())


# ------------------------------------------------------------------ the independent reference
def ref_error(e: Event) -> bool:
    if e.status in ("error", "timeout"):
        return True
    if e.status is not None:
        return False
    return e.error_type is not None or (e.status_code is not None and not 0 <= e.status_code < 400)


def ref_bucket(ts: int, bucket: str | None) -> int | None:
    if bucket is None:
        return None
    dt = EPOCH + timedelta(microseconds=ts)
    if bucket == "minute":
        dt = dt.replace(second=0, microsecond=0)
    elif bucket == "hour":
        dt = dt.replace(minute=0, second=0, microsecond=0)
    elif bucket == "day":
        dt = dt.replace(hour=0, minute=0, second=0, microsecond=0)
    elif bucket == "week":
        dt = dt.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=dt.weekday())
    else:
        dt = dt.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (dt - EPOCH) // timedelta(microseconds=1)


def ref_quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def ref_agg(agg: Agg, members: list[Event]):
    if agg.fn == "count":
        return len(members)
    if agg.fn == "errors":
        return sum(map(ref_error, members))
    values = [getattr(e, agg.column) for e in members if getattr(e, agg.column) is not None]
    if agg.fn == "count_distinct":
        return len(set(values))
    if agg.fn == "count_le":
        return len([v for v in values if v <= agg.le])
    if not values:
        return None
    return {"sum": lambda: sum(values), "avg": lambda: sum(values) / len(values), "min": lambda: min(values),
            "max": lambda: max(values), "quantile": lambda: ref_quantile(values, agg.q)}[agg.fn]()


def reference(events: list[Event], spec: AggregateSpec) -> dict:
    f = spec.filter
    kept = [e for e in events if (f.tenant_ids is None or e.tenant_id in f.tenant_ids)
            and (f.method is None or e.method == f.method) and (f.status is None or e.status == f.status)
            and (f.start_us is None or e.timestamp >= f.start_us) and (f.end_us is None or e.timestamp < f.end_us)]
    key = lambda e: tuple(getattr(e, g) for g in spec.group_by)  # noqa: E731
    if spec.top is not None and spec.group_by:
        groups: dict = defaultdict(list)
        for e in kept:
            groups[key(e)].append(e)
        rank = {k: ref_agg(spec.top_by, members) for k, members in groups.items()}
        order = sorted(groups, key=lambda k: (rank[k] is None, -(rank[k] or 0), [(v is None, v or "") for v in k]))
        allowed = set(order[: spec.top])
        kept = [e for e in kept if key(e) in allowed]
    cells: dict = defaultdict(list)
    for e in kept:
        bucket = ref_bucket(e.timestamp, spec.bucket) if spec.bucket_us is None else \
            spec.origin_us + math.floor((e.timestamp - spec.origin_us) / spec.bucket_us) * spec.bucket_us
        cells[(bucket, *key(e))].append(e)
    return {k: tuple(ref_agg(a, m) for a in spec.aggs) for k, m in cells.items()}


def close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def as_map(rows, spec: AggregateSpec) -> dict:
    width = 1 + len(spec.group_by)
    return {tuple(r[:width]): tuple(r[width:]) for r in rows}


def assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, values in want.items():
        assert all(close(g, w) for g, w in zip(got[key], values)), (key, got[key], values)


# ------------------------------------------------------------------ generated data
def make_events(rng: random.Random, n: int, span_us: int) -> list[Event]:
    events = []
    for i in range(n):
        status = rng.choice(["ok", "error", "timeout", "cancelled", None, None])
        events.append(Event(
            event_type=rng.choice(["a", "b"]), event_id=f"e{i}", tenant_id=rng.choice(["t1", "t2", "t3"]),
            timestamp=T0 + rng.randrange(span_us), received_at=T0, method=rng.choice(["m1", "m2", "m3", None]),
            source=rng.choice(["s1", "s2"]), target=rng.choice(["x", None]), protocol=rng.choice(["mcp", "a2a"]),
            status=status, status_code=rng.choice([200, 404, 500, -32601, None]),
            error_type=rng.choice([None, None, "Boom"]), user_id=rng.choice(["u1", "u2", "u3", None]),
            duration_ms=rng.choice([None, round(rng.lognormvariate(3, 1), 3), float(rng.randrange(100))]),
            request_size=rng.choice([None, rng.randrange(10**6)]), response_size=rng.randrange(10**5),
            tokens_used=rng.choice([None, rng.randrange(5000)]), cost=rng.choice([None, rng.randrange(10**4) / 1000]),
            attributes=msgspec.Raw(b"{}")))
    return events


AGGS = (Agg("count"), Agg("errors"), Agg("sum", "duration_ms"), Agg("avg", "duration_ms"), Agg("min", "duration_ms"),
        Agg("max", "duration_ms"), Agg("quantile", "duration_ms", 0.5), Agg("quantile", "duration_ms", 0.95),
        Agg("quantile", "duration_ms", 0.99), Agg("sum", "request_size"), Agg("sum", "response_size"),
        Agg("sum", "tokens_used"), Agg("sum", "cost"), Agg("count_distinct", "user_id"), Agg("min", "timestamp"),
        Agg("max", "timestamp"))


# what top-N groups may be ranked by (float sums left out: a near-tie may round either way per backend)
RANKS = (Agg("count"), Agg("errors"), Agg("sum", "tokens_used"), Agg("sum", "request_size"), Agg("min", "duration_ms"),
         Agg("max", "duration_ms"))


@pytest.mark.parametrize("kind", BACKENDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), bucket=st.sampled_from([None, "minute", "hour", "day", "week", "month"]),
       group_by=st.lists(st.sampled_from(["tenant_id", "method", "status", "source", "protocol", "user_id",
                                          "event_type", "target"]), max_size=2, unique=True),
       top=st.sampled_from([None, 1, 2, 5]), tenant=st.sampled_from([None, "t1"]),
       window=st.sampled_from([None, (3 * HOUR, 50 * HOUR)]), top_by=st.sampled_from(RANKS))
def test_aggregate_matches_brute_force(kind: str, tmp_path: Path, seed: int, bucket, group_by, top, tenant,
                                       window, top_by) -> None:
    rng = random.Random(seed)
    events = make_events(rng, rng.randrange(0, 300), 70 * 24 * HOUR)
    f = EventFilter(tenant_ids=(tenant,) if tenant else None,
                    start_us=T0 + window[0] if window else None, end_us=T0 + window[1] if window else None)
    spec = AggregateSpec(f, AGGS, bucket, tuple(group_by), top, top_by)
    rows = run(kind, tmp_path / f"{seed}-{kind}", events, lambda s: s.aggregate(spec))
    assert_same(as_map(rows, spec), reference(events, spec))


@pytest.mark.parametrize("kind", BACKENDS)
def test_bucket_edges(kind: str, tmp_path: Path) -> None:
    # exactly on a boundary belongs to the bucket that starts there; a microsecond before, to the previous
    stamps = [T0, T0 - 1, T0 + HOUR, T0 + HOUR - 1, T0 + 4 * 24 * HOUR, T0 + 31 * 24 * HOUR]
    events = [Event(event_type="x", event_id=f"e{i}", tenant_id="t", timestamp=ts, received_at=ts,
                    attributes=msgspec.Raw(b"{}")) for i, ts in enumerate(stamps)]
    for bucket in ("minute", "hour", "day", "week", "month"):
        spec = AggregateSpec(EventFilter(), (Agg("count"),), bucket)
        rows = run(kind, tmp_path / bucket, events, lambda s: s.aggregate(spec))
        assert_same(as_map(rows, spec), reference(events, spec))
    spec = AggregateSpec(EventFilter(), (Agg("count"),), "week")
    weeks = sorted(as_map(run(kind, tmp_path / "w2", events, lambda s: s.aggregate(spec)), spec))
    monday = ref_bucket(T0, "week")
    assert [w[0] for w in weeks][:2] == [monday, monday + 7 * 24 * HOUR] and datetime.fromtimestamp(monday / 1e6, timezone.utc).weekday() == 0


@pytest.mark.parametrize("kind", BACKENDS)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), width_s=st.sampled_from([1, 15, 60, 75, 300, 7 * 3600]),
       origin_s=st.integers(-10**6, 10**6), group_by=st.sampled_from([(), ("method",), ("method", "status")]),
       window=st.sampled_from([None, (3 * HOUR, 50 * HOUR)]))
def test_fixed_width_buckets_and_counts_at_most(kind: str, tmp_path: Path, seed: int, width_s: int, origin_s: int,
                                                group_by, window) -> None:
    """Buckets of any width aligned on any origin (events before it too), and the histogram counts
    the Prometheus API reads (duration at most each bound; +inf: every event with a duration)."""
    rng = random.Random(seed)
    events = make_events(rng, rng.randrange(0, 300), 70 * 24 * HOUR)
    f = EventFilter(start_us=T0 + window[0] if window else None, end_us=T0 + window[1] if window else None)
    aggs = (Agg("count"), *(Agg("count_le", "duration_ms", le=b) for b in (0.0, 5.0, 20.085, 100.0, math.inf)),
            Agg("count_le", "cost", le=2.5))
    spec = AggregateSpec(f, aggs, None, group_by, bucket_us=width_s * 1_000_000,
                         origin_us=T0 + origin_s * 1_000_000 + rng.randrange(1_000_000))
    rows = run(kind, tmp_path / f"{seed}-{kind}", events, lambda s: s.aggregate(spec))
    assert_same(as_map(rows, spec), reference(events, spec))


def test_fixed_width_buckets_exclude_calendar_buckets_and_count_le_needs_a_bound() -> None:
    with pytest.raises(ValueError, match="bucket_us"):
        AggregateSpec(EventFilter(), (Agg("count"),), "hour", bucket_us=60_000_000)
    with pytest.raises(ValueError, match="bucket_us"):
        AggregateSpec(EventFilter(), (Agg("count"),), bucket_us=0)
    with pytest.raises(ValueError, match="count_le"):
        Agg("count_le", "duration_ms")
    with pytest.raises(ValueError, match="count_le"):
        Agg("count_le", "duration_ms", le=math.nan)
    with pytest.raises(ValueError, match="count_le"):
        Agg("count", le=1.0)


@pytest.mark.parametrize("kind", BACKENDS)
def test_empty_store_aggregates_to_nothing(kind: str, tmp_path: Path) -> None:
    spec = AggregateSpec(EventFilter(), AGGS, "hour", ("method",), 3)
    assert run(kind, tmp_path, [], lambda s: s.aggregate(spec)) == []


@pytest.mark.parametrize("kind", BACKENDS)
def test_iter_events_yields_every_match_in_chunks(kind: str, tmp_path: Path) -> None:
    events = make_events(random.Random(3), 2500, 10 * HOUR)

    async def body(storage):
        chunks = [chunk async for chunk in storage.iter_events(EventFilter(tenant_ids=("t2",)), chunk_rows=300)]
        return chunks

    chunks = run(kind, tmp_path, events, body)
    assert all(0 < len(c) <= 300 for c in chunks)
    got = sorted(e.event_id for c in chunks for e in c)
    assert got == sorted(e.event_id for e in events if e.tenant_id == "t2")


@pytest.mark.parametrize("kind", BACKENDS)
def test_retention_overrides_and_purge_exclusions(kind: str, tmp_path: Path) -> None:
    events = [Event(event_type="x", event_id=f"{t}{i}", tenant_id=t, timestamp=T0 + i, received_at=T0,
                    attributes=msgspec.Raw(b"{}")) for t in ("a", "b", "c") for i in range(3)]

    async def body(storage):
        await storage.set_retention_override("a", 48)
        await storage.set_retention_override("b", 0)
        await storage.set_retention_override("b", 12)
        await storage.set_retention_override("c", 5)
        await storage.set_retention_override("c", None)
        overrides = await storage.retention_overrides()
        purged = await storage.purge_older_than(T0 + 2, exclude_tenant_ids=("a", "b"))
        remaining = sorted((e.tenant_id, e.event_id) for c in [x async for x in storage.iter_events(EventFilter())]
                           for e in c)
        return overrides, purged, remaining

    overrides, purged, remaining = run(kind, tmp_path, events, body)
    assert overrides == {"a": 48, "b": 12}
    assert purged == 2
    assert [k for k in remaining if k[0] == "c"] == [("c", "c2")] and len(remaining) == 7
