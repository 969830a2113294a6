"""``/v1/alerts`` (placeholder: filled in by the alerts work)."""
from __future__ import annotations

from typing import Any


def routes(app: Any) -> list[Any]:
    return []
