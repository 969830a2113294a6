"""SQL the signal stores of DuckDB and PostgreSQL write the same way (their placeholders and JSON access
differ, given as a small dialect)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tea.signals.model import PointQuery, RecordQuery


def json_path(key: str) -> str:
    """A JSON path naming one top-level key, quoted (keys hold dots: ``http.route``)."""
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def like_pattern(text: str) -> str:
    """``%text%`` for LIKE with ``\\`` as the escape character."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass(frozen=True)
class Dialect:
    mark: str                                     # the placeholder: ? or %s
    attribute: Callable[[str], tuple[str, Any]]   # key -> (SQL of the attribute's text, its parameter)
    ts: str = "timestamp"                         # the time column as written in SQL


def _in(column: str, values: tuple[str, ...], mark: str) -> str:
    return f"{column} IN (" + ", ".join([mark] * len(values)) + ")" if values else "FALSE"


def where(q: PointQuery | RecordQuery, d: Dialect) -> tuple[list[str], list[Any]]:
    """The conditions of a point or record query (names, severity, body, trace and cursor included)."""
    m = d.mark
    clauses: list[str] = []
    params: list[Any] = []
    if q.tenant_ids is not None:
        clauses.append(_in("tenant_id", q.tenant_ids, m))
        params += q.tenant_ids
    for clause, value in ((f"{d.ts} >= {m}", q.start_us), (f"{d.ts} < {m}", q.end_us), (f"service = {m}", q.service)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    for key, value in q.attributes:
        sql, param = d.attribute(key)
        clauses.append(f"{sql} = {m}")
        params += [param, value]
    if isinstance(q, PointQuery):
        if q.names is not None:
            clauses.append(_in("name", q.names, m))
            params += q.names
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
        clauses.append(_in("tenant_id", tenant_ids, d.mark))
        params += tenant_ids
    if exclude_tenant_ids:
        clauses.append("NOT " + _in("tenant_id", exclude_tenant_ids, d.mark))
        params += exclude_tenant_ids
    return " WHERE " + " AND ".join(clauses), params


def conjunction(clauses: list[str]) -> str:
    return " WHERE " + " AND ".join(clauses) if clauses else ""
