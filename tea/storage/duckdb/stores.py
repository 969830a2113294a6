"""The small stores beside DuckDB's events: API tokens, the audit log, dead letters, documents and
records, the seed's projection tables. Writes go through the staged bulk path (``writes``) on the writer
thread; reads run on the reader cursors (``DuckDBStorage._on_reader``)."""
from __future__ import annotations

from typing import Any

import msgspec

from tea.storage.duckdb import writes as duckdb_writes
from tea.storage.duckdb.sql import tenant_clause
from tea.storage.projections import TABLES, Row
from tea.storage.rows import TOKEN_COLUMNS, projection_rows, token_from_row
from tea.types import AuditRecord, DeadLetter, TokenRecord

_DLQ_COLUMNS = ", ".join(f'"{c}"' for c in DeadLetter.__struct_fields__)


class DuckDBStores:
    """Mixed into DuckDBStorage, whose writer thread (``_store``, ``_on_writer``) and reader cursors
    (``_on_reader``) these use."""

    _con: Any
    _store: Any
    _on_reader: Any
    _on_writer: Any

    async def save_token(self, record: TokenRecord) -> None:
        await self._store(duckdb_writes.save_tokens, [record])

    async def find_token(self, *, token_hash: str | None = None, token_id: str | None = None) -> TokenRecord | None:
        column, value = ("token_id", token_id) if token_id is not None else ("token_hash", token_hash)
        rows = await self._on_reader(lambda cur: cur.execute(
            f"SELECT {', '.join(TOKEN_COLUMNS)} FROM api_tokens WHERE {column} = ?", [value]).fetchall())
        return token_from_row(rows[0]) if rows else None

    async def list_tokens(self, tenant_id: str | None = None) -> list[TokenRecord]:
        where_tenant, params = (" WHERE tenant_id = ?", [tenant_id]) if tenant_id is not None else ("", [])
        rows = await self._on_reader(lambda cur: cur.execute(
            f"SELECT {', '.join(TOKEN_COLUMNS)} FROM api_tokens{where_tenant} ORDER BY created_at DESC, token_id",
            params).fetchall())
        return [token_from_row(row) for row in rows]

    async def append_audit(self, records: list[AuditRecord]) -> None:
        if records:
            await self._store(duckdb_writes.append_audit, records)

    async def query_audit(self, *, action: str | None = None, tenant_id: str | None = None,
                          start_us: int | None = None, end_us: int | None = None,
                          limit: int = 100) -> list[AuditRecord]:
        clauses, params = [], []
        for clause, value in (("action = ?", action), ("tenant_id = ?", tenant_id), ('"at" >= ?', start_us),
                              ('"at" < ?', end_us)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where_sql = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = await self._on_reader(lambda cur: cur.execute(
            f'SELECT "at", action, actor, tenant_id, remote_addr, success, reason, CAST(details AS VARCHAR) '
            f'FROM audit_log{where_sql} ORDER BY "at" DESC LIMIT ?', [*params, limit]).fetchall())
        return [AuditRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], msgspec.json.decode(r[7])) for r in rows]

    async def purge_audit_older_than(self, cutoff_us: int) -> int:
        return await self._delete_before("audit_log", cutoff_us)

    async def purge_records_older_than(self, cutoff_us: int) -> int:
        return await self._delete_before("records", cutoff_us)

    async def _delete_before(self, table: str, cutoff_us: int) -> int:
        """Delete the rows of ``table`` (audit_log, records) whose ``at`` is before ``cutoff_us``."""
        row = await self._on_writer(lambda: self._con.execute(  # type: ignore[union-attr]
            f'DELETE FROM {table} WHERE "at" < ?', [cutoff_us]).fetchone())
        return row[0] if row else 0

    async def write_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self._store(duckdb_writes.write_rows, table, rows)

    async def write_row_sets(self, tables: dict[str, list[Row]]) -> None:
        if any(tables.values()):
            await self._store(duckdb_writes.write_row_sets, tables)

    async def query_rows(self, table: str, *, tenant_ids: tuple[str, ...] | None, filters: dict[str, Any],
                         start_us: int | None = None, end_us: int | None = None,
                         limit: int = 100) -> list[dict[str, Any]]:
        columns = TABLES[table]
        clauses, params = [], []
        if tenant_ids is not None:
            clauses.append(tenant_clause(tenant_ids))
            params.extend(tenant_ids)
        for key, value in filters.items():
            clauses.append(f'"{key}" = ?')
            params.append(value)
        for clause, value in (("timestamp >= make_timestamp(?)", start_us), ("timestamp < make_timestamp(?)", end_us)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where_sql = " WHERE " + " AND ".join(clauses) if clauses else ""
        select = ", ".join(f"epoch_us({c})" if c in ("timestamp", "created_at") else
                           "CAST(event_metadata AS VARCHAR)" if c == "event_metadata" else
                           "CAST(id AS VARCHAR)" if c == "id" else f'"{c}"' for c in columns)
        rows = await self._on_reader(lambda cur: cur.execute(
            f"SELECT {select} FROM {table}{where_sql} ORDER BY timestamp DESC, id LIMIT ?", [*params, limit]).fetchall())
        return projection_rows(columns, rows)

    async def projection_report(self, report: str, *, tenant_ids: tuple[str, ...] | None,
                                since_us: int) -> list[dict[str, Any]]:
        scope, params = ("", []) if tenant_ids is None else (" AND " + tenant_clause(tenant_ids), list(tenant_ids))
        if report == "summary":
            sql = " UNION ALL ".join(f"SELECT '{t}' AS table_name, count(*) AS count FROM {t} WHERE TRUE{scope}"
                                     for t in TABLES)
            counts = dict(await self._on_reader(lambda cur: cur.execute(sql, params * len(TABLES)).fetchall()))
            return [{"table_name": t, "count": counts[t]} for t in TABLES]  # (UNION ALL keeps no order)
        if report == "recent_activity":
            sql = (f"SELECT event_type, count(*) AS count, epoch_us(max(timestamp)) AS latest FROM user_activity "
                   f"WHERE timestamp > make_timestamp(?){scope} GROUP BY event_type ORDER BY count DESC, event_type")
            rows = await self._on_reader(lambda cur: cur.execute(sql, [since_us, *params]).fetchall())
            return [{"event_type": r[0], "count": r[1], "latest": r[2]} for r in rows]
        sql = (f"SELECT endpoint, method, count(*) AS hits, avg(duration_ms) AS avg_duration_ms FROM endpoint_usage "
               f"WHERE timestamp > make_timestamp(?){scope} GROUP BY endpoint, method "
               f"ORDER BY hits DESC, endpoint, method NULLS FIRST LIMIT 10")
        rows = await self._on_reader(lambda cur: cur.execute(sql, [since_us, *params]).fetchall())
        return [{"endpoint": r[0], "method": r[1], "hits": r[2], "avg_duration_ms": r[3]} for r in rows]

    async def add_dead_letter(self, entry: DeadLetter) -> None:
        await self._store(duckdb_writes.add_dead_letters, [entry])

    async def list_dead_letters(self, *, limit: int = 100, include_replayed: bool = False) -> list[DeadLetter]:
        where_sql = "" if include_replayed else " WHERE replayed_at IS NULL"
        rows = await self._on_reader(lambda cur: cur.execute(
            f'SELECT {_DLQ_COLUMNS} FROM dead_letters{where_sql} ORDER BY "at" DESC, id LIMIT ?', [limit]).fetchall())
        return [DeadLetter(*row) for row in rows]

    async def mark_replayed(self, entry_id: str, at_us: int) -> None:
        await self._on_writer(lambda: self._con.execute(  # type: ignore[union-attr]
            "UPDATE dead_letters SET replayed_at = ? WHERE id = ?", [at_us, entry_id]))

    async def put_document(self, kind: str, tenant_id: str, key: str, doc: dict[str, Any]) -> None:
        await self.put_documents(kind, [(tenant_id, key, doc)])

    async def put_documents(self, kind: str, docs: list[tuple[str, str, dict[str, Any]]]) -> None:
        if docs:
            await self._store(duckdb_writes.put_documents, kind, docs)

    async def get_document(self, kind: str, tenant_id: str, key: str) -> dict[str, Any] | None:
        rows = await self._on_reader(lambda cur: cur.execute(
            "SELECT doc FROM documents WHERE kind = ? AND tenant_id = ? AND key = ?", [kind, tenant_id, key]).fetchall())
        return msgspec.json.decode(rows[0][0]) if rows else None

    async def list_documents(self, kind: str, tenant_ids: tuple[str, ...] | None) -> list[tuple[str, str, dict[str, Any]]]:
        scope, params = ("", []) if tenant_ids is None else (" AND " + tenant_clause(tenant_ids), list(tenant_ids))
        rows = await self._on_reader(lambda cur: cur.execute(
            f"SELECT tenant_id, key, doc FROM documents WHERE kind = ?{scope} ORDER BY tenant_id, key",
            [kind, *params]).fetchall())
        return [(r[0], r[1], msgspec.json.decode(r[2])) for r in rows]

    async def delete_document(self, kind: str, tenant_id: str, key: str) -> bool:
        def delete() -> bool:
            con = self._con
            assert con is not None
            row = con.execute("DELETE FROM documents WHERE kind = ? AND tenant_id = ? AND key = ? RETURNING 1",
                              [kind, tenant_id, key]).fetchall()
            return bool(row)
        return await self._on_writer(delete)

    async def append_records(self, kind: str, records: list[tuple[str, int, dict[str, Any]]]) -> None:
        if records:
            await self._store(duckdb_writes.append_records, kind, records)

    async def query_records(self, kind: str, *, tenant_ids: tuple[str, ...] | None, filters: dict[str, str] | None = None,
                            start_us: int | None = None, end_us: int | None = None,
                            limit: int = 100) -> list[tuple[str, int, dict[str, Any]]]:
        clauses, params = ["kind = ?"], [kind]
        if tenant_ids is not None:
            clauses.append(tenant_clause(tenant_ids))
            params.extend(tenant_ids)
        for key, value in (filters or {}).items():
            clauses.append("json_extract_string(body, ?) = ?")
            params.extend([f'$."{key}"', value])
        for clause, value in (('"at" >= ?', start_us), ('"at" < ?', end_us)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        rows = await self._on_reader(lambda cur: cur.execute(
            f'SELECT tenant_id, "at", CAST(body AS VARCHAR) FROM records WHERE {" AND ".join(clauses)} '
            f'ORDER BY "at" DESC, seq DESC LIMIT ?', [*params, limit]).fetchall())
        return [(r[0], r[1], msgspec.json.decode(r[2])) for r in rows]
