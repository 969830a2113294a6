"""CLI commands that talk to a running TEA over HTTP: ``tea usage`` and ``tea export``."""
from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import date
from typing import IO, Any

FILTERS = ("tenant_id", "user_id", "event_type", "source", "method", "status", "trace_id", "correlation_id",
           "start_time", "end_time")


class RemoteError(Exception):
    """The server answered with an error, or could not be reached; the message says which."""


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


def export(base_url: str, fmt: str, filters: dict[str, Any], path: str, progress: bool = True) -> tuple[int, int]:
    """Stream an export into ``path``; returns (rows, bytes). The bar counts NDJSON rows as they come;
    for CSV (rows may span lines) and Parquet it shows bytes and completes at the end."""
    from tqdm import tqdm

    base = base_url.rstrip("/")
    chosen = {k: v for k, v in filters.items() if v is not None}
    with _get(f"{base}/v1/events?{urllib.parse.urlencode({**chosen, 'limit': 1})}", 60) as response:
        total = json.loads(response.read())["total_count"]
    rows = size = 0
    bar = tqdm(total=total, unit=" rows", disable=not progress, file=sys.stderr, dynamic_ncols=True,
               desc=f"export {fmt}")
    with _get(f"{base}/v1/export?{urllib.parse.urlencode({**chosen, 'format': fmt})}") as response, \
            open(path, "wb") as fh:
        while chunk := response.read(1024 * 1024):
            fh.write(chunk)
            size += len(chunk)
            if fmt == "ndjson":
                lines = chunk.count(b"\n")
                rows += lines
                bar.update(lines)
            bar.set_postfix_str(f"{size / 1e6:.1f} MB")
    if fmt != "ndjson":
        rows = total
        bar.update(total - bar.n)
    bar.close()
    return rows, size
