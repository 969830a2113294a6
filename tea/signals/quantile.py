"""Prometheus's histogram_quantile, at every step at once (the Prometheus API and the OTLP metric series)."""
from __future__ import annotations

import math

import numpy as np


def bucket_quantile(q: np.ndarray, bounds: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Prometheus's bucketQuantile at every step: ``counts`` is (buckets, steps) of cumulative counts,
    ``bounds`` the sorted upper bounds. NaN (no value) where Prometheus answers NaN: no +Inf bucket,
    fewer than two buckets, no observations, or a bucket missing at that step."""
    steps = counts.shape[1]
    nan = _out_of_range(q, np.full(steps, np.nan))
    if len(bounds) < 2 or bounds[-1] != math.inf:
        return nan
    # coalesce buckets with the same bound, then make the counts monotonic (float precision, resets)
    uniq, first = np.unique(bounds, return_index=True)
    if len(uniq) != len(bounds):
        summed = np.add.reduceat(counts, first, axis=0)
        bounds, counts = uniq, summed
        if len(bounds) < 2:
            return nan
    counts = np.array(counts, dtype=float)  # (a copy, made monotonic row by row: fmax.accumulate over axis 0 is ~10x slower)
    for i in range(1, len(counts)):
        np.fmax(counts[i - 1], counts[i], out=counts[i])
    missing = np.isnan(counts).any(axis=0)
    total = counts[-1]
    rank = q * total
    # the first bucket (not the +Inf one) whose count reaches the rank; len-1 when none does
    reached = counts[:-1] >= rank
    b = np.where(reached.any(axis=0), reached.argmax(axis=0), len(bounds) - 1)
    cols = np.arange(steps)
    prev = np.maximum(b - 1, 0)
    start = np.where(b > 0, bounds[prev], 0.0)
    end = bounds[np.minimum(b, len(bounds) - 1)]
    below = np.where(b > 0, counts[prev, cols], 0.0)
    in_bucket = counts[np.minimum(b, len(bounds) - 1), cols] - below
    with np.errstate(invalid="ignore", divide="ignore"):
        value = start + (end - start) * ((rank - below) / in_bucket)
    value = np.where(b == len(bounds) - 1, bounds[-2], value)
    value = np.where((b == 0) & (bounds[0] <= 0), bounds[0], value)
    return _out_of_range(q, np.where(missing | (total == 0), np.nan, value))


def _out_of_range(q: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Prometheus answers a quantile below 0 with -Inf and above 1 with +Inf, whatever the buckets."""
    return np.where(np.isnan(q), np.nan, np.where(q < 0, -math.inf, np.where(q > 1, math.inf, value)))
