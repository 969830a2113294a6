"""The small stores beside PostgreSQL's events: API tokens, the audit log, dead letters, documents and
records, the seed's projection tables. Every write is one COPY of NDJSON lines and one INSERT … SELECT
(``tea.storage.postgres.copy``)."""
from __future__ import annotations

from typing import Any

import msgspec

from tea.storage.postgres import sql as q
from tea.storage.postgres.copy import copy_lines, from_lines, lines as _lines
from tea.storage.projections import IDENTITY, TABLES, distinct_rows
from tea.storage.rows import TOKEN_COLUMNS, projection_rows, token_from_row
from tea.types import AuditRecord, DeadLetter, TokenRecord

_DLQ_COLUMNS = ", ".join(f'"{c}"' for c in DeadLetter.__struct_fields__)
_AUDIT_COLUMNS = tuple(AuditRecord.__struct_fields__)


class PostgresStores:
    """Mixed into PostgresStorage, whose pool (``_connection``, ``_fetch``, ``_run``) these use."""

    _connection: Any
    _fetch: Any
    _run: Any

    async def save_token(self, record: TokenRecord) -> None:
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in TOKEN_COLUMNS[1:])
        insert = from_lines("api_tokens", TOKEN_COLUMNS, secret_sealed="decode(l.line::json->>'secret_sealed', "
                             "'base64')")  # (JSON carries bytes as base64)
        await self._load(_lines.encode_lines([record]), f"{insert} ON CONFLICT (token_id) DO UPDATE SET {updates}")

    async def _load(self, lines: bytes, insert: str) -> int:
        """Stage NDJSON ``lines`` (COPY) and run ``insert`` (from ``from_lines``) on them, in one transaction."""
        async with self._connection() as conn:
            async with conn.transaction():
                await copy_lines(conn, [lines])
                return (await conn.execute(insert)).rowcount

    async def find_token(self, *, token_hash: str | None = None, token_id: str | None = None) -> TokenRecord | None:
        column, value = ("token_id", token_id) if token_id is not None else ("token_hash", token_hash)
        rows = await self._fetch(f"SELECT {', '.join(TOKEN_COLUMNS)} FROM api_tokens WHERE {column} = %s", [value])
        return token_from_row(rows[0]) if rows else None

    async def list_tokens(self, tenant_id: str | None = None) -> list[TokenRecord]:
        where_tenant, params = (" WHERE tenant_id = %s", [tenant_id]) if tenant_id is not None else ("", [])
        rows = await self._fetch(f"SELECT {', '.join(TOKEN_COLUMNS)} FROM api_tokens{where_tenant} "
                                 f"ORDER BY created_at DESC, token_id", params)
        return [token_from_row(r) for r in rows]

    async def append_audit(self, records: list[AuditRecord]) -> None:
        if records:
            await self._load(_lines.encode_lines(records), from_lines("audit_log", _AUDIT_COLUMNS))

    async def query_audit(self, *, action: str | None = None, tenant_id: str | None = None,
                          start_us: int | None = None, end_us: int | None = None,
                          limit: int = 100) -> list[AuditRecord]:
        clauses, params = ["TRUE"], []
        for clause, value in (("action = %s", action), ("tenant_id = %s", tenant_id), ('"at" >= %s', start_us),
                              ('"at" < %s', end_us)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        rows = await self._fetch(f'SELECT "at", action, actor, tenant_id, remote_addr, success, reason, details::text '
                                 f'FROM audit_log WHERE {" AND ".join(clauses)} ORDER BY "at" DESC, seq DESC LIMIT %s',
                                 [*params, limit])
        return [AuditRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], msgspec.json.decode(r[7])) for r in rows]

    async def purge_audit_older_than(self, cutoff_us: int) -> int:
        return await self._run('DELETE FROM audit_log WHERE "at" < %s', [cutoff_us])

    async def purge_records_older_than(self, cutoff_us: int) -> int:
        return await self._run('DELETE FROM records WHERE "at" < %s', [cutoff_us])

    async def add_dead_letter(self, entry: DeadLetter) -> None:
        await self._load(_lines.encode_lines([entry]), from_lines("dead_letters", DeadLetter.__struct_fields__))

    async def list_dead_letters(self, *, limit: int = 100, include_replayed: bool = False) -> list[DeadLetter]:
        where_sql = "" if include_replayed else " WHERE replayed_at IS NULL"
        rows = await self._fetch(f'SELECT {_DLQ_COLUMNS} FROM dead_letters{where_sql} ORDER BY "at" DESC, id LIMIT %s',
                                 [limit])
        return [DeadLetter(*r) for r in rows]

    async def mark_replayed(self, entry_id: str, at_us: int) -> None:
        await self._run("UPDATE dead_letters SET replayed_at = %s WHERE id = %s", [at_us, entry_id])

    async def write_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        fresh = distinct_rows(rows)
        if fresh:  # (a row already stored is skipped by the unique index on IDENTITY)
            identity = ", ".join(f'"{c}"' for c in IDENTITY)
            await self._load(_lines.encode_lines(fresh),
                             f"{from_lines(table, TABLES[table])} ON CONFLICT ({identity}) DO NOTHING")

    async def query_rows(self, table: str, *, tenant_ids: tuple[str, ...] | None, filters: dict[str, Any],
                         start_us: int | None = None, end_us: int | None = None,
                         limit: int = 100) -> list[dict[str, Any]]:
        columns = TABLES[table]
        clauses, params = ["TRUE"], []
        if tenant_ids is not None:
            clause, values = q.tenant_clause(tenant_ids)
            clauses.append(clause)
            params.extend(values)
        for key, value in filters.items():
            if key not in columns:
                raise ValueError(f"{table} has no column {key!r}")
            # (an integer column compared with text: as text, so a non-number simply matches nothing)
            clauses.append(f'"{key}"::text = %s' if isinstance(value, str) else f'"{key}" = %s')
            params.append(value)
        for clause, value in (('"timestamp" >= %s', start_us), ('"timestamp" < %s', end_us)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        select = ", ".join("event_metadata::text" if c == "event_metadata" else "id::text" if c == "id" else f'"{c}"'
                           for c in columns)
        rows = await self._fetch(f'SELECT {select} FROM {table} WHERE {" AND ".join(clauses)} '
                                 f'ORDER BY "timestamp" DESC, id LIMIT %s', [*params, limit])
        return projection_rows(columns, rows)

    async def projection_report(self, report: str, *, tenant_ids: tuple[str, ...] | None,
                                since_us: int) -> list[dict[str, Any]]:
        scope, params = "", []
        if tenant_ids is not None:
            clause, params = q.tenant_clause(tenant_ids)
            scope = " AND " + clause
        if report == "summary":
            sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t} WHERE TRUE{scope}" for t in TABLES)
            counts = dict(await self._fetch(sql, params * len(TABLES)))  # type: ignore[arg-type]
            return [{"table_name": t, "count": counts[t]} for t in TABLES]
        if report == "recent_activity":
            rows = await self._fetch(f'SELECT event_type, count(*) AS n, max("timestamp") FROM user_activity '
                                     f'WHERE "timestamp" > %s{scope} GROUP BY event_type ORDER BY n DESC, event_type',
                                     [since_us, *params])
            return [{"event_type": r[0], "count": r[1], "latest": r[2]} for r in rows]
        rows = await self._fetch(f"SELECT endpoint, method, count(*) AS hits, avg(duration_ms) FROM endpoint_usage "
                                 f'WHERE "timestamp" > %s{scope} GROUP BY endpoint, method '
                                 f"ORDER BY hits DESC, endpoint, method NULLS FIRST LIMIT 10", [since_us, *params])
        return [{"endpoint": r[0], "method": r[1], "hits": r[2], "avg_duration_ms": r[3]} for r in rows]

    async def put_document(self, kind: str, tenant_id: str, key: str, doc: dict[str, Any]) -> None:
        await self.put_documents(kind, [(tenant_id, key, doc)])

    async def put_documents(self, kind: str, docs: list[tuple[str, str, dict[str, Any]]]) -> None:
        latest = {(tenant, key): doc for tenant, key, doc in docs}  # (a key given twice: the last one wins)
        if latest:
            lines = _lines.encode_lines({"kind": kind, "tenant_id": t, "key": k, "doc": d} for (t, k), d in latest.items())
            await self._load(lines, f"{from_lines('documents', ('kind', 'tenant_id', 'key', 'doc'))} "
                                    f"ON CONFLICT (kind, tenant_id, key) DO UPDATE SET doc = EXCLUDED.doc")

    async def get_document(self, kind: str, tenant_id: str, key: str) -> dict[str, Any] | None:
        rows = await self._fetch("SELECT doc::text FROM documents WHERE kind = %s AND tenant_id = %s AND key = %s",
                                 [kind, tenant_id, key])
        return msgspec.json.decode(rows[0][0]) if rows else None

    async def list_documents(self, kind: str, tenant_ids: tuple[str, ...] | None) -> list[tuple[str, str, dict[str, Any]]]:
        scope, params = "", []
        if tenant_ids is not None:
            clause, params = q.tenant_clause(tenant_ids)
            scope = " AND " + clause
        rows = await self._fetch(f"SELECT tenant_id, key, doc::text FROM documents WHERE kind = %s{scope} "
                                 f"ORDER BY tenant_id, key", [kind, *params])
        return [(r[0], r[1], msgspec.json.decode(r[2])) for r in rows]

    async def delete_document(self, kind: str, tenant_id: str, key: str) -> bool:
        return await self._run("DELETE FROM documents WHERE kind = %s AND tenant_id = %s AND key = %s",
                               [kind, tenant_id, key]) > 0

    async def append_records(self, kind: str, records: list[tuple[str, int, dict[str, Any]]]) -> None:
        if records:
            lines = _lines.encode_lines({"kind": kind, "tenant_id": t, "at": at, "body": body} for t, at, body in records)
            await self._load(lines, from_lines("records", ("kind", "tenant_id", "at", "body")))

    async def query_records(self, kind: str, *, tenant_ids: tuple[str, ...] | None, filters: dict[str, str] | None = None,
                            start_us: int | None = None, end_us: int | None = None,
                            limit: int = 100) -> list[tuple[str, int, dict[str, Any]]]:
        clauses, params = ["kind = %s"], [kind]
        if tenant_ids is not None:
            clause, values = q.tenant_clause(tenant_ids)
            clauses.append(clause)
            params.extend(values)
        for key, value in (filters or {}).items():
            clauses.append("body ->> %s = %s")
            params.extend([key, value])
        for clause, value in (('"at" >= %s', start_us), ('"at" < %s', end_us)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        rows = await self._fetch(f'SELECT tenant_id, "at", body::text FROM records WHERE {" AND ".join(clauses)} '
                                 f'ORDER BY "at" DESC, seq DESC LIMIT %s', [*params, limit])
        return [(r[0], r[1], msgspec.json.decode(r[2])) for r in rows]
