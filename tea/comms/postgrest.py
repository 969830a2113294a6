"""PostgREST-compatible ``/rest/v1`` (placeholder: filled in by the PostgREST work)."""
from __future__ import annotations

from typing import Any


def routes(app: Any) -> list[Any]:
    return []
