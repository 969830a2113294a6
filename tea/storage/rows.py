"""Rows of SQL backends back into TEA's records (shared by the DuckDB and PostgreSQL backends)."""
from __future__ import annotations

from typing import Any

from tea.types import TokenRecord

TOKEN_COLUMNS: tuple[str, ...] = tuple(TokenRecord.__struct_fields__)


def token_from_row(row: tuple[Any, ...]) -> TokenRecord:
    """A ``TokenRecord`` from a row of ``TOKEN_COLUMNS`` (the sealed secret as bytes, scopes as a list)."""
    values = dict(zip(TOKEN_COLUMNS, row))
    values["secret_sealed"] = bytes(values["secret_sealed"])
    values["scopes"] = list(values["scopes"])
    return TokenRecord(**values)
