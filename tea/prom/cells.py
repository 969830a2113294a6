"""An aggregate's answer as a dense array: (groups, aggregates, buckets), built column-wise with numpy.

A query range of 1 440 steps over 20 methods is ~29 000 cells of ~17 aggregates; building Python
tuples for them costs as much as the scan, so backends that can (DuckDB) answer in columns
(``aggregate_columns``) and the rest are transposed once.

A histogram's per-bound counts (``count_le`` of one column at each ``le``) cost the scan one filtered
count per bound; a backend that can (``aggregate_bins``) counts each event once, in the bin between two
bounds, and the cumulative counts are summed here (``dense_bins``): the same integers.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from tea.types import Agg, AggregateSpec

# additive and exact: a cell's value is the sum of its bins' (floating sums are left alone: summing them
# bin by bin could change their last digits)
BINNABLE = ("count", "errors", "sum")
FLOAT_COLUMNS = ("duration_ms", "cost")


async def columns(reader: Any, spec: AggregateSpec) -> list[Any]:
    """``(bucket, *groups, *aggregates)`` as columns, from whichever form the backend answers in."""
    read = getattr(reader, "aggregate_columns", None)
    if read is not None:
        return await read(spec)
    rows = await reader.aggregate(spec)
    width = 1 + len(spec.group_by) + len(spec.aggs)
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(width)]


def histogram_of(aggs: Sequence[Agg]) -> tuple[str, tuple[float, ...]] | None:
    """The column and finite bounds when ``aggs`` can be answered from bins: two or more ``count_le`` of
    one column, every other aggregate additive, and the event count among them."""
    les = [a for a in aggs if a.fn == "count_le"]
    if len(les) < 2 or len({a.column for a in les}) != 1 or Agg("count") not in aggs:
        return None
    if any(a.fn not in BINNABLE or a.column in FLOAT_COLUMNS for a in aggs if a.fn != "count_le"):
        return None
    return str(les[0].column), tuple(sorted({float(a.le) for a in les if a.le != math.inf}))  # type: ignore[arg-type]


def _values(column: Any) -> list[Any]:
    """A label column as a list, NULL (masked or None) as None."""
    if isinstance(column, np.ma.MaskedArray):
        values = np.array(np.ma.getdata(column), dtype=object)
        values[np.ma.getmaskarray(column)] = None
        return values.tolist()
    return column.tolist() if isinstance(column, np.ndarray) else list(column)


def _factorize(values: list[Any]) -> tuple[list[str], np.ndarray]:
    """The sorted distinct labels (NULL as "": an empty label is absent) and each value's index among them
    (dicts, not a sort of every value)."""
    distinct = dict.fromkeys(values)
    uniq = sorted({"" if v is None else str(v) for v in distinct})
    at = {v: i for i, v in enumerate(uniq)}
    index = {v: at["" if v is None else str(v)] for v in distinct}
    return uniq, np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=len(values))


def _groups(cols: Sequence[Any], n: int) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """The distinct label tuples of ``n`` rows, sorted, and each row's index among them."""
    code = np.zeros(n, dtype=np.int64)
    names: list[list[str]] = []
    codes: list[np.ndarray] = []
    for column in cols:
        uniq, inverse = _factorize(_values(column))
        names.append(uniq)
        codes.append(inverse)
    if not n:
        return [], code
    if not cols:
        return [()], code
    if len(cols) == 1:
        return [(name,) for name in names[0]], codes[0]
    for uniq, inverse in zip(names, codes):  # (re-numbered after each column: the code never outgrows n)
        code = np.unique(code * max(1, len(uniq)) + inverse, return_inverse=True)[1].reshape(-1)
    first = np.unique(code, return_index=True)[1]
    return [tuple(names[c][int(codes[c][i])] for c in range(len(cols))) for i in first.tolist()], code


def _floats(column: Any) -> np.ndarray:
    if isinstance(column, np.ma.MaskedArray):
        return np.ma.filled(column.astype(float), 0.0)
    if isinstance(column, np.ndarray) and column.dtype != object:
        return column.astype(float)
    return np.array([0.0 if v is None else float(v) for v in column], dtype=float)


def _bucket(column: Any, n: int, width_us: int | None, origin_us: int) -> np.ndarray:
    if width_us is None:
        return np.zeros(n, dtype=np.int64)
    return (np.asarray(column, dtype=np.int64) - origin_us) // width_us


def dense(cols: Sequence[Any], groups: int, aggs: int, n_buckets: int, width_us: int | None,
          origin_us: int) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """The distinct label tuples and cells[group, aggregate, bucket] (0 where nothing was counted)."""
    keys, code = _groups(cols[1:1 + groups], len(cols[0]))
    cells = np.zeros((len(keys), aggs, n_buckets))
    if len(code):
        bucket = _bucket(cols[0], len(code), width_us, origin_us)
        for i, column in enumerate(cols[1 + groups:1 + groups + aggs]):
            cells[code, i, bucket] = _floats(column)
    return keys, cells


def _bins(column: Any) -> tuple[np.ndarray, np.ndarray]:
    """Which rows have a bin (NULL: no value), and their bins."""
    if isinstance(column, np.ma.MaskedArray):
        has = ~np.ma.getmaskarray(column)
        return has, np.asarray(np.ma.getdata(column), dtype=np.int64)[has]
    if isinstance(column, np.ndarray) and column.dtype != object:
        return np.ones(len(column), dtype=bool), column.astype(np.int64)
    has = np.array([b is not None for b in column], dtype=bool)
    return has, np.array([b for b in column if b is not None], dtype=np.int64)


def dense_bins(cols: Sequence[Any], groups: int, aggs: Sequence[Agg], bounds: Sequence[float], n_buckets: int,
               width_us: int | None, origin_us: int) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """``dense`` of ``aggs`` from ``aggregate_bins``' columns ``(bucket, *groups, bin, *additive aggs)``: the
    additive aggregates summed over the bins, each ``count_le`` the events of the bins up to its bound."""
    keys, code = _groups(cols[1:1 + groups], len(cols[0]))
    rest = [a for a in aggs if a.fn != "count_le"]
    cells = np.zeros((len(keys), len(aggs), n_buckets))
    if not len(code):
        return keys, cells
    bucket = _bucket(cols[0], len(code), width_us, origin_us)
    flat = code * n_buckets + bucket
    size = len(keys) * n_buckets
    for column, agg in zip(cols[2 + groups:], rest):
        cells[:, aggs.index(agg), :] = np.bincount(flat, _floats(column), size).reshape(len(keys), n_buckets)
    binned, at = _bins(cols[1 + groups])
    n = len(bounds) + 1
    counts = _floats(cols[2 + groups + rest.index(Agg("count"))])[binned]
    hist = np.bincount((code[binned] * n + at) * n_buckets + bucket[binned], counts, size * n)
    running: np.ndarray = hist.reshape(len(keys), n, n_buckets)
    np.cumsum(running, axis=1, out=running)  # (in place: the histogram can be as large as the cells)
    position = {**{b: i for i, b in enumerate(bounds)}, math.inf: n - 1}
    for i, agg in enumerate(aggs):
        if agg.fn == "count_le":
            cells[:, i, :] = running[:, position[agg.le], :]  # type: ignore[index]
    return keys, cells
