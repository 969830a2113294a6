"""OTLP metric points as Prometheus series (docs/grafana.md: the names and labels).

A metric's name becomes a Prometheus name (characters outside [a-zA-Z0-9_:] → ``_``); a monotonic sum
is ``<name>_total``; a histogram is ``<name>_bucket{le}`` (cumulative counts per bound, ``+Inf`` last),
``<name>_sum`` and ``<name>_count``; a summary ``<name>{quantile}``, ``_sum``, ``_count``; gauges and other
sums keep the name. Labels: the point's attributes (keys sanitised the same way), ``job`` (the service)
and ``tenant_id``. Samples are the stored points; an instant selector takes each series' latest sample
within 5 minutes of the step (Prometheus's lookback), ``rate``/``increase`` of cumulative series are
Prometheus's extrapolated rate with counter resets, and of delta series the sum of the deltas in the window.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from tea.prom.engine import NAME, Keep, Labels, Series
from tea.prom.events import go_float
from tea.prom.plan import Matcher, PromError, Selector
from tea.query.scope import ScopedSignals
from tea.signals.model import MetricPoint, PointQuery, SeriesKey
from tea.signals.series import explicit_buckets

LOOKBACK_US = 300_000_000
MAX_POINTS = 2_000_000
_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_attrs = msgspec.json.Decoder(dict[str, Any])


def prom_name(name: str) -> str:
    text = _INVALID.sub("_", name)
    return "_" + text if text[:1].isdigit() else text


def names_of(key: SeriesKey) -> dict[str, str]:
    """Prometheus name -> role (value, bucket, sum, count, quantile) of one OTLP series."""
    base = prom_name(key.name)
    if key.kind in ("histogram", "exponential_histogram"):
        return {f"{base}_bucket": "bucket", f"{base}_sum": "sum", f"{base}_count": "count"}
    if key.kind == "summary":
        return {base: "quantile", f"{base}_sum": "sum", f"{base}_count": "count"}
    if key.kind == "sum" and key.monotonic:
        return {base if base.endswith("_total") else base + "_total": "value"}
    return {base: "value"}


@dataclass
class _Track:
    """One Prometheus series: its samples (µs, value), whether they are deltas, whether it is a counter."""

    labels: Labels
    times: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    delta: bool = False
    counter: bool = False


def _labels(point: MetricPoint, name: str, extra: dict[str, str]) -> Labels:
    pairs = {prom_name(k): v if isinstance(v, str) else msgspec.json.encode(v).decode()
             for k, v in _attrs.decode(point.attributes).items() if v is not None}
    pairs.update(extra, __name__=name, tenant_id=point.tenant_id)
    if point.service:
        pairs["job"] = point.service
    return tuple(sorted((k, v) for k, v in pairs.items() if v != ""))


def _samples(point: MetricPoint, role: str) -> list[tuple[dict[str, str], float]]:
    d = point.data
    if role == "value":
        return [({}, d.value if d.value is not None else math.nan)]
    if role == "sum":
        return [({}, d.sum or 0.0)]
    if role == "count":
        return [({}, float(d.count or 0))]
    if role == "quantile":
        return [({"quantile": go_float(q)}, v) for q, v in d.quantiles or ()]
    buckets, running, out = explicit_buckets(point), 0.0, []
    if math.inf not in buckets:
        buckets[math.inf] = 0.0
    for bound in sorted(buckets):
        running += buckets[bound]
        out.append(({"le": go_float(bound)}, running))
    return out


def _matches(matchers: tuple[Matcher, ...], labels: Labels) -> bool:
    values = dict(labels)
    return all(m.matches(values.get(m.name, "")) for m in matchers)


class OtlpSource:
    """Selectors over the OTLP metric points one request may read."""

    def __init__(self, signals: ScopedSignals) -> None:
        self.signals = signals

    async def _tracks(self, selector: Selector, start_us: int, end_us: int) -> list[_Track]:
        keys = await self.signals.series(PointQuery(start_us=start_us, end_us=end_us))
        wanted: dict[str, dict[str, str]] = {}
        for key in keys:
            for name, role in names_of(key).items():
                if all(m.matches(name) for m in selector.matchers if m.name == NAME):
                    wanted.setdefault(key.name, {})[name] = role
        if not wanted:
            return []
        points = await self.signals.points(PointQuery(names=tuple(wanted), start_us=start_us, end_us=end_us,
                                                      limit=MAX_POINTS))
        if len(points) > MAX_POINTS:
            raise PromError(f"the query reads more than {MAX_POINTS} OTLP metric points; narrow its range or matchers",
                            "execution", 422)
        tracks: dict[Labels, _Track] = {}
        for point in points:
            for name, role in wanted[point.data.name].items():
                for extra, value in _samples(point, role):
                    labels = _labels(point, name, extra)
                    if not _matches(selector.matchers, labels):
                        continue
                    track = tracks.get(labels)
                    if track is None:
                        track = tracks[labels] = _Track(labels, delta=point.data.temporality == "delta",
                                                        counter=role != "quantile" and (role != "value" or bool(
                                                            point.data.kind == "sum" and point.data.monotonic)))
                    track.times.append(point.timestamp)
                    track.values.append(value)
        return list(tracks.values())

    async def select(self, selector: Selector, steps: np.ndarray, keep: Keep) -> Series:
        at = steps - selector.offset_us
        out: Series = {}
        for track in await self._tracks(selector, int(at[0]) - LOOKBACK_US, int(at[-1]) + 1):
            times, values = np.array(track.times), np.array(track.values)
            if track.delta:
                values = np.cumsum(values)  # (a delta series read as the counter it adds up to)
            index = np.searchsorted(times, at, side="right") - 1
            found = np.where(index >= 0, values[np.maximum(index, 0)], np.nan)
            fresh = (index >= 0) & (at - times[np.maximum(index, 0)] <= LOOKBACK_US)
            out[track.labels] = np.where(fresh, found, np.nan)
        return out

    async def range_fn(self, fn: str, selector: Selector, range_us: int, steps: np.ndarray, keep: Keep) -> Series:
        ends = steps - selector.offset_us
        out: Series = {}
        for track in await self._tracks(selector, int(ends[0]) - range_us, int(ends[-1]) + 1):
            if not track.counter:
                raise PromError(f"{fn}() applies to counters; {dict(track.labels)[NAME]} is a gauge", "bad_data", 400)
            times, values = np.array(track.times), np.array(track.values)
            rows = [_window(times, values, int(e) - range_us, int(e), track.delta, fn) for e in ends]
            out[tuple(p for p in track.labels if p[0] != NAME)] = np.array(rows, dtype=float)
        return out

    async def series(self, selector: Selector, start_us: int, end_us: int) -> list[Labels]:
        return [t.labels for t in await self._tracks(selector, start_us, end_us)]


def _window(times: np.ndarray, values: np.ndarray, start: int, end: int, delta: bool, fn: str) -> float:
    """Prometheus's extrapolatedRate over the samples in (start, end] (deltas: their sum)."""
    lo, hi = np.searchsorted(times, start, side="right"), np.searchsorted(times, end, side="right")
    range_s = (end - start) / 1e6
    if delta:
        total = float(values[lo:hi].sum()) if hi > lo else math.nan
        return total / range_s if fn == "rate" else total
    if hi - lo < 2:
        return math.nan
    t, v = times[lo:hi] / 1e6, values[lo:hi]
    drops = v[1:] < v[:-1]
    result = float(v[-1] - v[0] + v[:-1][drops].sum())
    sampled = t[-1] - t[0]
    to_start, to_end = t[0] - start / 1e6, end / 1e6 - t[-1]
    average = sampled / (len(t) - 1)
    if result > 0 and v[0] >= 0:
        to_start = min(to_start, sampled * (v[0] / result))  # a counter does not extrapolate below zero
    threshold = average * 1.1
    interval = sampled + (to_start if to_start < threshold else average / 2) + (to_end if to_end < threshold else
                                                                                average / 2)
    result *= interval / sampled
    return result / range_s if fn == "rate" else result


class Sources:
    """TEA's event metrics and the OTLP metric points, as one source; a selector naming a ``tea_`` metric
    exactly reads only the events (the OTLP store is not consulted)."""

    def __init__(self, events: Any, otlp: OtlpSource | None) -> None:
        self.events = events
        self.otlp = otlp

    def _otlp_too(self, selector: Selector) -> bool:
        exact = [m.value for m in selector.matchers if m.name == NAME and m.op == "="]
        return self.otlp is not None and not (exact and exact[0] in self.events.names)

    @staticmethod
    def _merge(first: Series, second: Series) -> Series:
        if set(first) & set(second):
            raise PromError("vector cannot contain metrics with the same labelset", "execution", 422)
        return {**first, **second}

    async def select(self, selector: Selector, steps: np.ndarray, keep: Keep) -> Series:
        found = await self.events.select(selector, steps, keep)
        if self._otlp_too(selector):
            found = self._merge(found, await self.otlp.select(selector, steps, keep))  # type: ignore[union-attr]
        return found

    async def range_fn(self, fn: str, selector: Selector, range_us: int, steps: np.ndarray, keep: Keep) -> Series:
        found = await self.events.range_fn(fn, selector, range_us, steps, keep)
        if self._otlp_too(selector):
            more = await self.otlp.range_fn(fn, selector, range_us, steps, keep)  # type: ignore[union-attr]
            found = self._merge(found, more)
        return found

    async def series(self, selector: Selector, start_us: int, end_us: int) -> list[Labels]:
        found = await self.events.series(selector, start_us, end_us)
        if self._otlp_too(selector):
            found += await self.otlp.series(selector, start_us, end_us)  # type: ignore[union-attr]
        return found

    async def metadata(self, start_us: int, end_us: int) -> dict[str, list[dict[str, str]]]:
        out = self.events.metadata()
        if self.otlp is not None:
            for key in await self.otlp.signals.series(PointQuery(start_us=start_us, end_us=end_us)):
                kind = {"sum": "counter" if key.monotonic else "gauge", "exponential_histogram": "histogram"}.get(
                    key.kind, key.kind)
                out.setdefault(prom_name(key.name), [{"type": kind, "help": f"OTLP metric {key.name}",
                                                     "unit": key.unit}])
        return out
