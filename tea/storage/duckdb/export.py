"""Exports from DuckDB: events straight into a Parquet file, with DuckDB's block cache kept small while an
export (or ``iter_events``) reads the whole table."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import duckdb

from tea.storage.duckdb.load import sql_string
from tea.storage.duckdb.memory import trim_cache
from tea.storage.duckdb.sql import DuckDBDialect, scan
from tea.types import COLUMNS, EventFilter

# Parquet exports: every column as stored, attributes as JSON text
# Parquet's timestamps say they are UTC (TIMESTAMP WITH TIME ZONE: timestamp[us, tz=UTC]); the columns hold UTC
EXPORT_COLUMNS = ", ".join("CAST(attributes AS VARCHAR) AS attributes" if c == "attributes" else
                           f"timezone('UTC', {c}) AS {c}" if c in ("timestamp", "received_at") else c for c in COLUMNS)
# While an export runs, DuckDB's cache of table blocks is trimmed back to ``cache_bytes`` every
# EXPORT_TRIM_INTERVAL_S (see DuckDBExport._exporting)
EXPORT_TRIM_INTERVAL_S = 0.2


class DuckDBExport:
    """Mixed into DuckDBStorage (its reader cursors: ``_on_reader``)."""

    cache_bytes: int
    _memory_limit_setting: str
    _reads: int
    _reads_lock: Any
    _trim_lock: Any
    _on_reader: Any
    dialect: DuckDBDialect

    async def export_file(self, filter: EventFilter, fmt: str, path: str) -> None:
        """Write the matching events straight from DuckDB into a Parquet file."""
        if fmt != "parquet":
            raise ValueError(f"DuckDB writes only parquet files natively, not {fmt!r}")
        frm, params = scan(filter, self.dialect)
        # row groups of 8 MB: the Parquet writer buffers one per thread (at its default of 122 880 rows, that of
        # wide events took hundreds of MB)
        sql = (f"COPY (SELECT {EXPORT_COLUMNS}{frm}) TO {sql_string(path)} "
               f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE_BYTES '8MB')")
        async with self._exporting():
            await self._on_reader(lambda cur: cur.execute(sql, params))

    @contextlib.asynccontextmanager
    async def _exporting(self) -> AsyncIterator[None]:
        """Keep DuckDB's block cache small while an export reads the whole table.

        DuckDB keeps every table block a query reads cached until ``memory_limit`` (tea.storage.duckdb.memory)
        forces blocks out, and it has no separate limit for that cache: an export reads every
        block, so the server's RSS grew with the export (all 10 M events of the benchmark: +590 MB).
        While an export runs, the cache is trimmed every EXPORT_TRIM_INTERVAL_S once it holds more
        than ``cache_bytes``; queries keep the whole memory limit for their own work."""
        done = asyncio.Event()

        async def trim_until_done() -> None:
            while True:
                await self._on_reader(self._trim_cache)
                if done.is_set():
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(done.wait(), EXPORT_TRIM_INTERVAL_S)

        trimmer = asyncio.create_task(trim_until_done())
        try:
            yield
        finally:
            done.set()
            with contextlib.suppress(Exception):  # (storage closing under the export: nothing left to trim)
                await trimmer

    def _trim_cache(self, cur: duckdb.DuckDBPyConnection, max_reads: int = 2) -> None:
        """Trim the block cache unless more than ``max_reads`` queries run (by default an export and this trimmer,
        itself a read): lowering the limit for a moment must not take memory another query may ask for, and
        queries starting meanwhile wait the moment out."""
        with self._reads_lock:
            if self._reads <= max_reads:
                trim_cache(cur, self.cache_bytes, self._memory_limit_setting, self._trim_lock)
