"""The ClickHouse schema and the neutral specs (EventFilter, AggregateSpec) compiled into ClickHouse SQL.

One dialect for every server TEA meets: the 18.16 release Debian ships (CI) and current releases.
18.16 has no DateTime64, TTL, JSONExtract, window functions, CTEs or ``toStartOfInterval``, so
timestamps are Int64 µs, buckets are integer arithmetic, and exact quantiles interpolate over
``arraySort(groupArray(x))``. Values are rendered as literals here (``lit``); nothing is substituted
by the driver, so the same text runs in chdb (tests/storage/test_clickhouse.py checks that).
"""
from __future__ import annotations

from typing import Any

from tea.storage.projections import TABLES
from tea.storage.sql import FLOAT_COLUMNS, Dialect
from tea.storage.sql.events import scan as compile_scan
from tea.timebuckets import DAY_US
from tea.types import BUCKETS as UNITS, COLUMNS, EventFilter

# Storage type of every promoted column: µs as Int64, optional columns Nullable, attributes JSON text.
COLUMN_TYPES: dict[str, str] = {
    "event_id": "String", "tenant_id": "String", "timestamp": "Int64", "received_at": "Int64",
    "event_type": "String", "source": "Nullable(String)", "source_protocol": "Nullable(String)",
    "user_id": "Nullable(String)", "session_id": "Nullable(String)", "organization": "Nullable(String)",
    "method": "Nullable(String)", "target": "Nullable(String)", "protocol": "Nullable(String)",
    "status": "Nullable(String)", "status_code": "Nullable(Int32)", "duration_ms": "Nullable(Float64)",
    "request_size": "Nullable(Int64)", "response_size": "Nullable(Int64)", "tokens_used": "Nullable(Int64)",
    "cost": "Nullable(Float64)", "error_type": "Nullable(String)", "error_message": "Nullable(String)",
    "trace_id": "Nullable(String)", "span_id": "Nullable(String)", "parent_span_id": "Nullable(String)",
    "correlation_id": "Nullable(String)", "tags": "Array(String)", "attributes": "String",
    "tool": "Nullable(String)", "model": "Nullable(String)", "input_tokens": "Nullable(Int64)",
    "output_tokens": "Nullable(Int64)",
}
# columns added after the first release: appended to an existing events table at start
ADDED_COLUMNS = ("tool", "model", "input_tokens", "output_tokens")
assert tuple(COLUMN_TYPES) == COLUMNS

# The UTC day of a µs timestamp, as 20260101: the partition key, so retention drops whole days.
DAY_OF = "toYYYYMMDD(toDateTime(intDiv(timestamp, 1000000), 'UTC'))"
# Sorting key = ReplacingMergeTree's identity: an exact replay (same tenant, type, timestamp and id)
# written by two nodes at once collapses to one row when parts merge, and reads with FINAL see one.
EVENTS_ORDER = "(tenant_id, event_type, timestamp, event_id)"
_PROJECTION_TYPES = {"tenant_id": "String", "id": "String", "timestamp": "Int64", "created_at": "Int64",
                     "event_type": "String", "endpoint": "String", "feature_name": "String",
                     "status_code": "Nullable(Int32)", "duration_ms": "Nullable(Float64)"}
# a projection row's identity (projections.IDENTITY) as ReplacingMergeTree's sorting key
PROJECTION_ORDER = "(tenant_id, timestamp, id)"
TOKEN_COLUMNS = ("token_id", "token_hash", "token_prefix", "tenant_id", "tier", "scopes", "secret_sealed",
                 "created_at", "org_id", "app_id", "revoked_at", "rotated_at")
DLQ_COLUMNS = ("id", "at", "stage", "error", "attempts", "event_count", "payload", "replayed_at")


def _columns(types: dict[str, str]) -> str:
    return "(" + ", ".join(f"`{name}` {kind}" for name, kind in types.items()) + ")"


def schema() -> tuple[str, ...]:
    """Every CREATE TABLE, idempotent (IF NOT EXISTS), so nodes starting together are harmless.
    A cluster's tables are created by hand beforehand (docs/running-at-scale-clickhouse.md)."""
    rmt, mt = "ReplacingMergeTree", "MergeTree"
    return (
        f"CREATE TABLE IF NOT EXISTS events {_columns(COLUMN_TYPES)} ENGINE = {rmt}() "
        f"PARTITION BY {DAY_OF} ORDER BY {EVENTS_ORDER}",
        # small mutable state: newest version wins (argMax at read time), deleted = tombstone
        "CREATE TABLE IF NOT EXISTS documents (kind String, tenant_id String, key String, doc String, "
        f"deleted UInt8, version UInt64) ENGINE = {rmt}(version) ORDER BY (kind, tenant_id, key)",
        "CREATE TABLE IF NOT EXISTS records (kind String, tenant_id String, at Int64, seq UInt64, body String) "
        f"ENGINE = {mt}() ORDER BY (kind, at, seq)",
        "CREATE TABLE IF NOT EXISTS api_tokens (token_id String, token_hash String, token_prefix String, "
        "tenant_id String, tier String, scopes Array(String), secret_sealed String, created_at Int64, "
        "org_id Nullable(String), app_id Nullable(String), revoked_at Nullable(Int64), rotated_at Nullable(Int64), "
        f"version UInt64) ENGINE = {rmt}(version) ORDER BY token_id",
        "CREATE TABLE IF NOT EXISTS audit_log (at Int64, action String, actor Nullable(String), "
        "tenant_id Nullable(String), remote_addr Nullable(String), success UInt8, reason Nullable(String), "
        f"details String) ENGINE = {mt}() ORDER BY at",
        "CREATE TABLE IF NOT EXISTS dead_letters (id String, at Int64, stage String, error String, attempts Int64, "
        f"event_count Int64, payload String, replayed_at Nullable(Int64), version UInt64) "
        f"ENGINE = {rmt}(version) ORDER BY id",
        # a row written twice (two nodes deriving it from the same event at once) collapses when parts merge;
        # the writer skips rows already stored (tables created before this keep MergeTree, and that check)
        *(f"CREATE TABLE IF NOT EXISTS {table} "
          + _columns({c: _PROJECTION_TYPES.get(c, "Nullable(String)") for c in columns})
          + f" ENGINE = {rmt}() ORDER BY {PROJECTION_ORDER}" for table, columns in TABLES.items()),
    )


def lit(value: Any) -> str:
    """A ClickHouse literal (every query is plain text: the driver substitutes nothing)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(lit(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return "'" + text + "'"


def in_list(column: str, values: tuple[str, ...] | list[str], negate: bool = False) -> str:
    if not values:
        return "1" if negate else "0"
    return f"{column} {'NOT ' if negate else ''}IN (" + ", ".join(lit(v) for v in values) + ")"


SELECT_EVENTS = ", ".join(f"`{c}`" for c in COLUMNS)


# ---------------------------------------------------------------- aggregation
# an error (Agg docstring); ifNull because comparisons with NULL are NULL
IS_ERROR = ("(ifNull(status IN ('error', 'timeout'), 0) OR (isNull(status) AND (isNotNull(error_type) "
            "OR ifNull(status_code >= 400, 0) OR ifNull(status_code < 0, 0))))")


class ClickHouseDialect(Dialect):
    """Values as literals (``lit``); integer µs timestamps; no CTEs on 18.16 (top-N groups ranked by a
    second pass); ``ifNull`` where 18.16 answers NULL; exact quantiles over ``arraySort(groupArray(x))``."""

    ctes = False
    null_bigint = "NULL"
    is_error = IS_ERROR
    event_columns = SELECT_EVENTS

    def __init__(self, final: bool = False) -> None:
        self.final = final  # FINAL: collapse exact replays not merged yet

    def source(self, f: EventFilter | None) -> str:
        return "events FINAL" if self.final else "events"

    def bind(self, params: list[Any], value: Any) -> str:
        return lit(value)

    def in_list(self, params: list[Any], column: str, values: tuple[str, ...], negate: bool = False) -> str:
        return in_list(column, values, negate)

    def int_literal(self, n: int) -> str:
        # (Int64 constants: 18.16 types `Int64 % 3600000000` as UInt32, and the sum then wraps)
        return f"toInt64({int(n)})"

    def month_bucket(self) -> str:
        day = f"intDiv({self.floor_to('timestamp', DAY_US)}, toInt64({DAY_US}))"
        return (f"({day} - toInt64(toDayOfMonth(toDateTime(intDiv(timestamp, 1000000), 'UTC'))) + toInt64(1)) "
                f"* toInt64({DAY_US})")

    def ascending_nulls_last(self, column: str) -> str:
        return f"isNull({column}), {column}"

    def group_key(self, groups: list[str]) -> list[str]:
        # NULL never matches in IN: compare (is null, value) pairs for the Nullable columns
        return [part for g in groups for part in
                ((g,) if COLUMN_TYPES[g] == "String" else (f"isNull({g})", f"ifNull({g}, '')"))]

    def count_all(self) -> str:
        return "count()"

    def count_if(self, condition: str) -> str:
        return f"countIf({condition})"

    def at_most(self, column: str, le: float) -> str:
        return f"ifNull({column} <= {float(le)!r}, 0)"

    def count_distinct(self, column: str) -> str:
        return f"ifNull(uniqExact({column}), 0)"  # (18.16 answers NULL when every value is NULL)

    def sum(self, column: str) -> str:
        return f"sumKahan({column})" if column in FLOAT_COLUMNS else f"sum({column})"

    def avg(self, column: str) -> str:
        return f"(sumKahan({column}) / count({column}))" if column in FLOAT_COLUMNS else f"avg({column})"

    def quantile(self, column: str, q: float) -> str:
        """Exact, linear interpolation between the closest ranks (as pyagg and DuckDB's quantile_cont)."""
        s = f"arraySort(groupArray({column}))"
        last = f"greatest(toInt64(length({s})) - 1, 0)"
        pos = f"({float(q)!r} * toFloat64({last}))"
        low_rank = f"toInt64(floor({pos}))"
        low = f"{s}[{low_rank} + 1]"
        high = f"{s}[least({low_rank} + 1, {last}) + 1]"
        return f"if(empty({s}), NULL, {low} + ({high} - {low}) * ({pos} - {low_rank}))"


DIALECT, FINAL = ClickHouseDialect(), ClickHouseDialect(final=True)
BUCKETS = {unit: DIALECT.bucket(unit) for unit in UNITS}


def dialect(final: bool) -> ClickHouseDialect:
    return FINAL if final else DIALECT


def scan(f: EventFilter | None, final: bool = False, extra: list[str] | None = None) -> str:
    """`` FROM events [FINAL] WHERE …``."""
    return compile_scan(f, dialect(final), tuple(extra or ()))[0]


# ---------------------------------------------------------------- traces
def traces(f: EventFilter, *, service: str | None, min_duration_ms: float, errors: bool | None, limit: int,
           final: bool = False) -> str:
    having = [f"end_us - start_us >= {int(min_duration_ms * 1000)}"]
    if service is not None:
        having.append(f"has(services, {lit(service)})")
    if errors is not None:
        having.append("error_count > 0" if errors else "error_count = 0")
    roots = "isNull(parent_span_id)"
    return (f"SELECT trace_id, tenant_id, min(timestamp) AS start_us, "
            f"max(timestamp + toInt64(ifNull(duration_ms, 0) * 1000)) AS end_us, count() AS span_count, "
            f"countIf(ifNull(status = 'error', 0)) AS error_count, countIf({roots}) AS root_count, "
            f"argMinIf(ifNull(method, ''), timestamp, {roots}) AS root_name, "
            f"argMinIf(isNull(method), timestamp, {roots}) AS root_name_null, "
            f"argMinIf(ifNull(source, ''), timestamp, {roots}) AS root_service, "
            f"argMinIf(isNull(source), timestamp, {roots}) AS root_service_null, "
            f"arraySort(groupUniqArray(source)) AS services"
            f"{scan(f, final, ['event_type = ' + lit('span'), 'isNotNull(trace_id)'])} "
            f"GROUP BY tenant_id, trace_id HAVING {' AND '.join(having)} "
            f"ORDER BY start_us DESC, trace_id LIMIT {int(limit)}")


# ---------------------------------------------------------------- writes, retention, documents
def stored_times(tenant_ids: list[str], start_us: int, end_us: int, keys_table: str) -> str:
    """Stored events with a key of the batch (an external table of tenant_id, event_id) in the time range:
    (tenant_id, event_id, timestamp µs)."""
    return (f"SELECT DISTINCT tenant_id, event_id, timestamp FROM events WHERE {in_list('tenant_id', tenant_ids)} "
            f"AND timestamp >= {lit(start_us)} AND timestamp <= {lit(end_us)} "
            f"AND (tenant_id, event_id) IN {keys_table}")


def stored_rows(table: str, tenant_ids: list[str], start_us: int, end_us: int, keys_table: str) -> str:
    """Stored projection rows with an identity of the batch (an external table of tenant_id, id, timestamp)."""
    return (f"SELECT DISTINCT tenant_id, id, timestamp FROM {table} WHERE {in_list('tenant_id', tenant_ids)} "
            f"AND timestamp >= {lit(start_us)} AND timestamp <= {lit(end_us)} "
            f"AND (tenant_id, id, timestamp) IN {keys_table}")


def purge_condition(cutoff_us: int, tenant_ids: tuple[str, ...] | None, exclude_tenant_ids: tuple[str, ...]) -> str:
    clauses = [f"timestamp < {lit(cutoff_us)}"]
    if tenant_ids is not None:
        clauses.append(in_list("tenant_id", tenant_ids))
    if exclude_tenant_ids:
        clauses.append(in_list("tenant_id", exclude_tenant_ids, negate=True))
    return " AND ".join(clauses)


def documents(kind: str, tenant_ids: tuple[str, ...] | None, key: str | None = None) -> str:
    """Live documents, newest version of each key; exact whether or not parts have merged."""
    clauses = [f"kind = {lit(kind)}"]
    if tenant_ids is not None:
        clauses.append(in_list("tenant_id", tenant_ids))
    if key is not None:
        clauses.append(f"key = {lit(key)}")
    return (f"SELECT tenant_id, key, argMax(doc, version) AS current FROM documents WHERE {' AND '.join(clauses)} "
            f"GROUP BY tenant_id, key HAVING argMax(deleted, version) = 0 ORDER BY tenant_id, key")


def latest(table: str, columns: tuple[str, ...], key: str, where_sql: str = "") -> str:
    """The newest version of each row of a ReplacingMergeTree table, as one tuple per key."""
    return (f"SELECT argMax(tuple({', '.join(columns)}), version) FROM {table}{where_sql} GROUP BY {key}")
