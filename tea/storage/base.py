"""The storage Protocol every backend implements (``tea.plugins.make_storage`` picks one from the settings):
an event store and the small stores beside it (tokens, audit, dead letters, documents and records,
projections), each a Protocol of its own so a component can ask for just the store it uses; and the
optional capabilities a backend may add (``tea.storage.capabilities``), checked with ``isinstance``.

Backends receive neutral shapes (``Batch``, ``QuerySpec``, ``EventFilter``) and compile them into
their own dialect. Contract (tests/storage/test_contract.py runs it against every backend):

* ``write_batch`` is idempotent on ``(tenant_id, event_id)``: an event whose key is already stored —
  or earlier in the same batch — at its timestamp (an event stamped on arrival, or every event with
  ``storage.dedup_match = window``: within ``dedup_window_s`` of it; ``tea.storage.dedup``) is counted
  as a duplicate and not stored again. Buffer replays repeat events exactly, so they never duplicate.
* reads return events in the order (timestamp, event_id, tenant_id) descending and honour every
  field of the filter; ``tenant_ids=None`` reads every tenant.
* failures raise ``StorageError`` (transient: retried) or ``StorageDataError`` (the data itself
  was refused: the writer isolates the offending events).
"""
from __future__ import annotations

from typing import Any, AsyncIterator, ClassVar, Protocol, runtime_checkable

from tea.types import (AggregateSpec, AuditRecord, DeadLetter, TraceSummary, Batch, Event, EventFilter, QueryResult, QuerySpec, TokenRecord,
                       WriteResult)


@runtime_checkable
class EventStore(Protocol):
    """The events: written in batches, read in pages, aggregates, traces, retention."""

    async def write_batch(self, batch: Batch) -> WriteResult:
        """Store a batch atomically (all or nothing); idempotent as described above."""

    async def query_events(self, spec: QuerySpec) -> QueryResult:
        """One page of events matching ``spec.filter`` after ``spec.after``, at most ``spec.limit``."""

    async def count(self, filter: EventFilter | None = None) -> int:
        """How many stored events match (all when ``filter`` is None)."""

    async def aggregate(self, spec: AggregateSpec) -> list[tuple[Any, ...]]:
        """Rows ``(bucket_us | None, *group values, *aggregates)`` as described on AggregateSpec."""

    def iter_events(self, filter: EventFilter, chunk_rows: int = 10000) -> AsyncIterator[list[Event]]:
        """Every matching event, in chunks, in storage order, holding at most a chunk in memory."""

    async def purge_older_than(self, cutoff_us: int, tenant_ids: tuple[str, ...] | None = None,
                               exclude_tenant_ids: tuple[str, ...] = ()) -> int:
        """Delete events with timestamp < cutoff — only of ``tenant_ids`` when given, never of
        ``exclude_tenant_ids``; returns rows deleted."""

    async def traces(self, filter: EventFilter, *, service: str | None = None, min_duration_ms: float = 0.0,
                     errors: bool | None = None, limit: int = 100) -> list[TraceSummary]:
        """Trace summaries (spans grouped by tenant and trace id), newest first: only traces with a span of
        ``service``, lasting at least ``min_duration_ms``, with (True) or without (False) errors."""

    async def existing_event_keys(self, tenant_id: str, event_ids: list[str], start_us: int,
                                  end_us: int) -> set[tuple[str, int]]:
        """The ``(event_id, timestamp µs)`` of a tenant's stored events with one of ``event_ids`` and a timestamp
        in [start_us, end_us]."""

    async def retention_overrides(self) -> dict[str, int]:
        """Per-tenant retention hours set through the admin API (persisted with the data)."""

    async def set_retention_override(self, tenant_id: str, hours: int | None) -> None:
        """Set (or, with None, remove) a tenant's retention override."""



@runtime_checkable
class TokenStore(Protocol):
    """API token records."""

    async def save_token(self, record: TokenRecord) -> None:
        """Insert or replace an API token record (by ``token_id``)."""

    async def find_token(self, *, token_hash: str | None = None, token_id: str | None = None) -> TokenRecord | None:
        """One token record by the hash of its value or by its id."""

    async def list_tokens(self, tenant_id: str | None = None) -> list[TokenRecord]:
        """Token records, newest first, of one tenant or of all."""


@runtime_checkable
class AuditStore(Protocol):
    """The audit log (who did what, when)."""

    async def append_audit(self, records: list[AuditRecord]) -> None:
        """Store audit-log rows."""

    async def query_audit(self, *, action: str | None = None, tenant_id: str | None = None,
                          start_us: int | None = None, end_us: int | None = None,
                          limit: int = 100) -> list[AuditRecord]:
        """Audit-log rows, newest first, filtered."""

    async def purge_audit_older_than(self, cutoff_us: int) -> int:
        """Delete audit-log rows recorded before ``cutoff_us``; returns rows deleted."""


@runtime_checkable
class DeadLetterStore(Protocol):
    """Batches a processor gave up on, kept to be replayed."""

    async def add_dead_letter(self, entry: DeadLetter) -> None:
        """Keep a batch a processor gave up on."""

    async def list_dead_letters(self, *, limit: int = 100, include_replayed: bool = False) -> list[DeadLetter]:
        """Dead letters, newest first."""

    async def mark_replayed(self, entry_id: str, at_us: int) -> None:
        """Record that a dead letter was replayed successfully."""


@runtime_checkable
class DocumentStore(Protocol):
    """Small mutable state (registry entities, alert rules and states) as JSON documents keyed by
    (kind, tenant, key); append-only logs (state transitions, registration audit, alert history) as JSON
    records of (kind, tenant, at). Their logic lives above storage, in plain Python."""

    # Small mutable state (registry entities, alert rules and states) as JSON documents keyed by
    # (kind, tenant, key); append-only logs (state transitions, registration audit, alert history)
    # as JSON records of (kind, tenant, at). Their logic lives above storage, in plain Python.
    async def put_document(self, kind: str, tenant_id: str, key: str, doc: dict[str, Any]) -> None:
        """Insert or replace one document."""

    async def put_documents(self, kind: str, docs: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Insert or replace ``(tenant_id, key, doc)`` documents in one write (a key given twice: the last wins)."""

    async def get_document(self, kind: str, tenant_id: str, key: str) -> dict[str, Any] | None:
        """One document, or None."""

    async def list_documents(self, kind: str, tenant_ids: tuple[str, ...] | None) -> list[tuple[str, str, dict[str, Any]]]:
        """``(tenant_id, key, doc)`` of every document of ``kind`` (of ``tenant_ids`` when given), by tenant and key."""

    async def delete_document(self, kind: str, tenant_id: str, key: str) -> bool:
        """Remove one document; False when there was none."""

    async def append_records(self, kind: str, records: list[tuple[str, int, dict[str, Any]]]) -> None:
        """Append ``(tenant_id, at_us, body)`` records."""

    async def query_records(self, kind: str, *, tenant_ids: tuple[str, ...] | None, filters: dict[str, str] | None = None,
                            start_us: int | None = None, end_us: int | None = None,
                            limit: int = 100) -> list[tuple[str, int, dict[str, Any]]]:
        """``(tenant_id, at_us, body)`` records, newest first; ``filters`` match string fields of the body."""

    async def purge_records_older_than(self, cutoff_us: int) -> int:
        """Delete records of every kind (alert history, registry transitions and audit) appended for a time
        before ``cutoff_us``; returns rows deleted."""


@runtime_checkable
class ProjectionStore(Protocol):
    """The seed Telemetry Processor's analytics tables (user_activity, endpoint_usage, feature_usage)."""

    async def write_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Append rows to an analytics projection table (user_activity, endpoint_usage, feature_usage), each
        once: a row whose ``(tenant_id, id, timestamp)`` is stored already, or repeats an earlier row of
        ``rows``, is skipped (projections.IDENTITY)."""

    async def query_rows(self, table: str, *, tenant_ids: tuple[str, ...] | None, filters: dict[str, Any],
                         start_us: int | None = None, end_us: int | None = None,
                         limit: int = 100) -> list[dict[str, Any]]:
        """Projection rows, newest first, with column equality filters."""

    async def projection_report(self, report: str, *, tenant_ids: tuple[str, ...] | None,
                                since_us: int) -> list[dict[str, Any]]:
        """The seed's three queries: ``summary``, ``recent_activity``, ``top_endpoints``."""


@runtime_checkable
class Storage(EventStore, TokenStore, AuditStore, DeadLetterStore, DocumentStore, ProjectionStore, Protocol):
    """A whole backend: every store above, opened and closed together."""

    name: ClassVar[str]
    persistent: ClassVar[bool]

    async def open(self) -> None:
        """Connect, create or migrate the schema. Called once before anything else."""

    async def close(self) -> None:
        """Flush and release resources. Idempotent."""
