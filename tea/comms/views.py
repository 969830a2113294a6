"""The seed's views over ``communication_telemetry`` (CONTRACTS.md 1.5.1), over communication events.

A backend computes *raw groups* — counts, integer sums, minima, maxima, the two rows p95 lies between — either in its own
SQL (``storage.communication_groups(kind, filter)``, DuckDB) or, for any other backend, here in
Python over ``iter_events``. The seed's final arithmetic is then applied once, in Python, with exact
decimals: ``AVG(duration_ms)::INTEGER`` and ``PERCENTILE_CONT(0.95)::INTEGER`` round half away from
zero, ``ROUND(errors / count * 100, 2)`` and ``SUM(cost)::DECIMAL(10,2)`` likewise;
``PERCENTILE_CONT(0.95)::INTEGER`` interpolates in float8 and rounds half to even, as PostgreSQL does.

Windows follow the seed: ``timestamp > now() - interval``; health 5 min per protocol, patterns 7 days,
top pairs 24 h (top 20 by calls, ties by source, target, protocol), realtime per minute over 1 h.
``errors`` counts status ``error`` (the seed's ``COUNT(status = 'error')`` counted every row: fixed).
"""
from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import msgspec

from tea.comms.records import EVENT_TYPE
from tea.timeutil import format_us
from tea.storage.capabilities import GroupsCommunications
from tea.types import Event, EventFilter

MINUTE_US = 60_000_000
WINDOWS_US = {"health": 5 * MINUTE_US, "patterns": 7 * 24 * 60 * MINUTE_US, "top_pairs": 24 * 60 * MINUTE_US,
              "realtime": 60 * MINUTE_US, "matrix": 60 * MINUTE_US}
KINDS = ("health", "pairs", "realtime", "matrix", "endpoints")


# ---------------------------------------------------------------- exact rounding, as PostgreSQL
def round_int(total: int, n: int) -> int | None:
    """``(total / n)::INTEGER``: half away from zero."""
    if n == 0:
        return None
    q = Decimal(total) / Decimal(n)
    return int(q.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def rate(errors: int, count: int) -> float | None:
    """``ROUND(errors::NUMERIC / count * 100, 2)``."""
    if count == 0:
        return None
    return float((Decimal(errors * 100) / Decimal(count)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def money(sum_e4: int) -> float:
    """``SUM(cost)::DECIMAL(10,2)`` from the sum in units of 0.0001."""
    return float((Decimal(sum_e4) / Decimal(10000)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def p95_positions(n: int) -> tuple[int, int]:
    """The 0-based rows PostgreSQL's PERCENTILE_CONT(0.95) interpolates between (float8 arithmetic)."""
    position = 0.95 * (n - 1)
    return math.floor(position), math.ceil(position)


def p95_int(n: int, low: float | None, high: float | None) -> int | None:
    """``PERCENTILE_CONT(0.95)::INTEGER`` as PostgreSQL computes it: ``low + (high - low) * proportion``
    in float8, then float8 → integer with rint() (half to even)."""
    if n == 0 or low is None or high is None:
        return None
    position = 0.95 * (n - 1)
    value = float(low) + (float(high) - float(low)) * (position - math.floor(position))
    return int(round(value))


# ---------------------------------------------------------------- raw groups in Python
def _flat(e: Event) -> tuple[Any, ...]:
    attrs = msgspec.json.decode(e.attributes) if e.attributes else {}
    duration = int(e.duration_ms) if e.duration_ms is not None else None
    cost = round(e.cost * 10000) if e.cost is not None else 0
    return (e.timestamp, e.protocol, e.source, attrs.get("source_type"), e.target, attrs.get("target_type"),
            duration, e.status, e.tokens_used or 0, cost)


class PythonGroups:
    """Raw groups of one view, folded chunk by chunk (``add``), so memory grows with the number of groups,
    not of events — except realtime, which keeps each minute group's durations for its exact p95."""

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown view kind {kind!r}")
        self.kind = kind
        self.groups: dict[tuple[Any, ...], list[Any]] = {}

    def add(self, events: list[Event]) -> None:
        kind, groups = self.kind, self.groups
        for e in events:
            if e.event_type != EVENT_TYPE:
                continue
            r = _flat(e)
            if kind == "endpoints":
                for key in ((r[2], r[3]), (r[4], r[5])):
                    entry = groups.setdefault(key, [0, r[0]])
                    entry[0] += 1
                    entry[1] = max(entry[1], r[0])
                continue
            if kind == "health":
                key: tuple[Any, ...] = (r[1],)
            elif kind == "pairs":
                key = (r[2], r[3], r[4], r[5], r[1])
            elif kind == "realtime":
                key = (r[0] - r[0] % MINUTE_US, r[1], r[2], r[3], r[4], r[5])
            else:
                key = (r[2], r[4], r[1])
            g = groups.get(key)
            if g is None:  # count, duration total, durations counted, errors, then per kind
                g = groups[key] = [0, 0, 0, 0, *_EXTRA[kind]()]
            g[0] += 1
            duration = r[6]
            if duration is not None:
                g[1] += duration
                g[2] += 1
            if r[7] == "error":
                g[3] += 1
            if kind == "health":
                g[4].add(r[2])
                g[5].add(r[4])
            elif kind == "pairs":
                if duration is not None:
                    g[4] = duration if g[4] is None else min(g[4], duration)
                    g[5] = duration if g[5] is None else max(g[5], duration)
                g[6].add(datetime.fromtimestamp(r[0] / 1e6, timezone.utc).date())
                g[7] = r[0] if g[7] is None else max(g[7], r[0])
                g[8] += r[8]
                g[9] += r[9]
            elif kind == "realtime" and duration is not None:
                g[4].append(duration)

    def rows(self) -> list[tuple[Any, ...]]:
        kind, out = self.kind, []
        for key, g in self.groups.items():
            if kind == "endpoints":
                out.append((key[0], key[1], g[0], g[1]))
            elif kind == "health":
                out.append((*key, g[0], len(g[4]), len(g[5]), g[1], g[2], g[3]))
            elif kind == "pairs":
                out.append((*key, g[0], g[1], g[2], g[4], g[5], g[3], len(g[6]), g[7], g[8], g[9]))
            elif kind == "realtime":
                n, ordered = g[2], sorted(g[4])
                low, high = p95_positions(n) if n else (0, 0)
                out.append((*key, g[0], g[1], n, ordered[low] if n else None, ordered[high] if n else None, g[3]))
            else:
                out.append((*key, g[0], g[1], g[2], g[3]))
        return out


_EXTRA: dict[str, Any] = {
    "health": lambda: [set(), set()],                        # sources, targets
    "pairs": lambda: [None, None, set(), None, 0, 0],        # min, max duration, days, last ts, tokens, cost
    "realtime": lambda: [[]],                                # durations
    "matrix": lambda: [],
}


def python_groups(kind: str, events: list[Event]) -> list[tuple[Any, ...]]:
    groups = PythonGroups(kind)
    groups.add(events)
    return groups.rows()


async def raw_groups(storage: Any, kind: str, f: EventFilter) -> list[tuple[Any, ...]]:
    f = replace(f, event_type=EVENT_TYPE)
    if isinstance(storage, GroupsCommunications):
        return await storage.communication_groups(kind, f)
    groups = PythonGroups(kind)
    async for chunk in storage.iter_events(f):
        groups.add(chunk)
    return groups.rows()


# ---------------------------------------------------------------- the views
def _since(now_us: int, view: str) -> int:
    return now_us - WINDOWS_US[view] + 1  # timestamp > now() - interval


async def health(storage: Any, f: EventFilter, now_us: int) -> list[dict[str, Any]]:
    rows = await raw_groups(storage, "health", replace(f, start_us=_since(now_us, "health")))
    return [{"protocol": p, "active_sources": s, "active_targets": t, "total_requests_5min": c,
             "avg_duration_ms": round_int(total, n), "errors_5min": e, "error_rate": rate(e, c)}
            for p, c, s, t, total, n, e in sorted(rows, key=lambda r: r[0] or "")]


def _label(ident: str, kind: str | None) -> str:
    return f"{ident} ({kind})"


async def patterns(storage: Any, f: EventFilter, now_us: int) -> list[dict[str, Any]]:
    rows = await raw_groups(storage, "pairs", replace(f, start_us=_since(now_us, "patterns")))
    out = [{"source_id": r[0], "source_type": r[1], "target_id": r[2], "target_type": r[3], "protocol": r[4],
            "total_calls": r[5], "avg_duration_ms": round_int(r[6], r[7]), "min_duration_ms": r[8],
            "max_duration_ms": r[9], "error_count": r[10], "active_days": r[11],
            "last_communication": format_us(r[12])} for r in rows]
    return sorted(out, key=lambda x: (-x["total_calls"], x["source_id"], x["source_type"] or "", x["target_id"],
                                      x["target_type"] or "", x["protocol"]))


async def top_pairs(storage: Any, f: EventFilter, now_us: int, limit: int = 20) -> list[dict[str, Any]]:
    rows = await raw_groups(storage, "pairs", replace(f, start_us=_since(now_us, "top_pairs")))
    rows.sort(key=lambda r: (-r[5], r[0], r[1] or "", r[2], r[3] or "", r[4]))
    return [{"source": _label(r[0], r[1]), "target": _label(r[2], r[3]), "protocol": r[4], "call_count": r[5],
             "avg_duration_ms": round_int(r[6], r[7]), "total_tokens": r[13], "total_cost": money(r[14])}
            for r in rows[:limit]]


async def realtime(storage: Any, f: EventFilter, now_us: int) -> list[dict[str, Any]]:
    rows = await raw_groups(storage, "realtime", replace(f, start_us=_since(now_us, "realtime")))
    rows.sort(key=lambda r: (-r[0], r[1], r[2], r[3] or "", r[4], r[5] or ""))
    return [{"minute": format_us(r[0]), "protocol": r[1], "source_id": r[2], "source_type": r[3], "target_id": r[4],
             "target_type": r[5], "request_count": r[6], "avg_duration_ms": (r[7] / r[8]) if r[8] else None,
             "p95_duration_ms": p95_int(r[8], r[9], r[10]), "error_count": r[11], "error_rate": rate(r[11], r[6])}
            for r in rows]


async def matrix(storage: Any, f: EventFilter, now_us: int) -> list[dict[str, Any]]:
    if f.start_us is None:
        f = replace(f, start_us=_since(now_us, "matrix"))
    rows = await raw_groups(storage, "matrix", f)
    rows.sort(key=lambda r: (-r[3], r[0], r[1], r[2]))
    return [{"source_id": r[0], "target_id": r[1], "protocol": r[2], "calls": r[3],
             "avg_ms": (r[4] / r[5]) if r[5] else None, "errors": r[6]} for r in rows]


async def endpoints(storage: Any, f: EventFilter) -> list[tuple[str, str | None, int, int]]:
    """Every ``(id, type)`` seen as a source or a target: ``(id, type, communications, last_seen_us)``."""
    return [tuple(r) for r in await raw_groups(storage, "endpoints", f)]  # type: ignore[misc]


VIEWS = {"health": health, "patterns": patterns, "top-pairs": top_pairs, "realtime": realtime, "matrix": matrix}
