"""The seed Telemetry Processor's analytics tables (CONTRACTS.md 1.4): their columns, and their
reports computed in plain Python (the memory backend; DuckDB runs the same as SQL)."""
from __future__ import annotations

from typing import Any, Callable

import msgspec

# Every table also carries tenant_id; timestamps are UTC microseconds in Python, TIMESTAMP in SQL.
COMMON = ("tenant_id", "id", "timestamp", "user_id", "organization_id", "deployment_type", "event_metadata",
          "created_at")
TABLES: dict[str, tuple[str, ...]] = {
    "user_activity": COMMON + ("event_type", "session_id"),
    "endpoint_usage": COMMON + ("endpoint", "method", "status_code", "duration_ms"),
    "feature_usage": COMMON + ("feature_name", "action"),
}
SQL_TYPES = {"tenant_id": "VARCHAR NOT NULL", "id": "UUID NOT NULL", "timestamp": "TIMESTAMP NOT NULL",
             "user_id": "VARCHAR", "organization_id": "VARCHAR", "deployment_type": "VARCHAR",
             "event_metadata": "JSON", "created_at": "TIMESTAMP NOT NULL", "event_type": "VARCHAR NOT NULL",
             "session_id": "VARCHAR", "endpoint": "VARCHAR NOT NULL", "method": "VARCHAR", "status_code": "INTEGER",
             "duration_ms": "DOUBLE", "feature_name": "VARCHAR NOT NULL", "action": "VARCHAR"}
FILTERABLE: dict[str, tuple[str, ...]] = {
    "user_activity": ("user_id", "organization_id", "deployment_type", "event_type", "session_id"),
    "endpoint_usage": ("user_id", "organization_id", "deployment_type", "endpoint", "method", "status_code"),
    "feature_usage": ("user_id", "organization_id", "deployment_type", "feature_name", "action"),
}


class Row(msgspec.Struct, gc=False):
    """A projection row as a struct (``ROWS``: one class a table), its fields in the order the rows' dicts have
    them: what a backend with ``WritesRowSets`` is handed (cheaper to build and encode than a dict, and never
    tracked by the cycle collector: no row refers back to another). ``as_dict`` is the dict ``write_rows`` takes."""

    tenant_id: str
    id: str
    timestamp: int
    user_id: str | None
    organization_id: str | None
    deployment_type: Any
    created_at: int
    event_metadata: dict[str, Any] | None


class UserActivityRow(Row, gc=False):
    event_type: str
    session_id: Any


class EndpointUsageRow(Row, gc=False):
    endpoint: str
    method: Any
    status_code: int | None
    duration_ms: float | None


class FeatureUsageRow(Row, gc=False):
    feature_name: str
    action: Any


ROWS: dict[str, type[Row]] = {"user_activity": UserActivityRow, "endpoint_usage": EndpointUsageRow,
                              "feature_usage": FeatureUsageRow}
assert all(set(ROWS[table].__struct_fields__) == set(columns) for table, columns in TABLES.items())
as_dict: Callable[[Row], dict[str, Any]] = msgspec.structs.asdict
REPORTS = ("summary", "recent_activity", "top_endpoints")
# A projection row is stored once: a row whose tenant, id and timestamp are already stored (or repeat an earlier
# row of the same write) is not stored again. Ids derived from an event carry its timestamp, so a replay always
# matches; the timestamp lets DuckDB and ClickHouse look only at the row groups / parts of that time.
IDENTITY = ("tenant_id", "id", "timestamp")


def identity(row: dict[str, Any]) -> tuple[str, str, int]:
    return row["tenant_id"], str(row["id"]).lower(), row["timestamp"]


def row_identity(row: Row) -> tuple[str, str, int]:
    return row.tenant_id, row.id.lower(), row.timestamp


def distinct_rows(rows: list[Any], key: Callable[[Any], tuple[str, str, int]] = identity) -> list[Any]:
    """``rows`` (dicts, or ``Row`` structs with ``key=row_identity``) without repeats of an earlier row's identity
    (the first one is kept)."""
    ids = {row.id.lower() for row in rows} if key is row_identity else {key(row)[1] for row in rows}
    if len(ids) == len(rows):  # (no id twice: no identity twice either)
        return rows
    first: dict[tuple[str, str, int], Any] = {}
    for row in rows:
        first.setdefault(key(row), row)
    return list(first.values()) if len(first) < len(rows) else rows


def report(tables: dict[str, list[dict[str, Any]]], name: str, tenant_ids: tuple[str, ...] | None,
           since_us: int) -> list[dict[str, Any]]:
    def rows(table: str) -> list[dict[str, Any]]:
        return [r for r in tables.get(table, []) if tenant_ids is None or r["tenant_id"] in tenant_ids]
    if name == "summary":
        return [{"table_name": t, "count": len(rows(t))} for t in TABLES]
    recent = lambda table: [r for r in rows(table) if r["timestamp"] > since_us]  # noqa: E731
    if name == "recent_activity":
        out: dict[str, dict[str, Any]] = {}
        for r in recent("user_activity"):
            entry = out.setdefault(r["event_type"], {"event_type": r["event_type"], "count": 0, "latest": 0})
            entry["count"] += 1
            entry["latest"] = max(entry["latest"], r["timestamp"])
        return sorted(out.values(), key=lambda e: (-e["count"], e["event_type"]))
    hits: dict[tuple[Any, Any], list[float | None]] = {}
    for r in recent("endpoint_usage"):
        hits.setdefault((r["endpoint"], r["method"]), []).append(r["duration_ms"])
    top = [{"endpoint": e, "method": m, "hits": len(d),
            "avg_duration_ms": (sum(x for x in d if x is not None) / len([x for x in d if x is not None]))
            if any(x is not None for x in d) else None} for (e, m), d in hits.items()]
    return sorted(top, key=lambda t: (-t["hits"], t["endpoint"], t["method"] or ""))[:10]
