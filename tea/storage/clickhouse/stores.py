"""The small stores beside ClickHouse's events: API tokens, the audit log, dead letters, documents and
records, the seed's projection tables. Each write is one columnar INSERT; rows replaced or deleted are
versioned (ReplacingMergeTree) and read with ``FINAL``-free ``argMax`` queries (``tea.storage.clickhouse.sql``)."""
from __future__ import annotations

from typing import Any

import msgspec
from clickhouse_driver import Client

from tea.storage.clickhouse import sql
from tea.storage.clickhouse.sql import lit
from tea.storage.projections import TABLES, distinct_rows
from tea.storage.rows import projection_rows
from tea.types import AuditRecord, DeadLetter, TokenRecord

_ROW_KEYS = [("tenant_id", "String"), ("id", "String"), ("timestamp", "Int64")]


class ClickHouseStores:
    """Mixed into ClickHouseStorage, whose client threads (``_on_writer``, ``_on_reader``, ``_rows``),
    mutations (``_mutate``) and table versions (``_replacing``, ``_version``) these use."""

    _on_writer: Any
    _on_reader: Any
    _rows: Any
    _mutate: Any
    _replacing: Any
    _version: Any
    final_reads: bool

    async def save_token(self, record: TokenRecord) -> None:
        values = [getattr(record, c) for c in sql.TOKEN_COLUMNS]
        values[sql.TOKEN_COLUMNS.index("secret_sealed")] = record.secret_sealed.hex()
        await self._insert("api_tokens", (*sql.TOKEN_COLUMNS, "version"), [[*values, self._version()]])

    async def find_token(self, *, token_hash: str | None = None, token_id: str | None = None) -> TokenRecord | None:
        where = f" WHERE token_id = {lit(token_id)}" if token_id is not None else \
            f" WHERE token_id IN (SELECT token_id FROM api_tokens WHERE token_hash = {lit(token_hash)})"
        tokens = [_token(r[0]) for r in await self._rows(sql.latest("api_tokens", sql.TOKEN_COLUMNS, "token_id", where))]
        found = [t for t in tokens if token_id is not None or t.token_hash == token_hash]
        return found[0] if found else None

    async def list_tokens(self, tenant_id: str | None = None) -> list[TokenRecord]:
        where = "" if tenant_id is None else f" WHERE tenant_id = {lit(tenant_id)}"
        tokens = [_token(r[0]) for r in await self._rows(sql.latest("api_tokens", sql.TOKEN_COLUMNS, "token_id", where))]
        return sorted(tokens, key=lambda t: (-t.created_at, t.token_id))

    async def append_audit(self, records: list[AuditRecord]) -> None:
        rows = [[r.at, r.action, r.actor, r.tenant_id, r.remote_addr, int(r.success), r.reason,
                 msgspec.json.encode(r.details).decode()] for r in records]
        await self._insert("audit_log", ("at", "action", "actor", "tenant_id", "remote_addr", "success", "reason",
                                         "details"), rows)

    async def query_audit(self, *, action: str | None = None, tenant_id: str | None = None,
                          start_us: int | None = None, end_us: int | None = None,
                          limit: int = 100) -> list[AuditRecord]:
        clauses = [c for c, v in ((f"action = {lit(action)}", action), (f"tenant_id = {lit(tenant_id)}", tenant_id),
                                  (f"at >= {lit(start_us)}", start_us), (f"at < {lit(end_us)}", end_us)) if v is not None]
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = await self._rows(f"SELECT at, action, actor, tenant_id, remote_addr, success, reason, details "
                                f"FROM audit_log{where} ORDER BY at DESC LIMIT {int(limit)}")
        return [AuditRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], msgspec.json.decode(r[7])) for r in rows]

    async def purge_audit_older_than(self, cutoff_us: int) -> int:
        return await self._on_writer(self._purge_older_sync, "audit_log", cutoff_us)

    async def purge_records_older_than(self, cutoff_us: int) -> int:
        return await self._on_writer(self._purge_older_sync, "records", cutoff_us)

    def _purge_older_sync(self, client: Client, table: str, cutoff_us: int) -> int:
        """Delete the rows of ``table`` (audit_log, records) whose ``at`` is before ``cutoff_us``."""
        condition = f"at < {int(cutoff_us)}"
        doomed = client.execute(f"SELECT count() FROM {table} WHERE {condition}")[0][0]
        if doomed:
            self._mutate(client, f"ALTER TABLE {table} DELETE WHERE {condition}", table)
        return doomed

    async def add_dead_letter(self, entry: DeadLetter) -> None:
        await self._insert("dead_letters", (*sql.DLQ_COLUMNS, "version"),
                           [[*(getattr(entry, c) for c in sql.DLQ_COLUMNS), self._version()]])

    async def _dead_letters(self, where: str = "") -> list[DeadLetter]:
        return [DeadLetter(*r[0]) for r in await self._rows(sql.latest("dead_letters", sql.DLQ_COLUMNS, "id", where))]

    async def list_dead_letters(self, *, limit: int = 100, include_replayed: bool = False) -> list[DeadLetter]:
        found = [d for d in await self._dead_letters() if include_replayed or d.replayed_at is None]
        return sorted(found, key=lambda d: (-d.at, d.id))[:limit]

    async def mark_replayed(self, entry_id: str, at_us: int) -> None:
        for entry in await self._dead_letters(f" WHERE id = {lit(entry_id)}"):
            await self.add_dead_letter(msgspec.structs.replace(entry, replayed_at=at_us))

    async def _insert(self, table: str, columns: tuple[str, ...], rows: list[list[Any]]) -> None:
        if rows:
            await self._on_writer(_insert_columns, table, columns, rows)

    def _projection(self, table: str) -> str:
        """A projection table as read: with FINAL (``final_reads``) where rows of one identity collapse."""
        return f"{table} FINAL" if self.final_reads and table in self._replacing else table

    async def write_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        fresh = distinct_rows(rows)
        if fresh:
            await self._on_writer(self._write_rows_sync, table, fresh)

    def _write_rows_sync(self, client: Client, table: str, rows: list[dict[str, Any]]) -> None:
        """Insert the rows no stored row has the identity of."""
        keys = [(r["tenant_id"], str(r["id"]).lower(), r["timestamp"]) for r in rows]
        stored = self._stored_rows(client, table, keys)
        columns = TABLES[table]
        new = [[_projection_value(c, row.get(c)) for c in columns] for row, key in zip(rows, keys) if key not in stored]
        if new:
            _insert_columns(client, table, columns, new)

    def _stored_rows(self, client: Client, table: str, keys: list[tuple[str, str, int]]) -> set[tuple[str, str, int]]:
        """Which identities ``(tenant_id, id, timestamp)`` are stored (looked up in the keys' time range)."""
        stamps = [key[2] for key in keys]
        found = client.execute(
            sql.stored_rows(table, sorted({key[0] for key in keys}), min(stamps), max(stamps), "row_keys"),
            external_tables=[{"name": "row_keys", "structure": _ROW_KEYS,
                              "data": [{"tenant_id": t, "id": i, "timestamp": ts} for t, i, ts in keys]}])
        return set(found)

    async def query_rows(self, table: str, *, tenant_ids: tuple[str, ...] | None, filters: dict[str, Any],
                         start_us: int | None = None, end_us: int | None = None,
                         limit: int = 100) -> list[dict[str, Any]]:
        columns = TABLES[table]
        clauses = [] if tenant_ids is None else [sql.in_list("tenant_id", tenant_ids)]
        clauses += [f"`{key}` = {lit(value)}" for key, value in filters.items()]
        clauses += [c for c, v in ((f"timestamp >= {lit(start_us)}", start_us), (f"timestamp < {lit(end_us)}", end_us))
                    if v is not None]
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = await self._rows(f"SELECT {', '.join(f'`{c}`' for c in columns)} FROM {self._projection(table)}{where} "
                                f"ORDER BY timestamp DESC, id LIMIT {int(limit)}")
        return projection_rows(columns, rows)

    async def projection_report(self, report: str, *, tenant_ids: tuple[str, ...] | None,
                                since_us: int) -> list[dict[str, Any]]:
        scope = "" if tenant_ids is None else " AND " + sql.in_list("tenant_id", tenant_ids)
        if report == "summary":
            return [{"table_name": t, "count": (await self._rows(f"SELECT count() FROM {self._projection(t)} WHERE 1{scope}"))[0][0]}
                    for t in TABLES]
        if report == "recent_activity":
            rows = await self._rows(f"SELECT event_type, count() AS n, max(timestamp) FROM {self._projection('user_activity')} "
                                    f"WHERE timestamp > {lit(since_us)}{scope} GROUP BY event_type "
                                    f"ORDER BY n DESC, event_type")
            return [{"event_type": r[0], "count": r[1], "latest": r[2]} for r in rows]
        rows = await self._rows(f"SELECT endpoint, method, count() AS hits, avg(duration_ms) FROM {self._projection('endpoint_usage')} "
                                f"WHERE timestamp > {lit(since_us)}{scope} GROUP BY endpoint, method "
                                f"ORDER BY hits DESC, endpoint, isNull(method) DESC, method LIMIT 10")
        return [{"endpoint": r[0], "method": r[1], "hits": r[2], "avg_duration_ms": r[3]} for r in rows]

    async def put_document(self, kind: str, tenant_id: str, key: str, doc: dict[str, Any]) -> None:
        await self.put_documents(kind, [(tenant_id, key, doc)])

    async def put_documents(self, kind: str, docs: list[tuple[str, str, dict[str, Any]]]) -> None:
        # (newest version wins: a key given twice keeps its last document)
        await self._insert("documents", ("kind", "tenant_id", "key", "doc", "deleted", "version"),
                           [[kind, tenant_id, key, msgspec.json.encode(doc).decode(), 0, self._version()]
                            for tenant_id, key, doc in docs])

    async def get_document(self, kind: str, tenant_id: str, key: str) -> dict[str, Any] | None:
        rows = await self._rows(sql.documents(kind, (tenant_id,), key))
        return msgspec.json.decode(rows[0][2]) if rows else None

    async def list_documents(self, kind: str, tenant_ids: tuple[str, ...] | None) -> list[tuple[str, str, dict[str, Any]]]:
        return [(r[0], r[1], msgspec.json.decode(r[2])) for r in await self._rows(sql.documents(kind, tenant_ids))]

    async def delete_document(self, kind: str, tenant_id: str, key: str) -> bool:
        if await self.get_document(kind, tenant_id, key) is None:
            return False
        await self._insert("documents", ("kind", "tenant_id", "key", "doc", "deleted", "version"),
                           [[kind, tenant_id, key, "", 1, self._version()]])
        return True

    async def append_records(self, kind: str, records: list[tuple[str, int, dict[str, Any]]]) -> None:
        await self._insert("records", ("kind", "tenant_id", "at", "seq", "body"),
                           [[kind, t, at, self._version(), msgspec.json.encode(body).decode()] for t, at, body in records])

    async def query_records(self, kind: str, *, tenant_ids: tuple[str, ...] | None, filters: dict[str, str] | None = None,
                            start_us: int | None = None, end_us: int | None = None,
                            limit: int = 100) -> list[tuple[str, int, dict[str, Any]]]:
        clauses = [f"kind = {lit(kind)}"] + ([] if tenant_ids is None else [sql.in_list("tenant_id", tenant_ids)])
        clauses += [c for c, v in ((f"at >= {lit(start_us)}", start_us), (f"at < {lit(end_us)}", end_us)) if v is not None]
        # 18.16 cannot read JSON exactly: narrow by the encoded pair in SQL, check the decoded body here
        clauses += [f"position(body, {lit(_pair(k, v))}) > 0" for k, v in (filters or {}).items()]
        out: list[tuple[str, int, dict[str, Any]]] = []
        page = f"SELECT tenant_id, at, seq, body FROM records WHERE {' AND '.join(clauses)}"
        last: tuple[int, int] | None = None
        while len(out) < limit:
            keyset = "" if last is None else f" AND (at < {last[0]} OR (at = {last[0]} AND seq < {last[1]}))"
            rows = await self._rows(f"{page}{keyset} ORDER BY at DESC, seq DESC LIMIT {max(int(limit), 1000)}")
            for tenant, at, _, text in rows:
                body = msgspec.json.decode(text)
                if not filters or all(body.get(k) == v for k, v in filters.items()):
                    out.append((tenant, at, body))
            if not filters or len(rows) < max(int(limit), 1000):
                break
            last = (rows[-1][1], rows[-1][2])
        return out[:limit]


def _pair(key: str, value: Any) -> str:
    return msgspec.json.encode(key).decode() + ":" + msgspec.json.encode(value).decode()


def _token(values: tuple[Any, ...]) -> TokenRecord:
    record = dict(zip(sql.TOKEN_COLUMNS, values))
    record["secret_sealed"] = bytes.fromhex(record["secret_sealed"])
    record["scopes"] = list(record["scopes"])
    return TokenRecord(**record)


def _projection_value(column: str, value: Any) -> Any:
    if column == "event_metadata":
        return None if value is None else msgspec.json.encode(value).decode()
    if column == "id":
        return str(value).lower()  # (as DuckDB and PostgreSQL print a UUID)
    return value


def _insert_columns(client: Client, table: str, columns: tuple[str, ...], rows: list[list[Any]]) -> None:
    """One columnar INSERT of ``rows`` (lists in the order of ``columns``)."""
    names = ", ".join(f"`{c}`" for c in columns)
    client.execute(f"INSERT INTO {table} ({names}) VALUES", [list(column) for column in zip(*rows)], columnar=True)
