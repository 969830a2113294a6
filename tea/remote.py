"""CLI commands that talk to a running TEA over HTTP: ``tea usage`` and ``tea export``."""
from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import date
from typing import IO, Any

from tea.types import FILTER_FIELDS

# the equality filters of GET /v1/export (tea.types.EventFilter's), which `tea export` sets with a flag each
EQUALS = tuple(f.name for f in FILTER_FIELDS if f.param)
FILTERS = ("tenant_id", *EQUALS, "start_time", "end_time")


class RemoteError(Exception):
    """The server answered with an error, or could not be reached; the message says which."""

    def blaming(self, flags: dict[str, str]) -> str:
        """The message with the query parameters it names (`start_time`) named as the flags that set them
        (--start), as the user typed them."""
        text = str(self)
        named = re.sub(r"(?:parameter )?`(\w+)`(:(?= ))?",
                       lambda m: flags.get(m.group(1), m.group(0)), text)
        return named.split(": ", 1)[-1] if named != text else text


TOKEN: str | None = None  # set by the CLI from --token / $TEA_TOKEN


def _get(url: str, timeout_s: float = 300.0):  # type: ignore[no-untyped-def]
    headers = {"authorization": f"Bearer {TOKEN}"} if TOKEN else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("message", detail)
        except (ValueError, AttributeError):
            pass
        raise RemoteError(f"{exc.code} {exc.reason}: {detail}") from None
    except urllib.error.URLError as exc:
        raise RemoteError(f"cannot reach {url.split('?')[0]}: {exc.reason}") from None


def month_range(month: str) -> tuple[str, str]:
    """'2026-11' → ('2026-11-01T00:00:00Z', '2026-12-01T00:00:00Z')."""
    try:
        year, number = (int(part) for part in month.split("-"))
        first = date(year, number, 1)
    except ValueError:
        raise RemoteError(f"--month must look like 2026-11, got {month!r}") from None
    after = date(year + (number == 12), number % 12 + 1, 1)
    return f"{first.isoformat()}T00:00:00Z", f"{after.isoformat()}T00:00:00Z"


def usage(base_url: str, params: dict[str, Any], out: IO[bytes]) -> None:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    with _get(f"{base_url.rstrip('/')}/v1/usage?{query}") as response:
        out.write(response.read())
    out.flush()


class CsvRecords:
    """Counts CSV records as the bytes arrive: line ends outside quoted fields (every quote toggles
    quoting; an escaped quote, two of them, toggles twice), so a field spanning lines counts once."""

    def __init__(self) -> None:
        self.quoted = False
        self.records = 0

    def feed(self, chunk: bytes) -> None:
        for i, part in enumerate(chunk.split(b'"')):
            if i:
                self.quoted = not self.quoted
            if not self.quoted:
                self.records += part.count(b"\n")


def parquet_rows(path: str) -> int:
    """The row count in a Parquet file's footer."""
    import duckdb

    with duckdb.connect() as con:
        row = con.execute("SELECT sum(num_rows) FROM parquet_file_metadata(?)", [path]).fetchone()
    return int(row[0] or 0) if row else 0


def export(base_url: str, fmt: str, filters: dict[str, Any], path: str,
           progress: bool = True) -> tuple[int, int, int]:
    """Stream an export into ``path``; returns (rows written, bytes, rows expected). The progress bar
    (``progress``) is drawn when stderr is a terminal.

    The rows expected are what ``GET /v1/events`` counted just before the export started — an
    estimate (events arrive and expire meanwhile), so the bar's total is labelled as one. The rows
    written are counted in what was written: NDJSON lines and CSV records as they arrive (the bar
    follows them), Parquet rows from the finished file's footer (a Parquet file cannot be counted
    while it downloads: its bar shows the bytes and fills at the end)."""
    from tqdm import tqdm

    base = base_url.rstrip("/")
    chosen = {k: v for k, v in filters.items() if v is not None}
    with _get(f"{base}/v1/events?{urllib.parse.urlencode({**chosen, 'limit': 1})}", 60) as response:
        expected = json.loads(response.read())["total_count"]
    rows = size = 0
    csv_records = CsvRecords() if fmt == "csv" else None
    # drawn on a terminal only (disable=None): redrawn with \r, a bar is noise in a log file or a pipe
    bar = tqdm(total=expected, unit=" rows", disable=None if progress else True, file=sys.stderr,
               dynamic_ncols=True, desc=f"export {fmt} (total estimated)")
    with _get(f"{base}/v1/export?{urllib.parse.urlencode({**chosen, 'format': fmt})}") as response, \
            open(path, "wb") as fh:
        while chunk := response.read(1024 * 1024):
            fh.write(chunk)
            size += len(chunk)
            if fmt == "ndjson":
                rows += chunk.count(b"\n")
            elif csv_records is not None:
                csv_records.feed(chunk)
                rows = max(csv_records.records - 1, 0)  # less the header
            bar.update(rows - bar.n)
            bar.set_postfix_str(f"{size / 1e6:.1f} MB" + ("; rows counted at the end" if fmt == "parquet" else ""))
    if fmt == "parquet":
        rows = parquet_rows(path)
        bar.set_postfix_str(f"{size / 1e6:.1f} MB")
    bar.total = bar.n = rows  # the true count, now known
    bar.set_description(f"export {fmt}")
    bar.close()
    return rows, size, expected
