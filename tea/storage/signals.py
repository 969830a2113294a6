"""Metric points and log records beside the events: the store a backend offers for them, and the router
that hands the writer's batches to it.

Points and records are acknowledged as ``metric`` / ``log`` event lines in the durable buffer (see
tea.signals.model); the writer stores a batch through ``SignalRouter.write_batch``, which sends those
lines to the backend's ``signals`` store and the rest to its events table. Each write is idempotent on
(tenant_id, id) (the ids are derived from the point or record), so a batch replayed after a crash between
the two writes stores nothing twice. A backend without a ``signals`` store keeps them as events.
"""
from __future__ import annotations

import asyncio
from typing import Any, Protocol, runtime_checkable

from tea.signals.model import (LOG_PREFIX, METRIC_PREFIX, LogRecord, MetricPoint, PointQuery, RecordQuery,
                               SeriesKey)
from tea.scan import contains_any
from tea.types import Batch, WriteResult

SIGNALS = ("events", "spans", "metric_points", "log_records")
_PREFIXES = (METRIC_PREFIX, LOG_PREFIX)
_KINDS = frozenset(["metric", "log"])  # the event types of those lines
_METRIC_KIND, _LOG_KIND = frozenset(["metric"]), frozenset(["log"])


@runtime_checkable
class SignalStore(Protocol):
    async def write_points(self, lines: list[bytes]) -> int:
        """Store metric lines (set-based; each item one or more whole lines); returns how many were new."""

    async def write_records(self, lines: list[bytes]) -> int:
        """Store log lines (set-based; each item one or more whole lines); returns how many were new."""

    async def points(self, q: PointQuery) -> list[MetricPoint]:
        """Points as ``PointQuery`` describes, oldest first, at most ``q.limit + 1``."""

    async def series(self, q: PointQuery) -> list[SeriesKey]:
        """The distinct series of the points ``q`` selects."""

    async def records(self, q: RecordQuery) -> list[LogRecord]:
        """Records as ``RecordQuery`` describes, newest first, at most ``q.limit + 1``."""

    async def counts(self, tenant_ids: tuple[str, ...] | None, start_us: int, end_us: int,
                     bucket: str) -> list[tuple[int, str, str, int]]:
        """``(bucket_us, tenant_id, signal, count)`` of metric points and log records (usage)."""

    async def purge_older_than(self, cutoff_us: int, tenant_ids: tuple[str, ...] | None = None,
                               exclude_tenant_ids: tuple[str, ...] = ()) -> int:
        """Delete points and records before ``cutoff_us`` (retention), as the events' purge does."""


@runtime_checkable
class HasSignals(Protocol):
    """A backend that keeps metric points and log records beside the events (an optional capability)."""

    signals: SignalStore | None


def signals_of(storage: Any) -> SignalStore | None:
    """The backend's point and record store, or None (then they are kept as events)."""
    return storage.signals if isinstance(storage, HasSignals) else None


def holds_signals(chunks: list[bytes]) -> bool:
    """Whether a batch's NDJSON chunks (whole lines each) may hold a metric or log line: one pass of both
    prefixes together without the GIL (the native search), else Python's substring search."""
    return contains_any(chunks, _PREFIXES)


def split(data: bytes) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(event lines, metric lines, log lines) of a batch's NDJSON, each line with its newline."""
    events: list[bytes] = []
    metrics: list[bytes] = []
    logs: list[bytes] = []
    for line in data.splitlines(keepends=True):
        if line.startswith(METRIC_PREFIX):
            metrics.append(line)
        elif line.startswith(LOG_PREFIX):
            logs.append(line)
        else:
            events.append(line)
    return events, metrics, logs


def _only(chunk: bytes, prefix: bytes) -> bool:
    """Whether every line of ``chunk`` (whole lines) starts with ``prefix`` (two counting passes in C)."""
    return (chunk.startswith(prefix) and chunk.endswith(b"\n")
            and chunk.count(b"\n" + prefix) == chunk.count(b"\n") - 1)


def split_chunks(chunks: list[bytes], kinds: frozenset[str] | None = None
                 ) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """``split`` of a batch's chunks (whole lines each), except that a chunk of only metric (or only log)
    lines — one OTLP request's — is passed on whole: a store takes items of one or more lines, each line
    ending in a newline. ``kinds``: the batch's event types when known (a batch of one of the two is not
    searched)."""
    if kinds == _METRIC_KIND:
        return [], list(chunks), []
    if kinds == _LOG_KIND:
        return [], [], list(chunks)
    events: list[bytes] = []
    metrics: list[bytes] = []
    logs: list[bytes] = []
    for chunk in chunks:
        if _only(chunk, METRIC_PREFIX):
            metrics.append(chunk)
        elif _only(chunk, LOG_PREFIX):
            logs.append(chunk)
        else:
            some_events, some_metrics, some_logs = split(chunk if chunk.endswith(b"\n") else chunk + b"\n")
            events += some_events
            metrics += some_metrics
            logs += some_logs
    return events, metrics, logs


class SignalRouter:
    """The storage the writer writes through: events to the events table, points and records to their
    store. Everything else is the backend's own (``__getattr__``)."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.store = signals_of(storage)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)

    async def write_batch(self, batch: Batch) -> WriteResult:
        if self.store is None or not batch.count:
            return await self.storage.write_batch(batch)
        # the event types are known when the batch came from memory; else a worker thread searches the chunks,
        # which hold whole lines (no join, and the event loop keeps serving)
        if batch.kinds is not None and not batch.kinds & _KINDS or \
                batch.kinds is None and not await asyncio.to_thread(holds_signals, batch.chunks):
            return await self.storage.write_batch(batch)
        events, metrics, logs = split_chunks(batch.chunks, batch.kinds)
        written = 0
        if events:
            result = await self.storage.write_batch(Batch([b"".join(events)], len(events), batch.min_ts, batch.max_ts))
            written += result.written
        if metrics:
            written += await self.store.write_points(metrics)
        if logs:
            written += await self.store.write_records(logs)
        return WriteResult(written, batch.count - written)
