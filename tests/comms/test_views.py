"""The seed's communication views, checked against a brute-force reference on generated traffic:
DuckDB's SQL, the memory backend and the Python fallback (any other backend) must all agree with it
exactly — counts, PostgreSQL rounding of averages, rates, p95 and money, windows, ordering, tenants."""
from __future__ import annotations

import asyncio
import math
import random
import uuid
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tea.comms import views
from tea.comms.records import Communication, to_event
from tea.storage.duckdb import DuckDBStorage
from tea.storage.memory import MemoryStorage
from tea.storage.pyagg import quantile
from tea.timeutil import format_us
from tea.types import Batch, EventFilter

NOW = 1_795_000_000_000_000  # a fixed "now" (µs)
MIN = 60_000_000
TEAMS = ["team-a", "team-b", "team-c", "team-d"]
MCPS = ["github", "slack", "postgres"]


def generate(seed: int, count: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    rows = []
    for _ in range(count):
        protocol = rnd.choice(["mcp", "a2a", "n8n"])
        if protocol == "mcp":
            source, stype, target, ttype = rnd.choice(TEAMS), "team", rnd.choice(MCPS), "mcp"
        elif protocol == "a2a":
            source, stype, target, ttype = rnd.choice(TEAMS), "team", rnd.choice(TEAMS), "team"
        else:
            source, stype, target, ttype = f"wf_{rnd.randint(1, 3):03d}", "workflow", rnd.choice(MCPS), "external"
        age = rnd.choice([rnd.randint(0, 5 * MIN + 30_000_000), rnd.randint(0, 70 * MIN),
                          rnd.randint(0, 25 * 60 * MIN), rnd.randint(0, 8 * 24 * 60 * MIN)])
        rows.append({
            "tenant": rnd.choice(["t1", "t1", "t1", "t2"]), "ts": NOW - age, "protocol": protocol,
            "source_id": source, "source_type": stype, "target_id": target, "target_type": ttype,
            "status": rnd.choice(["success"] * 6 + ["error", "timeout", "cancelled"]),
            "duration_ms": None if rnd.random() < 0.1 else rnd.choice([rnd.randint(0, 3000), 250, 251]),
            "tokens_used": None if rnd.random() < 0.3 else rnd.randint(0, 5000),
            "estimated_cost": None if rnd.random() < 0.3 else round(rnd.random() * 3, rnd.choice([2, 4, 5])),
        })
    # exact boundaries: a row exactly at now - 5 min is outside (the seed's `timestamp > now() - interval`)
    rows.append({**rows[0], "tenant": "t1", "ts": NOW - 5 * MIN})
    rows.append({**rows[0], "tenant": "t1", "ts": NOW - 5 * MIN + 1})
    return rows


def to_events(rows: list[dict[str, Any]]) -> Batch:
    events = []
    for r in rows:
        c = Communication(protocol=r["protocol"], source_id=r["source_id"], source_type=r["source_type"],
                          target_id=r["target_id"], target_type=r["target_type"], operation="op", status=r["status"],
                          duration_ms=r["duration_ms"], tokens_used=r["tokens_used"],
                          estimated_cost=r["estimated_cost"])
        e = to_event(c)
        events.append(msgspec.structs.replace(e, tenant_id=r["tenant"], event_id=str(uuid.uuid4()), timestamp=r["ts"],
                                              received_at=r["ts"]))
    return Batch.from_events(events)


# ---------------------------------------------------------------- the reference, written independently
def half_up(x: Fraction, places: int = 0) -> Fraction:
    scale = 10 ** places
    return Fraction(math.floor(x * scale + Fraction(1, 2)), scale)


def ref_avg_int(values: list[int]) -> int | None:
    return int(half_up(Fraction(sum(values), len(values)))) if values else None


def ref_rate(errors: int, count: int) -> float:
    return float(half_up(Fraction(errors * 100, count), 2))


def ref_p95(values: list[int]) -> int | None:
    """PostgreSQL's percentile_cont_final_common + float8 → int4 (rint: half to even)."""
    if not values:
        return None
    s = sorted(values)
    rank = 0.95 * (len(s) - 1)
    first, second = s[math.floor(rank)], s[math.ceil(rank)]
    value = first + (second - first) * (rank - math.floor(rank))
    return int(round(value))


def cost4(value: float | None) -> Decimal:
    return Decimal(0) if value is None else Decimal(str(value)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def within(rows: list[dict[str, Any]], tenants: set[str], minutes: int) -> list[dict[str, Any]]:
    return [r for r in rows if r["tenant"] in tenants and r["ts"] > NOW - minutes * MIN]


def group(rows: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def durations(members: list[dict[str, Any]]) -> list[int]:
    return [m["duration_ms"] for m in members if m["duration_ms"] is not None]


def errors(members: list[dict[str, Any]]) -> int:
    return sum(1 for m in members if m["status"] == "error")


def ref_health(rows, tenants):  # type: ignore[no-untyped-def]
    out = []
    for (p,), m in sorted(group(within(rows, tenants, 5), "protocol").items()):
        out.append({"protocol": p, "active_sources": len({x["source_id"] for x in m}),
                    "active_targets": len({x["target_id"] for x in m}), "total_requests_5min": len(m),
                    "avg_duration_ms": ref_avg_int(durations(m)), "errors_5min": errors(m),
                    "error_rate": ref_rate(errors(m), len(m))})
    return out


PAIR = ("source_id", "source_type", "target_id", "target_type", "protocol")


def ref_patterns(rows, tenants):  # type: ignore[no-untyped-def]
    out = []
    for key, m in group(within(rows, tenants, 7 * 24 * 60), *PAIR).items():
        d = durations(m)
        out.append({**dict(zip(PAIR, key)), "total_calls": len(m), "avg_duration_ms": ref_avg_int(d),
                    "min_duration_ms": min(d) if d else None, "max_duration_ms": max(d) if d else None,
                    "error_count": errors(m),
                    "active_days": len({datetime.fromtimestamp(x["ts"] // 1_000_000, timezone.utc).date() for x in m}),
                    "last_communication": format_us(max(x["ts"] for x in m))})
    return sorted(out, key=lambda r: (-r["total_calls"], r["source_id"], r["source_type"], r["target_id"],
                                      r["target_type"], r["protocol"]))


def ref_top_pairs(rows, tenants):  # type: ignore[no-untyped-def]
    out = []
    for key, m in group(within(rows, tenants, 24 * 60), *PAIR).items():
        s, st, t, tt, p = key
        total = sum((cost4(x["estimated_cost"]) for x in m), Decimal(0))
        out.append(((-len(m), s, st, t, tt, p), {
            "source": f"{s} ({st})", "target": f"{t} ({tt})", "protocol": p, "call_count": len(m),
            "avg_duration_ms": ref_avg_int(durations(m)), "total_tokens": sum(x["tokens_used"] or 0 for x in m),
            "total_cost": float(total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))}))
    return [r for _, r in sorted(out, key=lambda item: item[0])[:20]]


def ref_realtime(rows, tenants):  # type: ignore[no-untyped-def]
    for r in rows:
        r["minute"] = r["ts"] - r["ts"] % MIN
    out = []
    keys = ("minute", "protocol", "source_id", "source_type", "target_id", "target_type")
    for key, m in group(within(rows, tenants, 60), *keys).items():
        d = durations(m)
        out.append({"minute": format_us(key[0]), **dict(zip(keys[1:], key[1:])), "request_count": len(m),
                    "avg_duration_ms": (sum(d) / len(d)) if d else None, "p95_duration_ms": ref_p95(d),
                    "error_count": errors(m), "error_rate": ref_rate(errors(m), len(m)), "_key": key})
    out.sort(key=lambda r: (-r["_key"][0], *r["_key"][1:]))
    for r in out:
        del r["_key"]
    return out


def ref_matrix(rows, tenants, minutes=60):  # type: ignore[no-untyped-def]
    out = []
    for (s, t, p), m in group(within(rows, tenants, minutes), "source_id", "target_id", "protocol").items():
        d = durations(m)
        out.append({"source_id": s, "target_id": t, "protocol": p, "calls": len(m),
                    "avg_ms": (sum(d) / len(d)) if d else None, "errors": errors(m)})
    return sorted(out, key=lambda r: (-r["calls"], r["source_id"], r["target_id"], r["protocol"]))


class PythonFallback:
    """A backend without its own SQL for the views: only iter_events (what PostgreSQL/ClickHouse get),
    in small chunks, so every group is folded across chunks."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage

    def iter_events(self, f: EventFilter, chunk_rows: int = 10000):  # type: ignore[no-untyped-def]
        return self.storage.iter_events(f, 97)


def close(a: Any, b: Any) -> bool:
    """Floats of plain averages may differ in the last bit between SQL and Python."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12)
    return a == b


def same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        assert all(close(g[k], w[k]) for k in g), [(k, g[k], w[k]) for k in g if not close(g[k], w[k])]


@pytest.mark.parametrize("backend", ["duckdb", "memory", "fallback"])
def test_every_view_matches_the_brute_force_reference(backend: str, tmp_path: Path) -> None:
    rows = generate(7, 4000)

    async def main() -> None:
        storage = DuckDBStorage(str(tmp_path / "v.duckdb")) if backend != "memory" else MemoryStorage(10**6)
        await storage.open()
        try:
            await storage.write_batch(to_events(rows))
            target = PythonFallback(storage) if backend == "fallback" else storage
            for tenants in ({"t1"}, {"t1", "t2"}):
                f = EventFilter(tenant_ids=tuple(sorted(tenants)))
                same(await views.health(target, f, NOW), ref_health(rows, tenants))
                same(await views.patterns(target, f, NOW), ref_patterns(rows, tenants))
                same(await views.top_pairs(target, f, NOW), ref_top_pairs(rows, tenants))
                same(await views.realtime(target, f, NOW), ref_realtime(rows, tenants))
                same(await views.matrix(target, f, NOW), ref_matrix(rows, tenants))
                week = EventFilter(tenant_ids=f.tenant_ids, start_us=NOW - 7 * 24 * 60 * MIN + 1)
                same(await views.matrix(target, week, NOW), ref_matrix(rows, tenants, 7 * 24 * 60))
        finally:
            await storage.close()
    asyncio.run(main())
    assert len(ref_health(rows, {"t1"})) == 3 and len(ref_top_pairs(rows, {"t1"})) == 20  # the data exercises them


def test_the_reference_rounds_as_postgresql() -> None:
    """The reference's own arithmetic, on values where naive float or banker's rounding goes wrong."""
    assert ref_avg_int([250, 251]) == 251 and ref_avg_int([1, 2]) == 2 and ref_avg_int([2, 3]) == 3
    assert ref_rate(1, 8) == 12.5 and ref_rate(1, 3) == 33.33 and ref_rate(2, 3) == 66.67
    assert ref_rate(1, 16) == 6.25 and ref_rate(1, 32) == 3.13  # 3.125 → 3.13 (half away from zero)
    assert ref_p95([0, 10]) == 10 and ref_p95([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == 10
    assert ref_p95(list(range(21))) == 19  # 19.0 exactly
    assert ref_p95([1, 2]) == 2  # 1.95 → 2
    assert ref_p95([0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5]) == 5
    assert ref_p95([0, 1]) == 1 and views.p95_int(2, 0, 1) == 1
    assert views.p95_int(11, 2, 3) == 2  # 2.5 (0.95 × 10 = 9.5) → 2, half to even as rint()
    assert views.rate(1, 32) == 3.13 and views.round_int(501, 2) == 251 and views.money(125) == 0.01
    assert views.money(150) == 0.02 and quantile([1.0, 2.0], 0.95) == 1.95
