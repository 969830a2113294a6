"""PromQL text → a small plan of the subset TEA evaluates, parsed by ``promql-parser``.

Supported: instant selectors with ``=``, ``!=``, ``=~``, ``!~`` matchers (and ``offset``), ``rate`` and
``increase`` of a range selector, ``sum``/``avg``/``min``/``max``/``count`` with ``by``/``without``,
``histogram_quantile``, ``+ - * / % ^`` between two expressions (one-to-one, optionally ``on``/``ignoring``)
or with scalars, unary minus and parentheses. Anything else is a ``PromError`` naming what is not
supported, which the API answers as Prometheus does (400, ``bad_data``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Union

import promql_parser as pp

AGGREGATIONS = ("sum", "avg", "min", "max", "count")
FUNCTIONS = ("rate", "increase", "histogram_quantile")
ARITHMETIC = ("+", "-", "*", "/", "%", "^")


class PromError(Exception):
    """A query TEA refuses; ``kind`` is Prometheus's errorType (bad_data, execution...)."""

    def __init__(self, message: str, kind: str = "bad_data", status: int = 400) -> None:
        super().__init__(message)
        self.message, self.kind, self.status = message, kind, status


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str        # = != =~ !~
    value: str

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = _regex(self.value).fullmatch(value) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class Selector:
    matchers: tuple[Matcher, ...]  # the metric name as a matcher on __name__
    offset_us: int = 0


@dataclass(frozen=True)
class RangeFn:
    fn: str                        # rate | increase
    selector: Selector
    range_us: int


@dataclass(frozen=True)
class Quantile:
    q: "Node"
    vector: "Node"


@dataclass(frozen=True)
class Aggregate:
    op: str
    expr: "Node"
    labels: tuple[str, ...]
    without: bool                  # True: every label but ``labels``; False: only ``labels`` (by)


@dataclass(frozen=True)
class Binary:
    op: str
    lhs: "Node"
    rhs: "Node"
    on: tuple[str, ...] | None = None        # match on these labels only
    ignoring: tuple[str, ...] = ()           # match on every label but these


@dataclass(frozen=True)
class Negate:
    expr: "Node"


Node = Union[Number, Selector, RangeFn, Quantile, Aggregate, Binary, Negate]
_OPS = {int(pp.MatchOp.Equal): "=", int(pp.MatchOp.NotEqual): "!=", int(pp.MatchOp.Re): "=~",
        int(pp.MatchOp.NotRe): "!~"}
_REGEXES: dict[str, re.Pattern[str]] = {}


def _regex(text: str) -> re.Pattern[str]:
    found = _REGEXES.get(text)
    if found is None:
        if len(_REGEXES) > 1024:
            _REGEXES.clear()
        found = _REGEXES[text] = re.compile(text, re.DOTALL)
    return found


def parse(text: str, parameter: str = "query") -> Node:
    if not text.strip():
        raise PromError("empty query")
    try:
        expr = pp.parse(text)
    except ValueError as exc:
        raise PromError(f"invalid parameter \"{parameter}\": {exc}") from None
    return _node(expr)


def _us(delta: timedelta | None) -> int:
    return 0 if delta is None else delta // timedelta(microseconds=1)


def _node(expr: object) -> Node:
    kind = type(expr).__name__
    if kind == "ParenExpr":
        return _node(expr.expr)  # type: ignore[attr-defined]
    if kind == "NumberLiteral":
        return Number(float(expr.val))  # type: ignore[attr-defined]
    if kind == "VectorSelector":
        return _selector(expr)
    if kind == "UnaryExpr":
        return Negate(_node(expr.expr))  # type: ignore[attr-defined]
    if kind == "Call":
        return _call(expr)
    if kind == "AggregateExpr":
        return _aggregate(expr)
    if kind == "BinaryExpr":
        return _binary(expr)
    if kind == "MatrixSelector":
        raise PromError("a range selector (x[5m]) is only supported inside rate() or increase(); "
                        "instant and range queries answer vectors")
    if kind == "StringLiteral":
        raise PromError("string literals are not supported")
    if kind == "SubqueryExpr":
        raise PromError("subqueries are not supported")
    raise PromError(f"unsupported expression: {expr}")


def _selector(expr: object) -> Selector:
    if expr.at is not None:  # type: ignore[attr-defined]
        raise PromError("the @ modifier is not supported")
    if expr.matchers.or_matchers:  # type: ignore[attr-defined]
        raise PromError("'or' inside a selector's braces is not supported")
    matchers = [Matcher(m.name, _OPS[int(m.op)], m.value) for m in expr.matchers.matchers]  # type: ignore[attr-defined]
    if expr.name:  # type: ignore[attr-defined]
        matchers.insert(0, Matcher("__name__", "=", expr.name))  # type: ignore[attr-defined]
    for m in matchers:
        if m.op in ("=~", "!~"):
            try:
                _regex(m.value)
            except re.error as exc:
                raise PromError(f"invalid regular expression {m.value!r} for label {m.name}: {exc}") from None
    return Selector(tuple(matchers), _us(expr.offset))  # type: ignore[attr-defined]


def _call(expr: object) -> Node:
    name = expr.func.name  # type: ignore[attr-defined]
    args = list(expr.args)  # type: ignore[attr-defined]
    if name not in FUNCTIONS:
        raise PromError(f"function {name}() is not supported (supported: {', '.join(FUNCTIONS)})")
    if name == "histogram_quantile":
        return Quantile(_node(args[0]), _node(args[1]))
    arg = args[0]
    if type(arg).__name__ != "MatrixSelector":
        raise PromError(f"{name}() takes a range selector such as x[5m]")
    return RangeFn(name, _selector(arg.vector_selector), _us(arg.range))


def _aggregate(expr: object) -> Aggregate:
    op = str(expr.op)  # type: ignore[attr-defined]
    if op not in AGGREGATIONS:
        raise PromError(f"aggregation {op} is not supported (supported: {', '.join(AGGREGATIONS)})")
    modifier = expr.modifier  # type: ignore[attr-defined]
    if modifier is None:
        return Aggregate(op, _node(expr.expr), (), False)  # type: ignore[attr-defined]
    without = modifier.type == pp.AggModifierType.Without
    return Aggregate(op, _node(expr.expr), tuple(modifier.labels), without)  # type: ignore[attr-defined]


def _binary(expr: object) -> Binary:
    op = str(expr.op)  # type: ignore[attr-defined]
    if op not in ARITHMETIC:
        raise PromError(f"operator {op} is not supported (supported: arithmetic {' '.join(ARITHMETIC)})")
    modifier = expr.modifier  # type: ignore[attr-defined]
    on, ignoring = None, ()
    if modifier is not None:
        if modifier.card != pp.VectorMatchCardinality.OneToOne:
            raise PromError("group_left / group_right are not supported: only one-to-one matching")
        if modifier.matching is not None:
            labels = tuple(modifier.matching.labels)
            if modifier.matching.type == pp.LabelModifierType.Include:
                on = labels
            else:
                ignoring = labels
    return Binary(op, _node(expr.lhs), _node(expr.rhs), on, ignoring)  # type: ignore[attr-defined]
