"""Evaluate a PromQL plan over every step at once: series are numpy arrays over the steps, NaN where a
series has no value. Selectors are answered by the metric sources (``tea.prom.sources``); everything
above them — aggregation, arithmetic, ``histogram_quantile`` — is computed here as Prometheus does.

A consumer tells the sources which labels it needs (``keep``): ``sum by (method) (rate(x[5m]))`` asks
storage for counts grouped by method only, since a sum of per-series rates is the rate of their sum.
Only sums (and multiplying or dividing by a scalar) pass that on; everything else needs every label.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Union

import numpy as np

from tea.signals.quantile import bucket_quantile
from tea.prom.plan import Aggregate, Binary, Negate, Node, Number, PromError, Quantile, RangeFn, Selector

Labels = tuple[tuple[str, str], ...]  # sorted by name, no empty values
Series = dict[Labels, np.ndarray]
Keep = Union[frozenset[str], None]    # the labels a consumer needs (None: every label)
NAME = "__name__"
MAX_SERIES = 50_000


@dataclass
class Vector:
    series: Series


@dataclass
class Scalar:
    values: np.ndarray


Value = Union[Vector, Scalar]


class Source(Protocol):
    """Where selectors' series come from (TEA's event metrics, OTLP metric points)."""

    async def select(self, selector: Selector, steps: np.ndarray, keep: Keep) -> Series:
        """The instant vector ``selector`` at each step (the value at or before it)."""

    async def range_fn(self, fn: str, selector: Selector, range_us: int, steps: np.ndarray, keep: Keep) -> Series:
        """``rate``/``increase`` over ``range_us`` before each step, per series (``__name__`` dropped)."""


def labels_of(pairs: dict[str, str]) -> Labels:
    return tuple(sorted((k, v) for k, v in pairs.items() if v != ""))


def without_name(labels: Labels) -> Labels:
    return tuple(p for p in labels if p[0] != NAME)


class Engine:
    def __init__(self, source: Source, steps: np.ndarray) -> None:
        self.source = source
        self.steps = steps

    async def run(self, node: Node, keep: Keep = None) -> Value:
        if isinstance(node, Number):
            return Scalar(np.full(len(self.steps), node.value))
        if isinstance(node, Selector):
            return Vector(self._bounded(await self.source.select(node, self.steps, keep)))
        if isinstance(node, RangeFn):
            found = await self.source.range_fn(node.fn, node.selector, node.range_us, self.steps, keep)
            return Vector(self._bounded(found))
        if isinstance(node, Negate):
            inner = await self.run(node.expr, keep)
            return Scalar(-inner.values) if isinstance(inner, Scalar) else \
                Vector({without_name(k): -v for k, v in inner.series.items()})
        if isinstance(node, Aggregate):
            return await self._aggregate(node)
        if isinstance(node, Quantile):
            return await self._quantile(node, keep)
        return await self._binary(node, keep)  # type: ignore[arg-type]

    @staticmethod
    def _bounded(series: Series) -> Series:
        if len(series) > MAX_SERIES:
            raise PromError(f"the query selects more than {MAX_SERIES} series; add matchers or aggregate",
                            "execution", 422)
        return series

    async def _vector(self, node: Node, keep: Keep, what: str) -> Vector:
        value = await self.run(node, keep)
        if not isinstance(value, Vector):
            raise PromError(f"expected an instant vector as {what}, got a scalar")
        return value

    # ------------------------------------------------------------ aggregation
    async def _aggregate(self, node: Aggregate) -> Vector:
        child_keep = frozenset(node.labels) if node.op == "sum" and not node.without else None
        inner = await self._vector(node.expr, child_keep, f"the argument of {node.op}")
        groups: dict[Labels, list[np.ndarray]] = {}
        for labels, values in inner.series.items():
            if node.without:
                key = tuple(p for p in labels if p[0] not in node.labels and p[0] != NAME)
            else:
                key = tuple(p for p in labels if p[0] in node.labels)
            groups.setdefault(key, []).append(values)
        return Vector({key: _reduce(node.op, members) for key, members in groups.items()})

    # ------------------------------------------------------------ histogram_quantile
    async def _quantile(self, node: Quantile, keep: Keep) -> Vector:
        q = await self.run(node.q)
        if not isinstance(q, Scalar):
            raise PromError("histogram_quantile() takes a scalar quantile")
        inner = await self._vector(node.vector, keep | {"le"} if keep is not None else None,
                                   "the argument of histogram_quantile()")
        groups: dict[Labels, list[tuple[float, np.ndarray]]] = {}
        for labels, values in inner.series.items():
            le = dict(labels).get("le")
            if le is None:
                continue
            try:
                bound = float(le)
            except ValueError:
                continue
            key = tuple(p for p in labels if p[0] not in ("le", NAME))
            groups.setdefault(key, []).append((bound, values))
        return Vector(_quantiles(q.values, groups))

    # ------------------------------------------------------------ arithmetic
    async def _binary(self, node: Binary, keep: Keep) -> Value:
        # a vector times or divided by a scalar keeps sums' grouping (sum(a) * 2 = sum(a * 2)); nothing else does
        scaled = node.op == "*" or (node.op == "/" and is_scalar(node.rhs))
        lhs = await self.run(node.lhs, keep if scaled and is_scalar(node.rhs) else None)
        rhs = await self.run(node.rhs, keep if node.op == "*" and is_scalar(node.lhs) else None)
        op = _ARITHMETIC[node.op]

        def fn(a: Any, b: Any) -> Any:  # (x/0 is ±Inf or NaN, as in Prometheus: no warning)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                return op(a, b)
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            return Scalar(fn(lhs.values, rhs.values))
        if isinstance(lhs, Vector) and isinstance(rhs, Scalar):
            return Vector({without_name(k): fn(v, rhs.values) for k, v in lhs.series.items()})
        if isinstance(lhs, Scalar) and isinstance(rhs, Vector):
            return Vector({without_name(k): fn(lhs.values, v) for k, v in rhs.series.items()})
        return Vector(_match(node, lhs.series, rhs.series, fn))  # type: ignore[union-attr]


def _quantiles(q: np.ndarray, groups: dict[Labels, list[tuple[float, np.ndarray]]]) -> Series:
    """``bucket_quantile`` of each group, in one call per set of bounds (the groups' steps side by side)."""
    by_bounds: dict[tuple[float, ...], list[tuple[Labels, np.ndarray]]] = {}
    for key, buckets in groups.items():
        buckets.sort(key=lambda b: b[0])
        counts = np.vstack([b[1] for b in buckets])
        by_bounds.setdefault(tuple(b[0] for b in buckets), []).append((key, counts))
    out: Series = {}
    for bounds, members in by_bounds.items():
        steps = len(q)
        found = bucket_quantile(np.tile(q, len(members)), np.array(bounds), np.hstack([c for _, c in members]))
        for i, (key, _) in enumerate(members):
            out[key] = found[i * steps:(i + 1) * steps]
    return {key: out[key] for key in groups}


def is_scalar(node: Node) -> bool:
    if isinstance(node, Number):
        return True
    if isinstance(node, Negate):
        return is_scalar(node.expr)
    return isinstance(node, Binary) and is_scalar(node.lhs) and is_scalar(node.rhs)


def _signature(labels: Labels, node: Binary) -> Labels:
    if node.on is not None:
        return tuple(p for p in labels if p[0] in node.on)
    return tuple(p for p in labels if p[0] not in node.ignoring and p[0] != NAME)


def _match(node: Binary, lhs: Series, rhs: Series, fn: Callable[[Any, Any], Any]) -> Series:
    right: dict[Labels, np.ndarray] = {}
    for labels, values in rhs.items():
        sig = _signature(labels, node)
        if sig in right:
            both = ~np.isnan(right[sig]) & ~np.isnan(values)
            if both.any():
                raise PromError("found duplicate series for the match group on the right hand-side of the "
                                "operation: many-to-many matching not allowed", "execution", 422)
            values = np.where(np.isnan(values), right[sig], values)
        right[sig] = values
    out: Series = {}
    seen: dict[Labels, np.ndarray] = {}
    for labels, values in lhs.items():
        sig = _signature(labels, node)
        other = right.get(sig)
        if other is None:
            continue
        if sig in seen and (~np.isnan(seen[sig]) & ~np.isnan(values)).any():
            raise PromError("found duplicate series for the match group on the left hand-side of the operation: "
                            "many-to-many matching not allowed", "execution", 422)
        seen[sig] = values
        result = sig if node.on is not None else without_name(labels)
        computed = fn(values, other)
        out[result] = computed if result not in out else np.where(np.isnan(computed), out[result], computed)
    return out


def _pow(a: Any, b: Any) -> Any:
    return np.power(np.asarray(a, dtype=float), b)


def _mod(a: Any, b: Any) -> Any:
    return np.fmod(a, b)  # (Go's math.Mod: the sign of the dividend)


_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "%": _mod, "^": _pow,
}


def _reduce(op: str, members: list[np.ndarray]) -> np.ndarray:
    if len(members) == 1 and op in ("sum", "avg", "min", "max"):  # (a group of one series: itself)
        return members[0]
    stack = np.vstack(members)
    present = ~np.isnan(stack)
    n = present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if op == "count":
            out = n.astype(float)
        elif op == "sum":
            out = np.nansum(stack, axis=0)
        elif op == "avg":
            out = np.nansum(stack, axis=0) / n
        elif op == "min":
            out = np.fmin.reduce(stack, axis=0)
        else:
            out = np.fmax.reduce(stack, axis=0)
    return np.where(n > 0, out, np.nan)
