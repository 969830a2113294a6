"""End-to-end tests use ``tea_process`` from tests/conftest.py, and read back what a server stored here."""
from __future__ import annotations

from collections import Counter

import httpx


def stored_keys(url: str, *, headers: dict[str, str] | None = None,
                event_type: str | None = None) -> Counter[tuple[str, str]]:
    """Every stored ``(tenant_id, event_id)`` (of one event type), counted: walks ``GET /v1/events`` page by page."""
    keys: Counter[tuple[str, str]] = Counter()
    params = {"limit": "10000", **({"event_type": event_type} if event_type else {})}
    with httpx.Client(base_url=url, timeout=120, headers=headers) as client:
        for _ in range(1000):
            page = client.get("/v1/events", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            keys.update((e["tenant_id"], e["event_id"]) for e in body["events"])
            if not body["has_more"]:
                return keys
            params = {**params, "cursor": body["next_cursor"]}
    raise AssertionError("pagination did not end")
