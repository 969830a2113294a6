"""Rows of SQL backends back into TEA's records (shared by the SQL backends)."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import msgspec

from tea.types import TokenRecord

TOKEN_COLUMNS: tuple[str, ...] = tuple(TokenRecord.__struct_fields__)


def token_from_row(row: tuple[Any, ...]) -> TokenRecord:
    """A ``TokenRecord`` from a row of ``TOKEN_COLUMNS`` (the sealed secret as bytes, scopes as a list)."""
    values = dict(zip(TOKEN_COLUMNS, row))
    values["secret_sealed"] = bytes(values["secret_sealed"])
    values["scopes"] = list(values["scopes"])
    return TokenRecord(**values)


def projection_rows(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows of an analytics table as dicts, ``event_metadata`` decoded from its JSON text (None when empty)."""
    out = [dict(zip(columns, row)) for row in rows]
    for row in out:
        row["event_metadata"] = msgspec.json.decode(row["event_metadata"]) if row["event_metadata"] else None
    return out
