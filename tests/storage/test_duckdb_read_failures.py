"""DuckDB's transient failures on a read — out of memory, its file or temporary disk unreadable — answer
503 ``storage_unavailable`` with Retry-After (as a PostgreSQL or ClickHouse server down does), not 500; the
answer matches /openapi.json. A real DuckDB, given a memory limit too small for the read."""
from __future__ import annotations

import httpx

from tests.api.openapi_doc import assert_documented

ATTRIBUTES = {"text": "x" * 2000, "n": list(range(50))}


def test_a_read_duckdb_has_no_memory_for_is_a_503(serve) -> None:  # type: ignore[no-untyped-def]
    live = serve(storage_backend="duckdb")
    with httpx.Client(base_url=live.url, timeout=30) as c:
        for batch in range(5):
            events = [{"event_type": "big", "event_id": f"m-{batch}-{i}", "method": f"op-{i % 997}",
                       "attributes": ATTRIBUTES} for i in range(2000)]
            assert c.post("/v1/events", json=events).status_code == 200
    live.wait_stored(10_000)
    live.stop()
    live = serve(storage_backend="duckdb", duckdb__memory_limit="4MB")  # the same data dir, again
    with httpx.Client(base_url=live.url, timeout=30) as c:
        doc = c.get("/openapi.json").json()
        r = c.get("/v1/events", params={"limit": 1000})
        assert r.status_code == 503, r.text[:500]
        assert r.json()["error"] == "storage_unavailable" and int(r.headers["retry-after"]) >= 1
        assert_documented(doc, "/v1/events", "get", r)
