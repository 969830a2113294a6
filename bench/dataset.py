"""Seeded synthetic events written straight into a TEA DuckDB data directory (no HTTP).

The schema comes from TEA itself (``DuckDBStorage.open`` runs its migrations and the version
table); the rows come from one ``INSERT … SELECT … FROM range(N)`` in DuckDB. Every random value
is ``hash(seed·2**36 + i·64 + k) / 2**64`` — DuckDB's 64-bit hash of an integer key, one
per row number i, seed and column slot k: a pure function of the three, so a
given (N, seed) builds the same table on every run, whatever DuckDB's thread count (checked: the
same checksum after ``--rebuild``; a different DuckDB version may hash differently, so the cache
is keyed by the DuckDB version too).

One UTC day (2026-11-20), timestamps uniform over it; 10 tenants; 20 methods with Zipf-like
weights (1/k**1.1); 3 event types, 4 sources, 6 targets; ~2 % errors; log-normal latencies
``exp(N(3.0, 0.8))`` ms and request/response sizes; tokens and cost on ~40 % of events; 1 000
users. Rows are inserted in timestamp order, the order TEA's writer would have stored them in.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from typing import Any

import duckdb

from tea.storage.duckdb.sql import partition_of, partition_table
from tea.storage.duckdb import COLUMN_TYPES, ROW_GROUP_SIZE, DuckDBStorage, connect, rollup
from tea.storage.duckdb.store import BLOCK_SIZE

# bump when the generated rows or their layout change, so cached data dirs are rebuilt
# (2: rows routed into TEA's tenant partitions; 3: in row groups of TEA's size, duckdb.row_group_size; 4: with
# the Prometheus rollup built, as a running TEA keeps it; 5: attributes zstd-compressed, DuckDB schema 15;
# 6: keyed by the block size too, BLOCK_SIZE)
GENERATOR_VERSION = 6
DAY_START_US = 1_795_132_800_000_000  # 2026-11-20T00:00:00Z
DAY_US = 86_400_000_000
TENANTS = 10
USERS = 1000
ERROR_RATE = 0.02
METHODS = (
    "tools/call", "tools/list", "resources/read", "resources/list", "prompts/get", "prompts/list",
    "initialize", "ping", "completion/complete", "resources/subscribe", "resources/unsubscribe",
    "resources/templates/list", "logging/setLevel", "sampling/createMessage", "roots/list",
    "notifications/initialized", "notifications/cancelled", "notifications/progress",
    "elicitation/create", "tasks/get",
)
ZIPF_S = 1.1
SLOTS = 1000  # method lookup table: method k owns a share of the slots proportional to 1/k**s
MANIFEST = "dataset.json"


def method_slots() -> list[int]:
    """1-based method index per slot; every method gets at least one slot."""
    weights = [1 / k ** ZIPF_S for k in range(1, len(METHODS) + 1)]
    total = sum(weights)
    counts = [max(1, round(SLOTS * w / total)) for w in weights]
    counts[0] += SLOTS - sum(counts)
    return [k + 1 for k, count in enumerate(counts) for _ in range(count)]


def _sql_list(items: Any) -> str:
    return "[" + ", ".join(f"'{x}'" if isinstance(x, str) else str(x) for x in items) + "]"


def _h(seed: int, k: int) -> str:
    """A 64-bit hash for row i, slot k. One key per (seed, i, k): DuckDB's multi-argument
    ``hash(a, b, c)`` combines the parts too linearly (its draws came out correlated)."""
    assert 0 <= seed < 2 ** 26 and 0 <= k < 64, "seed must be in [0, 2**26)"
    return f"hash({seed * 2 ** 36} + i * 64 + {k})"


def _u(seed: int, k: int) -> str:
    """Uniform in [0, 1) for row i, slot k."""
    return f"({_h(seed, k)} / 18446744073709551616.0)"


def _normal(seed: int, k: int) -> str:
    """Standard normal (Box–Muller) from slots k and k+1."""
    return f"(sqrt(-2 * ln(1 - {_u(seed, k)})) * cos(2 * pi() * {_u(seed, k + 1)}))"


def _hex(seed: int, k: int) -> str:
    return f"lpad(to_hex({_h(seed, k)}), 16, '0')"


def _pick(options: tuple[str, ...] | list, seed: int, k: int) -> str:
    return f"{_sql_list(options)}[1 + ({_h(seed, k)} % {len(options)})::INTEGER]"


def _inner(n: int, seed: int, start_us: int = DAY_START_US, tenants: int = TENANTS) -> str:
    """Per row: its number and the random draws several columns share."""
    return (f"SELECT i, {start_us} + floor({_u(seed, 1)} * {DAY_US})::BIGINT AS ts_us, "
            f"({_h(seed, 2)} % {tenants})::INTEGER AS tenant_n, "
            f"{_u(seed, 3)} < {ERROR_RATE} AS is_err, {_u(seed, 4)} AS u_type, "
            f"{_u(seed, 5)} < 0.4 AS has_tokens, exp(6.0 + 0.9 * {_normal(seed, 6)}) AS tokens_f "
            f"FROM range({n}) t(i)")


def _columns(seed: int) -> dict[str, str]:
    """The SQL expression of every events column, over ``_inner``'s row ``r``."""
    method = f"{_sql_list(METHODS)}[{_sql_list(method_slots())}[1 + floor({_u(seed, 8)} * {SLOTS})::INTEGER]]"
    error_type = _pick(("timeout", "internal_error", "rate_limited", "upstream_error"), seed, 9)
    return {
        "event_id": "'evt-' || lpad(i::VARCHAR, 9, '0')",
        "tenant_id": "'tenant-' || tenant_n",
        "timestamp": "make_timestamp(ts_us)",
        "received_at": f"make_timestamp(ts_us + 1000 + floor({_u(seed, 10)} * 200000)::BIGINT)",
        "event_type": "CASE WHEN u_type < 0.75 THEN 'mcp_request' WHEN u_type < 0.93 THEN 'tool_invocation' "
                      "ELSE 'a2a_call' END",
        "source": _pick(("gateway-eu", "gateway-us", "agent-runner", "workflow-engine"), seed, 11),
        "source_protocol": "'native'",
        "user_id": f"'user-' || lpad(({_h(seed, 12)} % {USERS})::VARCHAR, 4, '0')",
        "session_id": f"'sess-' || ({_h(seed, 13)} % 20000)",
        "organization": "'org-' || tenant_n",
        "method": method,
        "target": _pick(("web-tools", "db-tools", "fs-tools", "search", "billing", "crm"), seed, 14),
        "protocol": "CASE WHEN u_type < 0.93 THEN 'mcp' ELSE 'a2a' END",
        "status": "CASE WHEN is_err THEN 'error' ELSE 'ok' END",
        "status_code": f"CASE WHEN is_err THEN {_pick((500, 502, 503, 504, 429), seed, 15)} ELSE 200 END",
        "duration_ms": f"round(exp(3.0 + 0.8 * {_normal(seed, 16)}), 3)",
        "request_size": f"floor(exp(6.5 + 1.0 * {_normal(seed, 18)}))::BIGINT",
        "response_size": f"floor(exp(8.0 + 1.2 * {_normal(seed, 20)}))::BIGINT",
        "tokens_used": "CASE WHEN has_tokens THEN floor(tokens_f)::BIGINT END",
        "cost": "CASE WHEN has_tokens THEN round(floor(tokens_f) * 0.000003, 6) END",
        "error_type": f"CASE WHEN is_err THEN {error_type} END",
        "error_message": f"CASE WHEN is_err THEN 'synthetic ' || {error_type} END",
        "trace_id": f"lower({_hex(seed, 22)} || {_hex(seed, 23)})",
        "span_id": f"lower({_hex(seed, 24)})",
        "parent_span_id": "NULL", "correlation_id": "NULL",
        "tags": "[]::VARCHAR[]", "attributes": "'{}'",
        "tool": "NULL::VARCHAR", "model": "NULL::VARCHAR", "input_tokens": "NULL::BIGINT", "output_tokens": "NULL::BIGINT",
    }


def generate_sql(n: int, seed: int, start_us: int = DAY_START_US, tenants: int = TENANTS,
                 columns: dict[str, str] | None = None) -> str:
    """A temporary table ``generated`` holding the events, in arrival (timestamp) order: one day from
    ``start_us`` over ``tenants`` tenants; ``columns`` replaces some columns' SQL (over ``_inner``'s row)."""
    exprs = _columns(seed) | (columns or {})
    assert tuple(exprs) == tuple(COLUMN_TYPES), "generator out of step with TEA's schema"
    select = ", ".join(f"{expr} AS {name}" for name, expr in exprs.items())
    return (f"CREATE TEMP TABLE generated AS SELECT {select} FROM ({_inner(n, seed, start_us, tenants)}) r "
            "ORDER BY timestamp")


def insert_partitions(con: duckdb.DuckDBPyConnection) -> None:
    """Route the generated events into TEA's tenant partitions, as TEA's writer does."""
    tenants = [row[0] for row in con.execute("SELECT DISTINCT tenant_id FROM generated").fetchall()]
    by_partition: dict[int, list[str]] = {}
    for tenant in tenants:
        by_partition.setdefault(partition_of(tenant), []).append(tenant)
    for number, members in sorted(by_partition.items()):
        marks = ", ".join("?" * len(members))
        con.execute(f"INSERT INTO {partition_table(number)} SELECT * FROM generated "
                    f"WHERE tenant_id IN ({marks}) ORDER BY timestamp", members)


async def _create_schema(db_path: str) -> None:
    storage = DuckDBStorage(db_path)
    await storage.open()
    await storage.close()


def _build(data_dir: str, n: int, seed: int, sql: str | None = None) -> int:
    os.makedirs(data_dir)
    db_path = os.path.join(data_dir, "tea.duckdb")
    asyncio.run(_create_schema(db_path))
    with connect(db_path) as con:  # row groups of TEA's default size, as TEA writes them
        con.execute("SET enable_progress_bar = false")
        con.execute(sql or generate_sql(n, seed))
        insert_partitions(con)
        rollup.mark_all(con)  # (loaded past TEA's writer: its rollup is built here, as TEA's catch-up would)
        rollup.catch_up(con, 2**62)
        con.execute("CHECKPOINT")
        return con.execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]


def _manifest(n: int, seed: int) -> dict:
    return {"events": n, "seed": seed, "generator_version": GENERATOR_VERSION, "duckdb": duckdb.__version__,
            "row_group_size": ROW_GROUP_SIZE, "block_size": BLOCK_SIZE}


def _cached(data_dir: str, n: int, seed: int) -> dict | None:
    try:
        with open(os.path.join(data_dir, MANIFEST)) as fh:
            manifest = json.load(fh)
    except (OSError, ValueError):
        return None
    same = all(manifest.get(key) == value for key, value in _manifest(n, seed).items())
    return manifest if same and os.path.exists(os.path.join(data_dir, "tea.duckdb")) else None


def ensure(results_dir: str, n: int, seed: int, rebuild: bool = False) -> dict:
    """The data dir for (n, seed), built unless cached. Returns its manifest plus ``path``/``cached``."""
    data_dir = os.path.join(results_dir, f"data-{n}-seed{seed}")
    manifest = None if rebuild else _cached(data_dir, n, seed)
    if manifest is not None:
        return manifest | {"path": data_dir, "cached": True}
    shutil.rmtree(data_dir, ignore_errors=True)
    tmp_dir = data_dir + ".tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    started = time.perf_counter()
    rows = _build(tmp_dir, n, seed)
    manifest = _manifest(n, seed) | {"rows": rows, "generation_seconds": round(time.perf_counter() - started, 2),
                                     "bytes": os.path.getsize(os.path.join(tmp_dir, "tea.duckdb"))}
    with open(os.path.join(tmp_dir, MANIFEST), "w") as fh:
        json.dump(manifest, fh, indent=2)
    os.rename(tmp_dir, data_dir)
    return manifest | {"path": data_dir, "cached": False}
