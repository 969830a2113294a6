"""TEA's own metrics, exposed in the Prometheus text format at ``GET /metrics``.

One registry per app (tests build many apps). Gauges read live state at scrape time, so the hot
path only ever increments counters and observes histograms — and not even prometheus_client's own:
``Telemetry.child`` hands each thread a plain tally of its own (no lock, a few attribute updates),
and the tallies are folded into the registered metrics whenever the registry is collected (a
scrape of ``/metrics``). prometheus_client takes a lock per increment; five of them per request
were ~10 % of single-event ingestion.
"""
from __future__ import annotations

import threading
import time
from bisect import bisect_left
from typing import Any, AsyncIterator, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 10, 100, 1000, 5000, 10000, 25000, 50000, 100000, 250000)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Telemetry:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self._local = threading.local()  # each thread's tallies by (metric, labels)
        self._tallies: list[_CounterTally | _HistogramTally] = []
        self._fold_lock = threading.Lock()
        r.register(_Fold(self.fold))  # first: every collection sees the tallies folded in
        self.events_received = Counter("tea_events_received_total", "Events received, by protocol",
                                       ["protocol"], registry=r)
        self.events_accepted = Counter("tea_events_accepted_total", "Events acknowledged (durable), by protocol",
                                       ["protocol"], registry=r)
        self.events_rejected = Counter("tea_events_rejected_total", "Events refused, by protocol and reason",
                                       ["protocol", "reason"], registry=r)
        self.http_duration = Histogram("tea_http_request_duration_seconds", "HTTP request latency",
                                       ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.writer_batch_events = Histogram("tea_writer_batch_events", "Events per storage write",
                                             buckets=BATCH_BUCKETS, registry=r)
        self.storage_write_seconds = Histogram("tea_storage_write_seconds", "Storage batch write latency",
                                               buckets=LATENCY_BUCKETS, registry=r)
        self.storage_query_seconds = Histogram("tea_storage_query_seconds", "Storage read latency, by operation",
                                               ["operation"], buckets=LATENCY_BUCKETS, registry=r)
        self.events_written = Counter("tea_events_written_total", "Events committed to storage", registry=r)
        self.duplicates = Counter("tea_events_duplicate_total", "Events skipped as duplicates by storage",
                                  registry=r)
        self.storage_failures = Counter("tea_storage_write_failures_total", "Failed storage writes (retried)",
                                        registry=r)
        self.dead_lettered = Counter("tea_events_dead_lettered_total", "Events refused by storage as data",
                                     registry=r)
        self.retention_purged = Counter("tea_retention_purged_events_total", "Events deleted by retention",
                                        registry=r)
        self.retention_runs = Counter("tea_retention_runs_total", "Retention job runs", ["result"], registry=r)
        self.otlp_trace_requests = Counter(
            "tea_otlp_trace_requests_total", "OTLP protobuf trace requests by mapper: native, fallback (the native "
            "mapper left it to Python) or python (native off or not built)", ["mapper"], registry=r)
        self.otlp_metric_requests = Counter(
            "tea_otlp_metric_requests_total", "OTLP protobuf metric requests by mapper: native, fallback or python",
            ["mapper"], registry=r)
        self.read_waits = Counter("tea_read_waits_total", "Reads that waited for acknowledged events to be stored "
                                  "(read-your-writes), by outcome: stored, or stale (reads.max_wait_ms ran out)",
                                  ["outcome"], registry=r)
        self.auth = Counter("tea_auth_attempts_total", "Authentication attempts, by method and result",
                            ["method", "result"], registry=r)
        self.audit_records = Counter("tea_audit_records_total", "Audit-log rows recorded, by action", ["action"],
                                     registry=r)
        self.audit_dropped = Counter("tea_audit_dropped_total", "Audit-log rows lost: queue_full (a flood of "
                                     "them) or write_failed (storage refused the batch)", ["reason"], registry=r)
        self.audit_purged = Counter("tea_audit_purged_total", "Audit-log rows deleted by retention "
                                    "(audit.retention_hours)", registry=r)
        self.records_purged = Counter("tea_records_purged_total", "Alert-history and registry transition/audit "
                                      "records deleted by retention (records.retention_hours)", registry=r)
        self.do_not_track = Counter("tea_do_not_track_total", "Requests answered 204 for DNT: 1", ["protocol"],
                                    registry=r)
        self.dlq_entries = Counter("tea_dlq_entries_total", "Batches sent to the dead-letter queue, by processor",
                                   ["stage"], registry=r)
        self.dlq_fallback = Counter("tea_dlq_fallback_entries_total", "Dead letters storage refused, appended to "
                                    "<data_dir>/dead-letter/dlq.ndjson instead, by processor", ["stage"], registry=r)
        # Telemetron's own names, so dashboards built for it keep working
        self.telemetron_http_requests = Counter("telemetron_http_requests_total", "Telemetron-route requests",
                                                ["endpoint"], registry=r)
        self.telemetron_http_duration = Histogram("telemetron_http_requests_duration_seconds",
                                                  "Telemetron-route request latency", ["endpoint", "status"],
                                                  buckets=LATENCY_BUCKETS, registry=r)
        self.telemetron_plugin_errors = Counter("telemetron_processor_plugin_errors_total",
                                                "Permanent processor failures (batches sent to the DLQ)", ["plugin"],
                                                registry=r)
        self.telemetron_plugin_duration = Histogram("telemetron_processor_plugin_duration_seconds",
                                                    "Processor run time per batch, retries included",
                                                    ["plugin", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.telemetron_events_processed = Counter("telemetron_events_processed_total",
                                                   "Events committed to storage that every processor handed them "
                                                   "succeeded on", registry=r)

        self._children: dict[tuple[object, tuple[str, ...]], object] = {}

    def child(self, metric: Counter | Histogram, *labels: str) -> "_CounterTally | _HistogramTally":
        """This thread's tally of ``metric.labels(*labels)``: ``inc`` / ``observe`` as on the child,
        folded into it at the next collection. Found in a per-thread dict only."""
        key = (metric, labels)  # (a metric hashes by identity; a pair: nothing unpacked into a new tuple)
        try:
            found = self._local.tallies.get(key)
        except AttributeError:
            self._local.tallies = {}
            found = None
        if found is None:
            found = self._local.tallies[key] = self._tally(key, metric, labels)
        return found

    def count(self, metric: Counter, amount: float, *labels: str) -> None:
        """``child(metric, *labels).inc(amount)`` in one call (what a request counts with)."""
        try:
            tally = self._local.tallies[(metric, labels)]
        except (AttributeError, KeyError):  # (this thread's first count of it)
            tally = self.child(metric, *labels)
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        tally.value += amount

    def observe(self, metric: Histogram, value: float, *labels: str) -> None:
        """``child(metric, *labels).observe(value)`` in one call (what a request's duration is recorded with)."""
        try:
            tally = self._local.tallies[(metric, labels)]
        except (AttributeError, KeyError):  # (this thread's first observation of it)
            tally = self.child(metric, *labels)
        tally.total += value
        tally.counts[bisect_left(tally.bounds, value)] += 1

    def _tally(self, key: tuple[object, tuple[str, ...]], metric: Counter | Histogram,
               labels: tuple[str, ...]) -> "_CounterTally | _HistogramTally":
        with self._fold_lock:
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = metric.labels(*labels) if labels else metric
            tally = _HistogramTally(child) if isinstance(metric, Histogram) else _CounterTally(child)
            self._tallies.append(tally)
        return tally

    def fold(self) -> None:
        """Add what every tally counted since the last fold to its metric (any thread may call this)."""
        with self._fold_lock:
            for tally in self._tallies:
                tally.fold()

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A gauge computed at scrape time by ``read`` (live state: the buffer's backlog, the writer's lag)."""
        Gauge(name, help_text, registry=self.registry).set_function(read)

    def counter(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A counter kept elsewhere (a component's own running total), read at scrape time; exposed as
        ``<name>_total``."""
        self.registry.register(_LiveCounter(name, help_text, read))

    def labelled_gauge(self, name: str, help_text: str, label: str, read: Callable[[], dict[str, float]]) -> None:
        """A gauge with one label, computed at scrape time: ``read`` answers each label value's value."""
        self.registry.register(_LabelledGauge(name, help_text, label, read))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class TimedReads:
    """Storage as read routes reach it (through the scoped readers): every read is observed in
    ``tea_storage_query_seconds{operation}``, the operation being the storage method — for
    ``iter_events`` (exports, the communication views' fallback) the time spent inside storage over
    the whole stream, once it ends. Anything else passes through untimed."""

    TIMED = frozenset({"query_events", "count", "aggregate", "aggregate_columns", "aggregate_bins", "traces", "export_file", "communication_groups",
                       "query_rows", "projection_report", "get_document", "list_documents", "query_records"})

    def __init__(self, storage: Any, seconds: Histogram) -> None:
        self._storage = storage
        self._seconds = seconds

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._storage, name)  # (AttributeError for what the backend lacks, as hasattr expects)
        if name == "iter_events":
            return lambda *args, **kwargs: self._timed_chunks(method(*args, **kwargs))
        if name not in self.TIMED:
            return method

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:  # (the label child made here, not on attribute access: hasattr probes count nothing)
                self._seconds.labels(name).observe(time.perf_counter() - started)
        return timed

    async def _timed_chunks(self, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
        spent = 0.0
        try:
            while True:
                started = time.perf_counter()
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    spent += time.perf_counter() - started
                yield chunk
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
            self._seconds.labels("iter_events").observe(spent)


class _CounterTally:
    """One thread's increments of one counter child. Only its own thread writes ``value``; only the
    fold (under the fold lock) writes ``folded`` — so nothing is lost without a lock."""

    __slots__ = ("child", "value", "folded")

    def __init__(self, child: Counter) -> None:
        self.child = child
        self.value = 0.0
        self.folded = 0.0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.value += amount

    def fold(self) -> None:
        value = self.value
        if value != self.folded:
            self.child.inc(value - self.folded)
            self.folded = value


class _HistogramTally:
    """One thread's observations of one histogram child: a count per bucket (the first whose upper
    bound is >= the value, as prometheus_client places it) and the sum."""

    __slots__ = ("child", "bounds", "counts", "total", "folded_counts", "folded_total")

    def __init__(self, child: Histogram) -> None:
        self.child = child
        self.bounds = list(child._upper_bounds)  # (prometheus_client keeps +Inf last)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.folded_counts = [0] * len(self.bounds)
        self.folded_total = 0.0

    def observe(self, amount: float) -> None:
        self.total += amount
        self.counts[bisect_left(self.bounds, amount)] += 1

    def fold(self) -> None:
        counts, total = list(self.counts), self.total
        buckets = self.child._buckets
        for i, count in enumerate(counts):
            if count != self.folded_counts[i]:
                buckets[i].inc(count - self.folded_counts[i])
        if total != self.folded_total:
            self.child._sum.inc(total - self.folded_total)
        self.folded_counts, self.folded_total = counts, total


class _LabelledGauge(Collector):
    def __init__(self, name: str, help_text: str, label: str, read: Callable[[], dict[str, float]]) -> None:
        self._name, self._help, self._label, self._read = name, help_text, label, read

    def collect(self) -> Iterator[Any]:
        family = GaugeMetricFamily(self._name, self._help, labels=[self._label])
        for value_label, value in sorted(self._read().items()):
            family.add_metric([value_label], value)
        yield family

    def describe(self) -> list[Any]:
        return [GaugeMetricFamily(self._name, self._help, labels=[self._label])]


class _LiveCounter(Collector):
    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self._name, self._help, self._read = name, help_text, read

    def collect(self) -> Iterator[Any]:
        yield CounterMetricFamily(self._name, self._help, value=self._read())

    def describe(self) -> list[Any]:
        return [CounterMetricFamily(self._name, self._help)]


class _Fold(Collector):
    """Registered first in each registry: collecting it folds the tallies; it yields no metric."""

    def __init__(self, fold: Callable[[], None]) -> None:
        self._fold = fold

    def collect(self) -> Iterator[Any]:
        self._fold()
        return iter(())

    def describe(self) -> list[Any]:
        return []
