"""The signal stores' queries (PointQuery, RecordQuery) compiled for DuckDB and PostgreSQL, whose
placeholders and JSON access their ``Dialect`` gives."""
from __future__ import annotations

from typing import Any

from tea.signals.model import PointQuery, RecordQuery
from tea.storage.sql.dialect import Dialect


def json_path(key: str) -> str:
    """A JSON path naming one top-level key, quoted (keys hold dots: ``http.route``)."""
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def like_pattern(text: str) -> str:
    """``%text%`` for LIKE with ``\\`` as the escape character."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def where(q: PointQuery | RecordQuery, d: Dialect) -> tuple[list[str], list[Any]]:
    """The conditions of a point or record query (names, severity, body, trace and cursor included)."""
    m = d.mark
    clauses: list[str] = []
    params: list[Any] = []
    if q.tenant_ids is not None:
        clauses.append(d.in_list(params, "tenant_id", q.tenant_ids))
    for clause, value in ((f"{d.ts} >= {m}", q.start_us), (f"{d.ts} < {m}", q.end_us), (f"service = {m}", q.service)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    for key, value in q.attributes:
        clauses.append(f"{d.attribute(params, key)} = {m}")
        params.append(value)
    if isinstance(q, PointQuery):
        if q.names is not None:
            clauses.append(d.in_list(params, "name", q.names))
        return clauses, params
    for clause, value in ((f"severity_number >= {m}", q.min_severity), (f"trace_id = {m}", q.trace_id),
                          (f"span_id = {m}", q.span_id)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if q.body_contains is not None:
        clauses.append(f"lower(body) LIKE {m} ESCAPE '\\'")
        params.append(like_pattern(q.body_contains.lower()))
    if q.after is not None:
        clauses.append(f"({d.ts} < {m} OR ({d.ts} = {m} AND id < {m}))")
        params += [q.after[0], q.after[0], q.after[1]]
    return clauses, params


def purge_where(cutoff_us: int, tenant_ids: tuple[str, ...] | None, exclude_tenant_ids: tuple[str, ...],
                d: Dialect) -> tuple[str, list[Any]]:
    clauses, params = [f"{d.ts} < {d.mark}"], [cutoff_us]
    if tenant_ids is not None:
        clauses.append(d.in_list(params, "tenant_id", tenant_ids))
    if exclude_tenant_ids:
        clauses.append(d.in_list(params, "tenant_id", exclude_tenant_ids, negate=True))
    return " WHERE " + " AND ".join(clauses), params


def conjunction(clauses: list[str]) -> str:
    return " WHERE " + " AND ".join(clauses) if clauses else ""
