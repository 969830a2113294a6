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
from typing import AsyncIterator

import msgspec

from tea.http import Request, Response, Route
from tea.http.params import choice
from tea.http.schemas import EventView, error_responses
from tea.query.readers import Readers
from tea.query.routes import view
from tea.query.spec import Filters, event_filter
from tea.settings import Settings
from tea.storage.capabilities import ExportsFiles
from tea.storage.parquet import ndjson_to_parquet
from tea.types import COLUMNS, Event, EventFilter, encode_lines

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
    if isinstance(storage, ExportsFiles):
        await storage.export_file(f, "parquet", path)
        return
    lines = path + ".ndjson"
    try:
        with open(lines, "wb") as fh:
            async for chunk in storage.iter_events(f, CHUNK_ROWS):
                fh.write(encode_lines(chunk))
        await asyncio.get_running_loop().run_in_executor(None, ndjson_to_parquet, lines, path)
    finally:
        if os.path.exists(lines):
            os.unlink(lines)


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


async def _after(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk


class ExportParams(Filters):
    format: choice("ndjson, csv or parquet", tuple(FORMATS)) = "ndjson"  # type: ignore[valid-type]


def routes(readers: Readers, settings: Settings) -> list[Route]:
    tmp_dir = os.path.join(settings.data_dir, "tmp")

    async def export(request: Request, p: ExportParams) -> Response:
        reader = readers.of(request)
        f = reader.scope(event_filter(p))  # a 403 must come before the stream starts
        stream = parquet_stream(reader, f, tmp_dir) if p.format == "parquet" else text_stream(reader, f, p.format)
        # the first chunk before the answer starts: storage being down is a 503, not a cut-off 200
        first = await anext(stream, None)
        return Response(status=200, media_type=FORMATS[p.format], stream=_after(first, stream),
                        headers={"content-disposition": f'attachment; filename="tea-events.{p.format}"'})

    return [Route("GET", "/v1/export", export,
                  "Every matching event, streamed: NDJSON (default), CSV or Parquet", tags=("analytics",),
                  query=ExportParams,
                  responses={200: ("The events", {"application/x-ndjson": EventView, "text/csv": {"type": "string"},
                                                  "application/vnd.apache.parquet": {"type": "string",
                                                                                     "format": "binary"}}),
                             **error_responses(400)})]
