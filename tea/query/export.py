"""``GET /v1/export``: every matching event as NDJSON, CSV or Parquet, streamed in constant memory.

NDJSON and CSV are encoded chunk by chunk as storage yields them. Parquet is written to a temporary
file under the data directory (by the backend itself when it can, else through an in-memory DuckDB
reading the events as NDJSON), then streamed and deleted.
"""
from __future__ import annotations

import asyncio
import csv
import io
import os
import tempfile
from typing import TYPE_CHECKING, AsyncIterator

import duckdb
import msgspec

from tea.errors import BadRequest
from tea.http import Param, Request, Response, Route
from tea.http.schemas import EventView, error_responses
from tea.query.routes import view
from tea.query.spec import FILTER_FIELDS, FILTER_PARAMS, check_params, event_filter
from tea.storage.duckdb import EXPORT_COLUMNS, INSERT_EXPRS, JSON_COLUMNS, sql_string
from tea.types import COLUMNS, Event, EventFilter, encode_lines

if TYPE_CHECKING:
    from tea.app import TeaApp

FORMATS = {"ndjson": b"application/x-ndjson", "csv": b"text/csv; charset=utf-8",
           "parquet": b"application/vnd.apache.parquet"}
CHUNK_ROWS = 10000
FILE_CHUNK = 1024 * 1024
_json = msgspec.json.Encoder()


def ndjson_chunk(events: list[Event]) -> bytes:
    return encode_lines([view(e) for e in events])


def csv_chunk(events: list[Event], header: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(COLUMNS)
    for event in events:
        v = view(event)
        writer.writerow(["" if x is None else _json.encode(x).decode() if c in ("tags", "attributes") else x
                         for c, x in ((c, getattr(v, c)) for c in COLUMNS)])
    return out.getvalue().encode()


async def text_stream(storage, f: EventFilter, fmt: str) -> AsyncIterator[bytes]:  # type: ignore[no-untyped-def]
    first = True
    async for chunk in storage.iter_events(f, CHUNK_ROWS):
        yield ndjson_chunk(chunk) if fmt == "ndjson" else csv_chunk(chunk, first)
        first = False
    if first and fmt == "csv":
        yield csv_chunk([], True)


async def write_parquet(storage, f: EventFilter, path: str) -> None:  # type: ignore[no-untyped-def]
    if hasattr(storage, "export_file"):
        await storage.export_file(f, "parquet", path)
        return
    lines = path + ".ndjson"
    try:
        with open(lines, "wb") as fh:
            async for chunk in storage.iter_events(f, CHUNK_ROWS):
                fh.write(encode_lines(chunk))
        await asyncio.get_running_loop().run_in_executor(None, _ndjson_to_parquet, lines, path)
    finally:
        if os.path.exists(lines):
            os.unlink(lines)


def _ndjson_to_parquet(source: str, target: str) -> None:
    """The same columns and types as DuckDB's own Parquet export, from canonical NDJSON."""
    stored = ", ".join(f"{expr} AS {name}" for name, expr in zip(COLUMNS, INSERT_EXPRS))
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT {EXPORT_COLUMNS} FROM (SELECT {stored} FROM read_json({sql_string(source)}, "
                    f"format='newline_delimited', columns={JSON_COLUMNS}, maximum_object_size=268435456) b)) TO {sql_string(target)} "
                    f"(FORMAT parquet, COMPRESSION zstd)")


async def parquet_stream(storage, f: EventFilter, tmp_dir: str) -> AsyncIterator[bytes]:  # type: ignore[no-untyped-def]
    os.makedirs(tmp_dir, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="export-", suffix=".parquet", dir=tmp_dir)
    os.close(fd)
    os.unlink(path)
    try:
        await write_parquet(storage, f, path)
        with open(path, "rb") as fh:
            while chunk := fh.read(FILE_CHUNK):
                yield chunk
    finally:
        if os.path.exists(path):
            os.unlink(path)


def routes(app: "TeaApp") -> list[Route]:
    async def export(request: Request) -> Response:
        check_params(request, {*FILTER_FIELDS, "start_time", "end_time", "format"})
        fmt = request.param("format") or "ndjson"
        if fmt not in FORMATS:
            raise BadRequest("parameter `format` must be ndjson, csv or parquet", code="invalid_parameter",
                             details={"parameter": "format"})
        reader = app.reader(request)
        f = reader.scope(event_filter(request))  # a 403 must come before the stream starts
        stream = parquet_stream(reader, f, os.path.join(app.settings.data_dir, "tmp")) if fmt == "parquet" \
            else text_stream(reader, f, fmt)
        name = f"tea-events.{fmt}"
        return Response(status=200, media_type=FORMATS[fmt], stream=stream,
                        headers={"content-disposition": f'attachment; filename="{name}"'})

    return [Route("GET", "/v1/export", export,
                  "Every matching event, streamed: NDJSON (default), CSV or Parquet", tags=("analytics",),
                  params=FILTER_PARAMS + (Param("format", "ndjson, csv or parquet",
                                                {"type": "string", "enum": list(FORMATS)}),),
                  responses={200: ("The events", {"application/x-ndjson": EventView, "text/csv": {"type": "string"},
                                                  "application/vnd.apache.parquet": {"type": "string",
                                                                                     "format": "binary"}}),
                             **error_responses(400)})]
