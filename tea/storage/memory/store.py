"""The in-memory backend: the seed's semantics (oldest evicted past ``max_events``), and tests."""
from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Any, AsyncIterator, ClassVar

import msgspec

from tea.storage import projections, pyagg
from tea.storage.dedup import repeats
from tea.storage.memory.signals import MemorySignals
from tea.types import (FILTER_COLUMNS, AggregateSpec, AuditRecord, DeadLetter, TraceSummary, Batch, Event, EventFilter, QueryResult, QuerySpec, TokenRecord,
                       WriteResult)



def select(events: list[Event], f: EventFilter) -> list[Event]:
    """The events ``f`` selects, in their order: the filter semantics of every backend, in Python (this
    backend's reads and the live tail's)."""
    if f.tenant_ids is not None:
        tenants = set(f.tenant_ids)
        events = [e for e in events if e.tenant_id in tenants]
    for name in FILTER_COLUMNS:
        wanted = getattr(f, name)
        if wanted is not None:
            events = [e for e in events if getattr(e, name) == wanted]
    if f.start_us is not None:
        events = [e for e in events if e.timestamp >= f.start_us]  # type: ignore[operator]
    if f.end_us is not None:
        events = [e for e in events if e.timestamp < f.end_us]  # type: ignore[operator]
    return events


class MemoryStorage:
    name: ClassVar[str] = "memory"
    persistent: ClassVar[bool] = False

    def __init__(self, max_events: int = 10000, dedup_window_us: int = 3_600_000_000,
                 dedup_same_time: bool = True) -> None:
        self.max_events = max_events
        self.dedup_window_us = dedup_window_us
        self.dedup_same_time = dedup_same_time
        self._events: OrderedDict[int, Event] = OrderedDict()  # insertion order = eviction order
        self._keys: dict[tuple[str, str], dict[int, int]] = {}   # (tenant, id) -> {seq: timestamp}
        self._seq = itertools.count()
        self._retention: dict[str, int] = {}
        self._tokens: dict[str, TokenRecord] = {}
        self._audit: list[AuditRecord] = []
        self._dead: dict[str, DeadLetter] = {}
        self._tables: dict[str, list[dict[str, Any]]] = {}
        self._row_keys: dict[str, set[tuple[str, str, int]]] = {}  # projections.identity of every kept row
        self._documents: dict[tuple[str, str, str], bytes] = {}
        self._records: dict[str, list[tuple[str, int, bytes]]] = {}
        self.signals = MemorySignals(max_events)  # metric points and log records, bounded like the events
        self.evicted = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def write_batch(self, batch: Batch) -> WriteResult:
        written = duplicates = 0
        for event in batch:
            key = (event.tenant_id, event.event_id)
            seen = self._keys.get(key)  # type: ignore[arg-type]
            ts: int = event.timestamp  # type: ignore[assignment]
            if seen and any(repeats(other, ts, event.received_at, self.dedup_window_us,  # type: ignore[arg-type]
                                    self.dedup_same_time) for other in seen.values()):
                duplicates += 1
                continue
            seq = next(self._seq)
            self._events[seq] = event
            self._keys.setdefault(key, {})[seq] = ts  # type: ignore[arg-type]
            written += 1
        while len(self._events) > self.max_events:
            seq, old = self._events.popitem(last=False)
            self._forget(seq, old)
            self.evicted += 1
        return WriteResult(written, duplicates)

    def _forget(self, seq: int, event: Event) -> None:
        key = (event.tenant_id, event.event_id)
        seen = self._keys.get(key)  # type: ignore[arg-type]
        if seen is not None:
            seen.pop(seq, None)
            if not seen:
                del self._keys[key]  # type: ignore[arg-type]

    def _matching(self, f: EventFilter | None) -> list[Event]:
        events = list(self._events.values())
        return events if f is None else select(events, f)

    async def query_events(self, spec: QuerySpec) -> QueryResult:
        events = self._matching(spec.filter)
        total = len(events) if spec.with_total else None
        events.sort(key=_order_key, reverse=True)
        if spec.after is not None:
            cursor = (spec.after.timestamp, spec.after.event_id, spec.after.tenant_id)
            events = [e for e in events if _order_key(e) < cursor]
        page = events[: spec.limit]
        return QueryResult(page, total, len(events) > spec.limit)

    async def count(self, filter: EventFilter | None = None) -> int:
        return len(self._events) if filter is None else len(self._matching(filter))

    async def purge_older_than(self, cutoff_us: int, tenant_ids: tuple[str, ...] | None = None,
                               exclude_tenant_ids: tuple[str, ...] = ()) -> int:
        doomed = [(seq, e) for seq, e in self._events.items()
                  if e.timestamp < cutoff_us and (tenant_ids is None or e.tenant_id in tenant_ids)  # type: ignore[operator]
                  and e.tenant_id not in exclude_tenant_ids]
        for seq, event in doomed:
            del self._events[seq]
            self._forget(seq, event)
        return len(doomed)

    async def retention_overrides(self) -> dict[str, int]:
        return dict(self._retention)

    async def set_retention_override(self, tenant_id: str, hours: int | None) -> None:
        if hours is None:
            self._retention.pop(tenant_id, None)
        else:
            self._retention[tenant_id] = hours

    async def save_token(self, record: TokenRecord) -> None:
        self._tokens[record.token_id] = record

    async def find_token(self, *, token_hash: str | None = None, token_id: str | None = None) -> TokenRecord | None:
        if token_id is not None:
            return self._tokens.get(token_id)
        return next((t for t in self._tokens.values() if t.token_hash == token_hash), None)

    async def list_tokens(self, tenant_id: str | None = None) -> list[TokenRecord]:
        found = [t for t in self._tokens.values() if tenant_id is None or t.tenant_id == tenant_id]
        return sorted(found, key=lambda t: (-t.created_at, t.token_id))

    async def append_audit(self, records: list[AuditRecord]) -> None:
        self._audit.extend(records)
        del self._audit[: max(0, len(self._audit) - self.max_events)]

    async def query_audit(self, *, action: str | None = None, tenant_id: str | None = None,
                          start_us: int | None = None, end_us: int | None = None,
                          limit: int = 100) -> list[AuditRecord]:
        found = [r for r in reversed(self._audit) if (action is None or r.action == action)
                 and (tenant_id is None or r.tenant_id == tenant_id) and (start_us is None or r.at >= start_us)
                 and (end_us is None or r.at < end_us)]
        return found[:limit]

    async def purge_audit_older_than(self, cutoff_us: int) -> int:
        kept = [r for r in self._audit if r.at >= cutoff_us]
        purged = len(self._audit) - len(kept)
        self._audit = kept
        return purged

    async def traces(self, filter: EventFilter, *, service: str | None = None, min_duration_ms: float = 0.0,
                     errors: bool | None = None, limit: int = 100) -> list[TraceSummary]:
        groups: dict[tuple[str, str], list[Event]] = {}
        for e in self._matching(filter):
            if e.event_type == "span" and e.trace_id:
                groups.setdefault((e.tenant_id, e.trace_id), []).append(e)  # type: ignore[arg-type]
        out = []
        for (tenant, trace_id), spans in groups.items():
            start = min(s.timestamp for s in spans)  # type: ignore[type-var]
            end = max(s.timestamp + int((s.duration_ms or 0) * 1000) for s in spans)  # type: ignore[operator]
            failed = sum(1 for s in spans if s.status == "error")
            roots = sorted((s for s in spans if not s.parent_span_id), key=lambda s: s.timestamp)  # type: ignore[arg-type,return-value]
            summary = TraceSummary(trace_id, tenant, start, end, len(spans), failed,  # type: ignore[arg-type]
                                   roots[0].method if roots else None, roots[0].source if roots else None,
                                   tuple(sorted({s.source for s in spans if s.source})))
            if service is not None and service not in summary.services:
                continue
            if (end - start) < min_duration_ms * 1000 or (errors is not None and (failed > 0) != errors):
                continue
            out.append(summary)
        return sorted(out, key=lambda t: (-t.start_us, t.trace_id))[:limit]

    async def write_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        kept, keys = self._tables.setdefault(table, []), self._row_keys.setdefault(table, set())
        for row in projections.distinct_rows(rows):
            key = projections.identity(row)
            if key not in keys:
                keys.add(key)
                kept.append(row)
        for old in kept[: max(0, len(kept) - self.max_events)]:
            keys.discard(projections.identity(old))
        del kept[: max(0, len(kept) - self.max_events)]

    async def query_rows(self, table: str, *, tenant_ids: tuple[str, ...] | None, filters: dict[str, Any],
                         start_us: int | None = None, end_us: int | None = None,
                         limit: int = 100) -> list[dict[str, Any]]:
        found = [r for r in self._tables.get(table, []) if (tenant_ids is None or r["tenant_id"] in tenant_ids)
                 and all(r.get(k) == v for k, v in filters.items())
                 and (start_us is None or r["timestamp"] >= start_us) and (end_us is None or r["timestamp"] < end_us)]
        return sorted(found, key=lambda r: (-r["timestamp"], str(r["id"])))[:limit]

    async def projection_report(self, report: str, *, tenant_ids: tuple[str, ...] | None,
                                since_us: int) -> list[dict[str, Any]]:
        return projections.report(self._tables, report, tenant_ids, since_us)

    async def existing_event_keys(self, tenant_id: str, event_ids: list[str], start_us: int,
                                  end_us: int) -> set[tuple[str, int]]:
        return {(i, ts) for i in event_ids for ts in self._keys.get((tenant_id, i), {}).values()
                if start_us <= ts <= end_us}

    async def add_dead_letter(self, entry: DeadLetter) -> None:
        self._dead[entry.id] = entry

    async def list_dead_letters(self, *, limit: int = 100, include_replayed: bool = False) -> list[DeadLetter]:
        found = [d for d in self._dead.values() if include_replayed or d.replayed_at is None]
        return sorted(found, key=lambda d: (-d.at, d.id))[:limit]

    async def mark_replayed(self, entry_id: str, at_us: int) -> None:
        if entry_id in self._dead:
            self._dead[entry_id] = msgspec.structs.replace(self._dead[entry_id], replayed_at=at_us)

    async def put_document(self, kind: str, tenant_id: str, key: str, doc: dict[str, Any]) -> None:
        self._documents[(kind, tenant_id, key)] = msgspec.json.encode(doc)  # a copy, as a database keeps

    async def put_documents(self, kind: str, docs: list[tuple[str, str, dict[str, Any]]]) -> None:
        for tenant_id, key, doc in docs:
            await self.put_document(kind, tenant_id, key, doc)

    async def get_document(self, kind: str, tenant_id: str, key: str) -> dict[str, Any] | None:
        raw = self._documents.get((kind, tenant_id, key))
        return None if raw is None else msgspec.json.decode(raw)

    async def list_documents(self, kind: str, tenant_ids: tuple[str, ...] | None) -> list[tuple[str, str, dict[str, Any]]]:
        return [(t, k, msgspec.json.decode(raw)) for (kd, t, k), raw in sorted(self._documents.items())
                if kd == kind and (tenant_ids is None or t in tenant_ids)]

    async def delete_document(self, kind: str, tenant_id: str, key: str) -> bool:
        return self._documents.pop((kind, tenant_id, key), None) is not None

    async def append_records(self, kind: str, records: list[tuple[str, int, dict[str, Any]]]) -> None:
        kept = self._records.setdefault(kind, [])
        kept.extend((t, at, msgspec.json.encode(body)) for t, at, body in records)
        del kept[: max(0, len(kept) - self.max_events)]

    async def purge_records_older_than(self, cutoff_us: int) -> int:
        purged = 0
        for kind, kept in self._records.items():
            young = [record for record in kept if record[1] >= cutoff_us]
            purged += len(kept) - len(young)
            self._records[kind] = young
        return purged

    async def query_records(self, kind: str, *, tenant_ids: tuple[str, ...] | None, filters: dict[str, str] | None = None,
                            start_us: int | None = None, end_us: int | None = None,
                            limit: int = 100) -> list[tuple[str, int, dict[str, Any]]]:
        out = []
        for order, (t, at, raw) in enumerate(self._records.get(kind, [])):
            if (tenant_ids is not None and t not in tenant_ids) or (start_us is not None and at < start_us) \
                    or (end_us is not None and at >= end_us):
                continue
            body = msgspec.json.decode(raw)
            if filters and any(body.get(k) != v for k, v in filters.items()):
                continue
            out.append((at, order, (t, at, body)))
        out.sort(key=lambda item: (-item[0], -item[1]))
        return [item[2] for item in out[:limit]]

    async def aggregate(self, spec: AggregateSpec) -> list[tuple[Any, ...]]:
        return pyagg.aggregate(self._matching(spec.filter), spec)

    async def iter_events(self, filter: EventFilter, chunk_rows: int = 10000) -> AsyncIterator[list[Event]]:
        events = self._matching(filter)  # a snapshot: later writes do not disturb the iteration
        for start in range(0, len(events), chunk_rows):
            yield events[start:start + chunk_rows]


def _order_key(event: Event) -> tuple[int, str, str]:
    return (event.timestamp, event.event_id, event.tenant_id)  # type: ignore[return-value]
