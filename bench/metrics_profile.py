"""What a query spends its time on: DuckDB's ``EXPLAIN (ANALYZE, FORMAT JSON)``, summarised."""
from __future__ import annotations

import json
from typing import Any

import duckdb

SKIP = {"RESULT_COLLECTOR", "EXPLAIN_ANALYZE"}
_EXTRA = ("Table", "Type", "Filters", "Join Type", "Aggregates", "Groups")


def _walk(node: dict, depth: int, out: list[dict]) -> None:
    if node["type"] not in SKIP:
        extra = {k: v for k, v in node.get("extra_info", {}).items() if k in _EXTRA}
        out.append({"operator": node["type"], "depth": depth, "seconds": node.get("timing", 0.0),
                    "rows_out": node.get("intermediate_rows", 0), "extra": extra})
        depth += 1
    for child in node.get("children", []):
        _walk(child, depth, out)


def profile(db_path: str, sql: str, params: list[Any], runs: int = 3) -> dict:
    """The last of ``runs`` profiled executions (the first ones warm the caches)."""
    con = duckdb.connect(db_path, read_only=True)
    try:
        con.execute("SET enable_progress_bar = false")
        text = con.execute("EXPLAIN ANALYZE " + sql, params).fetchall()[0][1]
        for _ in range(runs):
            tree = json.loads(con.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchall()[0][1])
    finally:
        con.close()
    operators: list[dict] = []
    for root in tree["operator"]:
        _walk(root, 0, operators)
    total = sum(op["seconds"] for op in operators) or 1.0
    for op in operators:
        op["share"] = round(op["seconds"] / total, 3)
    query = tree.get("query", {})
    return {"total_seconds": query.get("total_time"), "cpu_seconds": query.get("cpu_time"),
            "rows_scanned": query.get("total_rows_scanned"), "operators": operators, "text": text}


def summary(prof: dict, top: int = 3) -> str:
    """One line: latency, CPU, rows scanned and the most expensive operators."""
    ops = sorted(prof["operators"], key=lambda op: -op["seconds"])[:top]
    parts = ", ".join(f"{op['operator']} {op['seconds'] * 1000:.1f} ms ({op['share']:.0%})" for op in ops)
    return (f"{prof['total_seconds'] * 1000:.1f} ms wall, {prof['cpu_seconds'] * 1000:.1f} ms CPU, "
            f"{prof['rows_scanned']:,} rows scanned; top operators (CPU summed over threads): {parts}")
